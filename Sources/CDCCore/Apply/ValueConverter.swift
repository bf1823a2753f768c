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
        case let .debezium(json, field): return try pgText(debezium: json, field: field, column: column)
        }
    }

    static func pgText(json: JSONValue, column: ColumnInfo, format: EventFormat) throws(PoisonError) -> String? {
        switch json {
        case .null: return nil
        case let .bool(b):
            // Debezium sends bit(1) as a boolean; into a bit column it is the bit itself.
            if column.kind == .bit || column.kind == .varbit { return b ? "1" : "0" }
            return b ? "true" : "false"
        case let .number(n):
            switch column.kind {
            case .date:
                // Without a schema Debezium writes dates as days since the epoch.
                guard let days = Int64(n), CivilTime.dateDays.contains(days) else { throw invalid(n, column, "days since 1970 within PostgreSQL's date range") }
                return CivilTime.dateString(days: days)
            case .timestamp, .timestamptz:
                // Microseconds since the epoch (Debezium MicroTimestamp, PostgreSQL's native precision).
                try refuseMilliseconds(n, column, format)
                guard let micros = Int64(n), CivilTime.timestampMicros.contains(micros) else { throw invalid(n, column, "µs since 1970 within PostgreSQL's timestamp range") }
                return CivilTime.timestampString(micros: micros, zone: column.kind == .timestamptz ? "Z" : "")
            case .time:
                try refuseMilliseconds(n, column, format)
                guard let micros = Int64(n), CivilTime.timeMicros.contains(micros) else { throw invalid(n, column, "µs since midnight, 0 to 24:00:00") }
                return CivilTime.timeString(micros: micros)
            case .interval where format == .debezium:
                // Debezium's only numeric interval is MicroDuration: microseconds, not PostgreSQL's seconds.
                guard let micros = Int64(n) else { throw invalid(n, column, "an integer of microseconds (MicroDuration)") }
                return CivilTime.intervalString(micros: micros)
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
                return try binaryText(s, column: column, semantic: "bytea (schemaless)")
            case .hstore where format == .debezium:
                return try hstoreLiteral(jsonText: s, column: column, semantic: "hstore (schemaless)")
            case .numeric where format == .debezium:
                return specialNumeric(s)
            case .bit where format == .debezium, .varbit where format == .debezium:
                // Debezium sends bits as base64 of little-endian bytes with the length in the schema;
                // without it even a text like "1010" (valid base64) cannot be read.
                throw PoisonError(.invalidValue, "column \(column.name) (\(column.sqlType)): Debezium io.debezium.data.Bits without a schema: the bit length is in the schema")
            case .uuid:
                return s.lowercased()
            default:
                return s
            }
        case .array, .object:
            if column.kind == .array, case let .array(items) = json {
                return try arrayLiteral(items, column: column)
            }
            if case .object = json, column.kind != .json {
                return try objectText(json, column: column, format: format)
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

    /// A PostgreSQL array literal from element texts (nil = NULL), every element quoted.
    static func arrayLiteral(_ items: [String?]) -> String {
        var out = "{"
        for (i, item) in items.enumerated() {
            if i > 0 { out += "," }
            guard let s = item else { out += "NULL"; continue }
            out += "\""
            for c in s {
                if c == "\"" || c == "\\" { out += "\\" }
                out.append(c)
            }
            out += "\""
        }
        return out + "}"
    }

    static func invalid(_ text: String, _ column: ColumnInfo, _ expected: String? = nil) -> PoisonError {
        let what = expected.map { ", expected \($0)" } ?? ""
        return PoisonError(.invalidValue, "value \(quoted(String(text.prefix(60)))) does not fit column \(column.name) of type \(column.sqlType)\(what)")
    }

    /// A schemaless integer into `timestamp(p)`/`time(p)` with p ≤ 3: Debezium's adaptive mode sends
    /// such columns in milliseconds, the others in microseconds, and the schema that says which is
    /// absent. Refused rather than read 1000 times off.
    static func refuseMilliseconds(_ n: String, _ column: ColumnInfo, _ format: EventFormat) throws(PoisonError) {
        guard format == .debezium, let p = column.typeModifier, p <= 3 else { return }
        throw PoisonError(.invalidValue, "column \(column.name): schemaless integer \(n.prefix(30)) into \(column.sqlType): Debezium sends precision ≤ 3 as milliseconds (Timestamp/Time) in adaptive mode, cannot tell without a schema")
    }

    static let hexDigits: [UInt8] = Array("0123456789abcdef".utf8)

    /// `\x…`, PostgreSQL's hex bytea input.
    static func byteaHex(_ bytes: [UInt8]) -> String {
        var out: [UInt8] = [92, 120]  // "\x"
        out.reserveCapacity(2 + bytes.count * 2)
        for b in bytes {
            out.append(hexDigits[Int(b >> 4)])
            out.append(hexDigits[Int(b & 0xF)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}
