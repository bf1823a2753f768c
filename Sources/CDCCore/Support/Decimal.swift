/// Conversions for Kafka Connect's `Decimal` logical type: a big-endian two's-complement unscaled
/// integer (base64 in JSON) plus a scale from the schema. Arbitrary precision: PostgreSQL numerics
/// can be far wider than 64 bits.
public enum DecimalBytes {
    /// Decodes standard base64 (with or without padding); nil when the text is not base64.
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

    /// The decimal text of a big-endian two's-complement integer scaled by `scale` digits.
    public static func decimalString(bigEndianTwosComplement bytes: [UInt8], scale: Int) -> String {
        guard !bytes.isEmpty else { return scale > 0 ? "0." + String(repeating: "0", count: scale) : "0" }
        let negative = bytes[0] & 0x80 != 0
        var magnitude = bytes
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
        // Repeated division by 10 over the byte array.
        var digits: [UInt8] = []
        var work = magnitude
        while work.contains(where: { $0 != 0 }) {
            var remainder: UInt32 = 0
            for i in work.indices {
                let cur = remainder << 8 | UInt32(work[i])
                work[i] = UInt8(cur / 10)
                remainder = cur % 10
            }
            digits.append(UInt8(remainder))
        }
        if digits.isEmpty { digits = [0] }
        while digits.count <= scale { digits.append(0) }
        var text = ""
        for (i, d) in digits.reversed().enumerated() {
            if scale > 0 && i == digits.count - scale { text += "." }
            text.unicodeScalars.append(Unicode.Scalar(48 + d))
        }
        return negative && digits.contains(where: { $0 != 0 }) ? "-" + text : text
    }
}
