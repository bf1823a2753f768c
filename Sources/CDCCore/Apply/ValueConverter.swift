/// Converts a change's column value into PostgreSQL's text input form for the target column.
///
/// PostgreSQL itself validates the result (a bad numeric fails with SQLSTATE 22P02 and the event is
/// dead-lettered); this layer only decides how JSON maps onto the column's type.
public enum ValueConverter {
    /// nil means SQL NULL. `.unavailable` must be handled by the caller.
    public static func pgText(_ value: ColumnValue, column: ColumnInfo, format: EventFormat) throws(PoisonError) -> String? {
        switch value {
        case .null: return nil
        case let .text(s): return s
        case .unavailable: return nil
        case let .json(json): return try pgText(json: json, column: column, format: format)
        }
    }

    static func pgText(json: JSONValue, column: ColumnInfo, format: EventFormat) throws(PoisonError) -> String? {
        switch json {
        case .null: return nil
        case let .bool(b):
            return b ? "true" : "false"
        case let .number(n):
            switch column.kind {
            case .date:
                // Without a schema Debezium writes dates as days since the epoch.
                guard let days = Int64(n) else { throw invalid(n, column) }
                return CivilTime.dateString(days: days)
            case .timestamp, .timestamptz:
                // Microseconds since the epoch (Debezium MicroTimestamp, PostgreSQL's native precision).
                guard let micros = Int64(n) else { throw invalid(n, column) }
                let local = CivilTime.timestampString(micros: micros)
                return column.kind == .timestamptz ? local + "Z" : local
            case .time:
                guard let micros = Int64(n) else { throw invalid(n, column) }
                return CivilTime.timeString(micros: micros)
            default:
                return n
            }
        case let .string(s):
            switch column.kind {
            case .json:
                // Debezium carries json columns as their JSON text; in native events the JSON value is
                // the value, so a string is a JSON string.
                if format == .debezium { return s }
                return JSONValue.string(s).serialized
            case .bytea where format == .debezium:
                guard let bytes = DecimalBytes.base64Decode(s) else { throw invalid(s, column) }
                return "\\x" + bytes.map { byteHex($0) }.joined()
            case .uuid:
                return s.lowercased()
            default:
                return s
            }
        case .array, .object:
            if column.kind == .array, case let .array(items) = json {
                return try arrayLiteral(items, column: column)
            }
            return json.serialized
        }
    }

    /// A PostgreSQL array literal from a JSON array of scalars.
    static func arrayLiteral(_ items: [JSONValue], column: ColumnInfo) throws(PoisonError) -> String {
        var out = "{"
        for (i, item) in items.enumerated() {
            if i > 0 { out += "," }
            switch item {
            case .null: out += "NULL"
            case let .number(n): out += n
            case let .bool(b): out += b ? "t" : "f"
            case let .string(s):
                out += "\""
                for c in s {
                    if c == "\"" || c == "\\" { out += "\\" }
                    out.append(c)
                }
                out += "\""
            case .array, .object: throw PoisonError(.invalidValue, "nested value in array column \(column.name)")
            }
        }
        return out + "}"
    }

    static func invalid(_ text: String, _ column: ColumnInfo) -> PoisonError {
        PoisonError(.invalidValue, "value \(quoted(text)) does not fit column \(column.name) of type \(column.sqlType)")
    }

    static func byteHex(_ b: UInt8) -> String {
        let digits = Array("0123456789abcdef")
        return String([digits[Int(b >> 4)], digits[Int(b & 0xF)]])
    }
}
