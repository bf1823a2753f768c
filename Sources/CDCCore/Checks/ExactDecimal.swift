/// A decimal number held exactly as a 128-bit significand and a scale (value = significand / 10^scale),
/// parsed from the text PostgreSQL prints for `numeric`, integer and float values (and from JSON
/// numbers, which keep their text). Enough for sums of `numeric(p,s)` columns up to 38 digits; a
/// number beyond that (or in exponent form) is only available as `Double`.
public struct ExactDecimal: Sendable, Equatable, CustomStringConvertible {
    /// value = significand / 10^scale.
    public let significand: Int128
    public let scale: Int

    /// The value significand / 10^scale.
    public init(significand: Int128, scale: Int) {
        self.significand = significand
        self.scale = scale
    }

    /// Parses `-123.4500`, `7`, `+0.5`; nil for anything else (exponents, NaN, Infinity, > 38 digits).
    public init?(_ text: String) {
        var digits: Int128 = 0
        var scale = 0
        var negative = false
        var seenDigit = false, seenPoint = false
        var count = 0
        for (i, c) in text.utf8.enumerated() {
            switch c {
            case UInt8(ascii: "-") where i == 0: negative = true
            case UInt8(ascii: "+") where i == 0: break
            case UInt8(ascii: "."):
                if seenPoint { return nil }
                seenPoint = true
            case UInt8(ascii: "0")...UInt8(ascii: "9"):
                seenDigit = true
                if digits == 0 && c == UInt8(ascii: "0") && !seenPoint { continue }
                count += 1
                if count > 38 { return nil }
                digits = digits * 10 + Int128(c - UInt8(ascii: "0"))
                if seenPoint { scale += 1 }
            default: return nil
            }
        }
        guard seenDigit else { return nil }
        self.init(significand: negative ? -digits : digits, scale: scale)
    }

    /// The significand at `scale` (≥ self.scale), or nil on overflow.
    func rescaled(to target: Int) -> Int128? {
        var v = significand
        for _ in 0..<(target - scale) {
            let (m, o) = v.multipliedReportingOverflow(by: 10)
            if o { return nil }
            v = m
        }
        return v
    }

    /// |a − b| exactly, or nil when it does not fit.
    public static func absoluteDifference(_ a: ExactDecimal, _ b: ExactDecimal) -> ExactDecimal? {
        let s = max(a.scale, b.scale)
        guard let x = a.rescaled(to: s), let y = b.rescaled(to: s) else { return nil }
        let (d, o) = x.subtractingReportingOverflow(y)
        if o || d == .min { return nil }
        return ExactDecimal(significand: d < 0 ? -d : d, scale: s)
    }

    /// a ≤ b exactly, or nil when the comparison does not fit.
    public static func lessOrEqual(_ a: ExactDecimal, _ b: ExactDecimal) -> Bool? {
        let s = max(a.scale, b.scale)
        guard let x = a.rescaled(to: s), let y = b.rescaled(to: s) else { return nil }
        return x <= y
    }

    /// The nearest Double (for relative tolerances).
    public var doubleValue: Double { Double(significand) / pow10(scale) }

    /// Plain decimal text, scale kept (`0.0200`).
    public var description: String {
        let negative = significand < 0
        var digits = String(negative ? -significand : significand)
        if scale > 0 {
            if digits.count <= scale { digits = String(repeating: "0", count: scale - digits.count + 1) + digits }
            digits.insert(".", at: digits.index(digits.endIndex, offsetBy: -scale))
        }
        return (negative ? "-" : "") + digits
    }
}

private func pow10(_ n: Int) -> Double {
    var r = 1.0
    for _ in 0..<n { r *= 10 }
    return r
}
