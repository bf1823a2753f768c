/// Conversions for Kafka Connect's `Decimal` logical type: a big-endian two's-complement unscaled
/// integer (base64 in JSON) plus a scale from the schema. Arbitrary precision: PostgreSQL numerics
/// can be far wider than 64 bits — but never wider than PostgreSQL can hold (`NumericLimits`), so a
/// hostile scale or byte length is refused before any digit is produced.
public enum DecimalBytes {
    /// Decodes standard base64 (with or without padding); nil when the text is not base64.
    /// Accepts the URL-safe alphabet too (Debezium's `base64-url-safe` binary mode).
    public static func base64Decode(_ text: String) -> [UInt8]? {
        var out: [UInt8] = []
        out.reserveCapacity(text.utf8.count * 3 / 4)
        var acc: UInt32 = 0
        var bits = 0
        for c in text.utf8 {
            let v: UInt32
            switch c {
            case 65...90: v = UInt32(c - 65)
            case 97...122: v = UInt32(c - 97 + 26)
            case 48...57: v = UInt32(c - 48 + 52)
            case 43, 45: v = 62  // '+' or URL-safe '-'
            case 47, 95: v = 63  // '/' or URL-safe '_'
            case 61: continue  // padding
            default: return nil
            }
            acc = acc << 6 | v
            bits += 6
            if bits >= 8 {
                bits -= 8
                out.append(UInt8((acc >> UInt32(bits)) & 0xFF))
            }
        }
        return out
    }

    /// Why an unscaled integer and scale cannot be a PostgreSQL numeric.
    public enum Refusal: Error, Equatable, CustomStringConvertible {
        case scaleOutOfRange(Int64, allowed: ClosedRange<Int64>)
        case tooManyDigits(integerDigits: Int)

        public var description: String {
            switch self {
            case let .scaleOutOfRange(s, allowed):
                "scale \(s) is outside \(allowed.lowerBound)...\(allowed.upperBound), beyond what PostgreSQL numeric holds"
            case let .tooManyDigits(n):
                "\(n)+ digits before the decimal point, PostgreSQL numeric holds at most \(NumericLimits.maxIntegerDigits)"
            }
        }
    }

    /// The decimal text of a big-endian two's-complement integer scaled by `scale` digits, or the
    /// reason PostgreSQL numeric cannot hold it. Checks the limits before producing any digit, so the
    /// work and memory are bounded by the input's length (and at most ~150k digits).
    public static func decimalString(bigEndianTwosComplement raw: [UInt8], scale: Int64, allowedScales: ClosedRange<Int64> = NumericLimits.scales) throws(Refusal) -> String {
        guard allowedScales.contains(scale) else { throw .scaleOutOfRange(scale, allowed: allowedScales) }
        let bytes = minimal(raw)
        // A minimal n-byte magnitude is at least 2^(8(n-1)-1): that many digits at the least.
        if bytes.count > 1 {
            let minDigits = Int(Double(8 * (bytes.count - 1) - 1) * 0.30102999566) + 1
            if minDigits - Int(scale) > NumericLimits.maxIntegerDigits { throw .tooManyDigits(integerDigits: minDigits - Int(scale)) }
        }
        let negative = (bytes.first ?? 0) & 0x80 != 0
        var digits = magnitudeDigits(bytes, negative: negative)  // least significant first
        let integerDigits = digits.count - Int(scale)
        if integerDigits > NumericLimits.maxIntegerDigits { throw .tooManyDigits(integerDigits: integerDigits) }
        let isZero = digits.allSatisfy { $0 == 0 }
        if scale < 0 {
            if isZero { return "0" }
            digits.insert(contentsOf: repeatElement(0, count: Int(-scale)), at: 0)
        }
        let fraction = max(Int(scale), 0)
        while digits.count <= fraction { digits.append(0) }
        var text: [UInt8] = []
        text.reserveCapacity(digits.count + 2)
        if negative && !isZero { text.append(45) }  // "-"
        for i in stride(from: digits.count - 1, through: 0, by: -1) {
            if fraction > 0 && i == fraction - 1 { text.append(46) }  // "."
            text.append(48 + digits[i])
        }
        return String(decoding: text, as: UTF8.self)
    }

    /// Drops redundant leading sign bytes (0x00 before a byte below 0x80, 0xFF before one above).
    static func minimal(_ bytes: [UInt8]) -> ArraySlice<UInt8> {
        var start = bytes.startIndex
        while bytes.endIndex - start > 1 {
            let b = bytes[start], next = bytes[start + 1]
            if (b == 0x00 && next & 0x80 == 0) || (b == 0xFF && next & 0x80 != 0) { start += 1 } else { break }
        }
        return bytes[start...]
    }

    /// Decimal digits of |value|, least significant first; `[0]` for zero. Works in 32-bit limbs
    /// divided by 10^9, so a 60 kB integer costs a few hundred million simple operations at most.
    static func magnitudeDigits(_ bytes: ArraySlice<UInt8>, negative: Bool) -> [UInt8] {
        guard !bytes.isEmpty else { return [0] }
        var magnitude = Array(bytes)
        if negative {
            // Two's complement negate: invert and add one.
            for i in magnitude.indices { magnitude[i] = ~magnitude[i] }
            var i = magnitude.count - 1
            while i >= 0 {
                let (v, overflow) = magnitude[i].addingReportingOverflow(1)
                magnitude[i] = v
                if !overflow { break }
                i -= 1
            }
        }
        // Big-endian bytes → big-endian 32-bit limbs.
        var limbs = [UInt32](repeating: 0, count: (magnitude.count + 3) / 4)
        let pad = limbs.count * 4 - magnitude.count
        for (i, b) in magnitude.enumerated() {
            let pos = i + pad
            limbs[pos / 4] |= UInt32(b) << UInt32(8 * (3 - pos % 4))
        }
        var first = 0
        var digits: [UInt8] = []
        digits.reserveCapacity(magnitude.count * 5 / 2 + 9)
        while first < limbs.count {
            if limbs[first] == 0 { first += 1; continue }
            var remainder: UInt64 = 0
            for i in first..<limbs.count {
                let cur = remainder << 32 | UInt64(limbs[i])
                limbs[i] = UInt32(cur / 1_000_000_000)
                remainder = cur % 1_000_000_000
            }
            for _ in 0..<9 {
                digits.append(UInt8(remainder % 10))
                remainder /= 10
            }
        }
        while digits.count > 1 && digits.last == 0 { digits.removeLast() }
        return digits.isEmpty ? [0] : digits
    }
}

/// What a PostgreSQL `numeric` can hold (PostgreSQL 15, `src/backend/utils/adt/numeric.c`).
public enum NumericLimits {
    /// Digits before the decimal point.
    public static let maxIntegerDigits = 131_072
    /// The largest display scale (`NUMERIC_DSCALE_MAX`): digits after the point.
    public static let maxDisplayScale: Int64 = 16_383
    /// Scales a Connect `Decimal` may carry: a numeric column's declared scale (PostgreSQL 15 allows
    /// -1000...1000 in `numeric(p, s)`; `money` is 2). Debezium sends unconstrained numerics as
    /// `VariableScaleDecimal` instead.
    public static let scales: ClosedRange<Int64> = -1000...1000
    /// Scales a `VariableScaleDecimal` may carry: Debezium strips trailing zeros and never sends a
    /// negative scale; PostgreSQL's display scale stops at 16383.
    public static let variableScales: ClosedRange<Int64> = 0...maxDisplayScale
}
