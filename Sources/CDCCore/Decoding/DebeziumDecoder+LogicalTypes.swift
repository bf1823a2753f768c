/// Debezium's semantic types (docs/DEBEZIUM.md). Values whose text does not depend on the target
/// column are converted here, with PostgreSQL's limits checked before anything is expanded; the rest
/// become `.debezium` and `ValueConverter` finishes them once the column's type is known.
extension DebeziumDecoder {
    /// Debezium's sentinels for `±infinity` timestamps (the PostgreSQL JDBC driver's
    /// `PGStatement.DATE_POSITIVE_INFINITY` / `DATE_NEGATIVE_INFINITY`, in microseconds).
    static let infinityMicros: Int64 = 9_223_372_036_825_200_000
    static let minusInfinityMicros: Int64 = -9_223_372_036_832_400_000

    /// Applies a Connect logical type from the field's schema; without a schema the raw JSON is kept
    /// and the target column's type decides (see `ValueConverter`).
    static func convert(_ value: JSONValue, schema: JSONValue?, column: String) throws(PoisonError) -> ColumnValue {
        if case .null = value { return .null }
        if case let .string(s) = value, s == unavailableValue { return .unavailable }
        guard let schema else { return .json(value) }
        let schemaType = schema["type"]?.stringValue
        guard let logical = schema["name"]?.stringValue else {
            switch schemaType {
            case "array":
                if let items = schema["items"], items["name"] != nil || items["type"]?.stringValue == "bytes" {
                    return try convertArray(value, items: items, column: column)
                }
                return .json(value)
            case "bytes", "map", "boolean", "string":
                // bytes: base64 by the JSON converter; map: hstore in `map` mode; boolean: bool or bit(1);
                // string: text, or a bytea in a base64/hex binary mode.
                return .debezium(value, DebeziumField(column: column, semantic: nil, schemaType: schemaType))
            default: return .json(value)
            }
        }
        func fail(_ why: String) -> PoisonError { refusal(column: column, semantic: logical, why) }
        func integer() throws(PoisonError) -> Int64 {
            guard let v = value.int64Value else { throw fail("value \(value.serialized.prefix(40)) is not a 64-bit integer") }
            return v
        }
        switch logical {
        case "org.apache.kafka.connect.data.Decimal":
            guard let b64 = value.stringValue else {
                if case .number = value { return .json(value) }
                throw fail("value is not base64")
            }
            guard let bytes = DecimalBytes.base64Decode(b64) else { throw fail("value is not base64") }
            // The scale is required: a missing or unreadable one must not silently mean 0.
            guard let scale = schema["parameters"]?["scale"]?.int64Value else { throw fail("schema has no integer scale parameter") }
            do {
                return .text(try DecimalBytes.decimalString(bigEndianTwosComplement: bytes, scale: scale))
            } catch { throw fail("\(error)") }
        case "io.debezium.data.VariableScaleDecimal":
            return try variableScaleDecimal(value, column: column)
        case "io.debezium.time.Date", "org.apache.kafka.connect.data.Date":
            let days = try integer()
            guard CivilTime.dateDays.contains(days) else { throw fail("\(days) days since 1970 is outside PostgreSQL's date range") }
            return .text(CivilTime.dateString(days: days))
        case "io.debezium.time.Timestamp", "org.apache.kafka.connect.data.Timestamp":
            let ms = try integer()
            if ms == infinityMicros / 1000 { return .text("infinity") }
            if ms == minusInfinityMicros / 1000 { return .text("-infinity") }
            let (us, overflow) = ms.multipliedReportingOverflow(by: 1000)
            guard !overflow, CivilTime.timestampMicros.contains(us) else { throw fail("\(ms) ms since 1970 is outside PostgreSQL's timestamp range") }
            return .text(CivilTime.timestampString(micros: us))
        case "io.debezium.time.MicroTimestamp":
            let us = try integer()
            if us == infinityMicros { return .text("infinity") }
            if us == minusInfinityMicros { return .text("-infinity") }
            guard CivilTime.timestampMicros.contains(us) else { throw fail("\(us) µs since 1970 is outside PostgreSQL's timestamp range") }
            return .text(CivilTime.timestampString(micros: us))
        case "io.debezium.time.NanoTimestamp":
            let ns = try integer()
            // time.precision.mode=nanoseconds writes ±infinity as Long.MAX_VALUE / Long.MIN_VALUE.
            if ns == .max { return .text("infinity") }
            if ns == .min { return .text("-infinity") }
            return .text(CivilTime.timestampString(nanos: ns))  // every Int64 of ns is within range
        case "io.debezium.time.Time", "org.apache.kafka.connect.data.Time":
            let ms = try integer()
            guard (0...86_400_000).contains(ms) else { throw fail("\(ms) ms is not a time of day (00:00:00 to 24:00:00)") }
            return .text(CivilTime.timeString(micros: ms * 1000))
        case "io.debezium.time.MicroTime":
            let us = try integer()
            guard CivilTime.timeMicros.contains(us) else { throw fail("\(us) µs is not a time of day (00:00:00 to 24:00:00)") }
            return .text(CivilTime.timeString(micros: us))
        case "io.debezium.time.NanoTime":
            let ns = try integer()
            guard (0...86_400_000_000_000).contains(ns) else { throw fail("\(ns) ns is not a time of day (00:00:00 to 24:00:00)") }
            return .text(CivilTime.timeString(nanos: ns))
        case "io.debezium.time.MicroDuration":
            // Exact microseconds; the interval literal is written by the target column's type.
            _ = try integer()
            return .debezium(value, DebeziumField(column: column, semantic: logical, schemaType: schemaType))
        case "io.debezium.data.Bits":
            guard let length = schema["parameters"]?["length"]?.int64Value, length > 0 else { throw fail("schema has no length parameter") }
            let source = schema["parameters"]?["__debezium.source.column.type"]?.stringValue?.uppercased()
            return .debezium(value, DebeziumField(column: column, semantic: logical, schemaType: schemaType, length: length, sourceType: source))
        case "io.debezium.data.Json", "io.debezium.data.geometry.Point", "io.debezium.data.geometry.Geometry",
             "io.debezium.data.geometry.Geography":
            return .debezium(value, DebeziumField(column: column, semantic: logical, schemaType: schemaType))
        case "io.debezium.time.ZonedTimestamp", "io.debezium.time.ZonedTime", "io.debezium.data.Uuid",
             "io.debezium.data.Xml", "io.debezium.data.Enum", "io.debezium.data.EnumSet", "io.debezium.time.Interval",
             "io.debezium.data.Ltree", "io.debezium.data.TsVector", "io.debezium.time.IsoDate", "io.debezium.time.IsoTime",
             "io.debezium.time.IsoTimestamp":
            guard let s = value.stringValue else { throw fail("value is not a string") }
            return .text(s)
        default:
            if logical.hasPrefix("io.debezium.time.Structured") {
                throw fail("time.precision.mode=structured is not supported; use adaptive, adaptive_time_microseconds or connect")
            }
            return .json(value)
        }
    }

