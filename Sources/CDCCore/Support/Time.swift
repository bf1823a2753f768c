/// Calendar arithmetic for the few time representations change events use. Proleptic Gregorian, UTC.
public enum CivilTime {
    /// Days since 1970-01-01 → (year, month, day). Howard Hinnant's algorithm.
    public static func civil(fromDays z0: Int64) -> (year: Int64, month: Int, day: Int) {
        let z = z0 + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
        let y = yoe + era * 400
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = Int(doy - (153 * mp + 2) / 5 + 1)
        let m = Int(mp < 10 ? mp + 3 : mp - 9)
        return (m <= 2 ? y + 1 : y, m, d)
    }

    /// (year, month, day) → days since 1970-01-01.
    public static func days(year y0: Int64, month: Int, day: Int) -> Int64 {
        let y = month <= 2 ? y0 - 1 : y0
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let m = Int64(month)
        let doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + Int64(day) - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }

    /// The day counts since the epoch PostgreSQL's `date` holds: 4714-11-24 BC to 5874897-12-31.
    public static let dateDays: ClosedRange<Int64> = -2_440_588...2_145_042_905
    /// Microseconds since the epoch PostgreSQL's `timestamp` holds: from 4714-11-24 00:00 BC; its
    /// upper end (294276 AD) lies beyond Int64.
    public static let timestampMicros: ClosedRange<Int64> = -210_866_803_200_000_000...Int64.max
    /// Microseconds since midnight a `time` holds (24:00:00 included).
    public static let timeMicros: ClosedRange<Int64> = 0...86_400_000_000

    /// `YYYY-MM-DD` for a day count since the epoch; years before 1 AD in PostgreSQL's `YYYY-MM-DD BC`
    /// form (there is no year 0: astronomical year 0 is 1 BC).
    public static func dateString(days: Int64) -> String {
        let (y, m, d) = civil(fromDays: days)
        let ymd = "\(pad(y > 0 ? y : 1 - y, 4))-\(pad(Int64(m), 2))-\(pad(Int64(d), 2))"
        return y > 0 ? ymd : ymd + " BC"
    }

    /// `YYYY-MM-DDTHH:MM:SS.ffffff` for microseconds since the epoch, `zone` (such as `Z`) after the
    /// time and ` BC` last for years before 1 AD.
    public static func timestampString(micros: Int64, zone: String = "") -> String {
        timestampString(units: micros, perSecond: 1_000_000, digits: 6, zone: zone)
    }

    /// The same for nanoseconds since the epoch (nine fraction digits; PostgreSQL rounds to its precision).
    public static func timestampString(nanos: Int64, zone: String = "") -> String {
        timestampString(units: nanos, perSecond: 1_000_000_000, digits: 9, zone: zone)
    }

    static func timestampString(units: Int64, perSecond: Int64, digits: Int, zone: String) -> String {
        let perDay = 86_400 * perSecond
        var days = units / perDay
        var rest = units % perDay
        if rest < 0 { rest += perDay; days -= 1 }
        let (y, m, d) = civil(fromDays: days)
        let secs = rest / perSecond
        let frac = rest % perSecond
        let text = "\(pad(y > 0 ? y : 1 - y, 4))-\(pad(Int64(m), 2))-\(pad(Int64(d), 2))T\(pad(secs / 3600, 2)):\(pad(secs / 60 % 60, 2)):\(pad(secs % 60, 2)).\(pad(frac, digits))\(zone)"
        return y > 0 ? text : text + " BC"
    }

    /// `HH:MM:SS.ffffff` for microseconds since midnight.
    public static func timeString(micros: Int64) -> String {
        let secs = micros / 1_000_000
        return "\(pad(secs / 3600, 2)):\(pad(secs / 60 % 60, 2)):\(pad(secs % 60, 2)).\(pad(micros % 1_000_000, 6))"
    }

    /// `HH:MM:SS.fffffffff` for nanoseconds since midnight.
    public static func timeString(nanos: Int64) -> String {
        let secs = nanos / 1_000_000_000
        return "\(pad(secs / 3600, 2)):\(pad(secs / 60 % 60, 2)):\(pad(secs % 60, 2)).\(pad(nanos % 1_000_000_000, 9))"
    }

    /// An interval literal (`[-]H:MM:SS.ffffff`, hours unbounded) for a signed number of microseconds:
    /// exact, whatever the magnitude (PostgreSQL reads "9000000000" alone as seconds).
    public static func intervalString(micros: Int64) -> String {
        let sign = micros < 0 ? "-" : ""
        let m = micros.magnitude
        let secs = m / 1_000_000
        return "\(sign)\(secs / 3600):\(padU(secs / 60 % 60, 2)):\(padU(secs % 60, 2)).\(padU(m % 1_000_000, 6))"
    }

    /// Parses an ISO-8601 / RFC 3339 instant (`2026-11-20T10:00:00.123456Z`, `+02:00` offsets, a space
    /// instead of `T`) into microseconds since the epoch. A time without a zone is read as UTC.
    public static func parseInstant(_ text: String) -> Int64? {
        let b = Array(text.utf8)
        var i = 0
        func num(_ n: Int) -> Int64? {
            guard i + n <= b.count else { return nil }
            var v: Int64 = 0
            for k in 0..<n {
                let c = b[i + k]
                guard c >= 48, c <= 57 else { return nil }
                v = v * 10 + Int64(c - 48)
            }
            i += n
            return v
        }
        func expect(_ c: UInt8) -> Bool {
            guard i < b.count, b[i] == c else { return false }
            i += 1
            return true
        }
        guard let y = num(4), expect(45), let mo = num(2), expect(45), let d = num(2) else { return nil }
        guard (1...12).contains(mo), (1...31).contains(d) else { return nil }
        var micros = days(year: y, month: Int(mo), day: Int(d)) * 86_400_000_000
        if i == b.count { return micros }
        guard i < b.count, b[i] == 84 || b[i] == 116 || b[i] == 32 else { return nil }
        i += 1
        guard let h = num(2), expect(58), let mi = num(2), expect(58), let s = num(2) else { return nil }
        guard h < 24, mi < 60, s < 61 else { return nil }
        micros += (h * 3600 + mi * 60 + s) * 1_000_000
        if expect(46) {
            var frac: Int64 = 0
            var digits = 0
            while i < b.count, b[i] >= 48, b[i] <= 57 {
                if digits < 6 { frac = frac * 10 + Int64(b[i] - 48) }
                digits += 1
                i += 1
            }
            guard digits > 0 else { return nil }
            for _ in digits..<max(digits, 6) { frac *= 10 }
            micros += frac
        }
        if i == b.count { return micros }
        if b[i] == 90 || b[i] == 122 { return i + 1 == b.count ? micros : nil }
        guard b[i] == 43 || b[i] == 45 else { return nil }
        let sign: Int64 = b[i] == 43 ? 1 : -1
        i += 1
        guard let oh = num(2) else { return nil }
        _ = expect(58)
        let om = num(2) ?? 0
        guard i == b.count else { return nil }
        return micros - sign * (oh * 3600 + om * 60) * 1_000_000
    }

    static func padU(_ v: UInt64, _ width: Int) -> String {
        let s = String(v)
        return s.count >= width ? s : String(repeating: "0", count: width - s.count) + s
    }

    static func pad(_ v: Int64, _ width: Int) -> String {
        let s = String(v.magnitude)
        let padded = s.count >= width ? s : String(repeating: "0", count: width - s.count) + s
        return v < 0 ? "-" + padded : padded
    }
}
