/// A 5-field cron expression evaluated in UTC: `minute hour day-of-month month day-of-week`, each a
/// list of `*`, `N`, `A-B`, with an optional `/STEP` (`*/15`, `1-5/2`, `10/20` = from 10 to the
/// field's end); months `jan`…`dec` and days `sun`…`sat` by name; day-of-week 0 and 7 are Sunday.
/// `@hourly`, `@daily` (`@midnight`), `@weekly`, `@monthly` and `@yearly` (`@annually`) as in Vixie cron.
///
/// Day of month and day of week combine like Vixie cron: when both are restricted (neither field
/// starts with `*`) a day matches if either matches; when one starts with `*` (`*`, `*/2`) a day
/// must match both (so `*` leaves the other alone, and `*/2` with `mon` means odd-dated Mondays).
public struct CronExpression: Sendable, Equatable, CustomStringConvertible {
    /// Allowed values per field, as bit sets (bit n = value n).
    let minutes: UInt64, hours: UInt64, daysOfMonth: UInt64, months: UInt64, daysOfWeek: UInt64
    /// The field started with `*` (Vixie's DOM_STAR / DOW_STAR).
    let domStar: Bool, dowStar: Bool
    /// The text it was parsed from.
    public let description: String

    static let monthNames = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
    static let dayNames = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
    static let macros = ["@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *", "@weekly": "0 0 * * 0",
                         "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *"]

    /// Parses `text`; the error says which field is wrong and why.
    public init(_ text: String) throws(ScheduleError) {
        let trimmed = text.trimmingWhitespace()
        let expanded = Self.macros[trimmed.lowercased()] ?? trimmed
        let fields = expanded.split(whereSeparator: { $0 == " " || $0 == "\t" }).map { String($0).lowercased() }
        guard fields.count == 5 else {
            throw ScheduleError("'\(text)' has \(fields.count) fields; a cron schedule has 5 (minute hour day-of-month month day-of-week), or is 'every 5m'")
        }
        minutes = try Self.field(fields[0], "minute", 0...59, names: [])
        hours = try Self.field(fields[1], "hour", 0...23, names: [])
        daysOfMonth = try Self.field(fields[2], "day-of-month", 1...31, names: [])
        months = try Self.field(fields[3], "month", 1...12, names: Self.monthNames, firstName: 1)
        var dow = try Self.field(fields[4], "day-of-week", 0...7, names: Self.dayNames)
        if dow & (1 << 7) != 0 { dow = (dow | 1) & ~(1 << 7) }
        daysOfWeek = dow
        domStar = fields[2].hasPrefix("*")
        dowStar = fields[4].hasPrefix("*")
        description = trimmed
        if next(after: 0) == nil { throw ScheduleError("'\(text)' never fires (no such day in any month)") }
    }

    static func field(_ text: String, _ name: String, _ range: ClosedRange<Int>, names: [String], firstName: Int = 0) throws(ScheduleError) -> UInt64 {
        func value(_ s: Substring) throws(ScheduleError) -> Int {
            if let n = Int(s) {
                guard range.contains(n) else { throw ScheduleError("\(name) \(n) is outside \(range.lowerBound)-\(range.upperBound)") }
                return n
            }
            if let i = names.firstIndex(of: String(s)) { return i + firstName }
            throw ScheduleError("\(name) '\(s)' is not a number\(names.isEmpty ? "" : " or a name (\(names.joined(separator: ", ")))")")
        }
        var bits: UInt64 = 0
        for item in text.split(separator: ",", omittingEmptySubsequences: false) {
            guard !item.isEmpty else { throw ScheduleError("\(name) '\(text)' has an empty list entry") }
            let parts = item.split(separator: "/", omittingEmptySubsequences: false)
            guard parts.count <= 2 else { throw ScheduleError("\(name) '\(item)' has more than one '/'") }
            var step = 1
            if parts.count == 2 {
                guard let s = Int(parts[1]), s >= 1, s <= range.upperBound else {
                    throw ScheduleError("\(name) step '\(parts[1])' must be a number from 1 to \(range.upperBound)")
                }
                step = s
            }
            let base = parts[0]
            let lo: Int, hi: Int
            if base == "*" {
                (lo, hi) = (range.lowerBound, range.upperBound)
            } else if let dash = base.firstIndex(of: "-") {
                lo = try value(base[..<dash])
                hi = try value(base[base.index(after: dash)...])
                guard lo <= hi else { throw ScheduleError("\(name) range '\(base)' runs backwards") }
            } else {
                lo = try value(base)
                hi = parts.count == 2 ? range.upperBound : lo
            }
            for v in stride(from: lo, through: hi, by: step) { bits |= 1 << UInt64(v) }
        }
        return bits
    }

    static func has(_ set: UInt64, _ v: Int) -> Bool { set & (1 << UInt64(v)) != 0 }

    func dayMatches(day: Int, weekday: Int) -> Bool {
        let dom = Self.has(daysOfMonth, day), dow = Self.has(daysOfWeek, weekday)
        if domStar || dowStar { return dom && dow }
        return dom || dow
    }

    /// The first fire time strictly after `after` (Unix seconds, UTC), whole minutes; nil when none
    /// comes within ten years (an expression that can never fire, like 30 February).
    public func next(after: Int64) -> Int64? {
        var t = Self.floorDiv(after, 60) * 60 + 60
        let limit = t + 10 * 366 * 86_400
        while t <= limit {
            let days = Self.floorDiv(t, 86_400)
            let (year, month, day) = CivilTime.civil(fromDays: days)
            let secondOfDay = t - days * 86_400
            let (hour, minute) = (Int(secondOfDay / 3_600), Int(secondOfDay % 3_600 / 60))
            if !Self.has(months, month) {
                let (y, m) = month == 12 ? (year + 1, 1) : (year, month + 1)
                t = CivilTime.days(year: y, month: m, day: 1) * 86_400
                continue
            }
            // 1970-01-01 was a Thursday (4).
            let weekday = Int(((days % 7) + 11) % 7)
            if !dayMatches(day: day, weekday: weekday) {
                t = (days + 1) * 86_400
                continue
            }
            if !Self.has(hours, hour) {
                t = days * 86_400 + Int64(hour + 1) * 3_600
                continue
            }
            if !Self.has(minutes, minute) {
                t += 60
                continue
            }
            return t
        }
        return nil
    }

    static func floorDiv(_ a: Int64, _ b: Int64) -> Int64 { a >= 0 ? a / b : -((-a + b - 1) / b) }
}

/// A schedule that cannot be parsed, or a time budget that cannot.
public struct ScheduleError: Error, CustomStringConvertible, Sendable, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

extension String {
    func trimmingWhitespace() -> String {
        var s = Substring(self)
        while let c = s.first, c.isWhitespace { s = s.dropFirst() }
        while let c = s.last, c.isWhitespace { s = s.dropLast() }
        return String(s)
    }
}