    /// `{"scale": s, "value": "<base64>"}`: with a schema, or without one into a numeric column.
    static func variableScaleDecimal(_ value: JSONValue, column: String) throws(PoisonError) -> ColumnValue {
        let semantic = "io.debezium.data.VariableScaleDecimal"
        guard let b64 = value["value"]?.stringValue, let bytes = DecimalBytes.base64Decode(b64),
              let scale = value["scale"]?.int64Value else {
            throw refusal(column: column, semantic: semantic, "needs an integer scale and a base64 value")
        }
        do {
            return .text(try DecimalBytes.decimalString(bigEndianTwosComplement: bytes, scale: scale, allowedScales: NumericLimits.variableScales))
        } catch { throw refusal(column: column, semantic: semantic, "\(error)") }
    }

    /// An array whose items have a semantic type: each element converted, then an array literal.
    /// Only element types whose text does not depend on the column (all Debezium emits in arrays).
    static func convertArray(_ value: JSONValue, items: JSONValue, column: String) throws(PoisonError) -> ColumnValue {
        guard case let .array(elements) = value else { throw refusal(column: column, semantic: "array", "value is not an array") }
        var texts: [String?] = []
        texts.reserveCapacity(elements.count)
        for e in elements {
            switch try convert(e, schema: items, column: column) {
            case .null: texts.append(nil)
            case let .text(s): texts.append(s)
            case let .json(j):
                switch j {
                case let .string(s): texts.append(s)
                case let .number(n): texts.append(n)
                case let .bool(b): texts.append(b ? "t" : "f")
                default: throw refusal(column: column, semantic: "array", "nested value in an array")
                }
            case let .debezium(j, field):
                if field.schemaType == "bytes", let b64 = j.stringValue, let bytes = DecimalBytes.base64Decode(b64) {
                    texts.append(ValueConverter.byteaHex(bytes))
                } else if field.semantic == "io.debezium.data.Json", let s = j.stringValue {
                    texts.append(s)
                } else {
                    throw refusal(column: column, semantic: "array of \(field.typeName)", "cdcr cannot decode this element type in an array")
                }
            case .unavailable: throw refusal(column: column, semantic: "array", "placeholder inside an array")
            }
        }
        return .text(ValueConverter.arrayLiteral(texts))
    }

    static func refusal(column: String, semantic: String, _ why: String) -> PoisonError {
        PoisonError(.invalidValue, "column \(quoted(column)): Debezium \(semantic): \(why)")
    }
}
