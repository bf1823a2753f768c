extension CopyText {
    /// Decodes one row of PostgreSQL's COPY text format (as `COPY … TO STDOUT` sends it, with or
    /// without its trailing newline) into its fields: `\N` is NULL; backslash escapes (`\\`, `\t`,
    /// `\n`, `\r`, `\b`, `\f`, `\v`, octal `\ddd`, hex `\xhh`) are undone. Bytes are UTF-8 as the
    /// server's client encoding sends them.
    public static func decodeRow(_ row: UnsafeRawBufferPointer) -> [String?] {
        var end = row.count
        if end > 0 && row[end - 1] == 0x0A { end -= 1 }
        var fields: [String?] = []
        var field: [UInt8] = []
        var i = 0
        var isNull = false
        func finish() {
            fields.append(isNull ? nil : String(decoding: field, as: UTF8.self))
            field.removeAll(keepingCapacity: true)
            isNull = false
        }
        while i < end {
            let b = row[i]
            if b == 0x09 {
                finish()
                i += 1
                continue
            }
            guard b == 0x5C, i + 1 < end else {
                field.append(b)
                i += 1
                continue
            }
            let c = row[i + 1]
            i += 2
            switch c {
            case UInt8(ascii: "N") where field.isEmpty: isNull = true
            case UInt8(ascii: "t"): field.append(0x09)
            case UInt8(ascii: "n"): field.append(0x0A)
            case UInt8(ascii: "r"): field.append(0x0D)
            case UInt8(ascii: "b"): field.append(0x08)
            case UInt8(ascii: "f"): field.append(0x0C)
            case UInt8(ascii: "v"): field.append(0x0B)
            case UInt8(ascii: "0")...UInt8(ascii: "7"):
                var value = Int(c - UInt8(ascii: "0"))
                var digits = 1
                while digits < 3, i < end, (UInt8(ascii: "0")...UInt8(ascii: "7")).contains(row[i]) {
                    value = value * 8 + Int(row[i] - UInt8(ascii: "0"))
                    i += 1
                    digits += 1
                }
                field.append(UInt8(truncatingIfNeeded: value))
            case UInt8(ascii: "x"):
                var value = 0
                var digits = 0
                while digits < 2, i < end, let h = hexValue(row[i]) {
                    value = value * 16 + h
                    i += 1
                    digits += 1
                }
                if digits == 0 { field.append(c) } else { field.append(UInt8(value)) }
            default: field.append(c)
            }
        }
        finish()
        return fields
    }

    private static func hexValue(_ b: UInt8) -> Int? {
        switch b {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): Int(b - UInt8(ascii: "0"))
        case UInt8(ascii: "a")...UInt8(ascii: "f"): Int(b - UInt8(ascii: "a")) + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): Int(b - UInt8(ascii: "A")) + 10
        default: nil
        }
    }
}
