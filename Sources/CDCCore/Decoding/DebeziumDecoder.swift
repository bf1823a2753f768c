/// Decodes Debezium PostgreSQL-connector envelopes written by the JSON converter, with or without
/// the `schema`/`payload` wrapper.
public enum DebeziumDecoder {
    /// The placeholder Debezium writes for an unchanged TOASTed column.
    public static let unavailableValue = "__debezium_unavailable_value"

    /// True when `value` looks like a Debezium envelope (wrapped or not).
    public static func looksLikeEnvelope(_ value: JSONValue) -> Bool {
        let payload = unwrap(value)
        return payload["op"] != nil && payload["source"] != nil
    }

    /// `messageKey` is the Kafka message key parsed as JSON (nil when absent or not JSON).
    public static func decode(_ value: JSONValue, messageKey: JSONValue?) throws(PoisonError) -> DecodedMessage {
        let schema = value["payload"] != nil ? value["schema"] : nil
        let payload = unwrap(value)
        guard payload.objectMembers != nil else { throw PoisonError(.undecodable, "Debezium payload is not an object") }
        guard let source = payload["source"], source.objectMembers != nil else {
            throw PoisonError(.undecodable, "Debezium envelope has no source block")
        }
        guard let schemaName = source["schema"]?.stringValue, let tableName = source["table"]?.stringValue else {
            throw PoisonError(.undecodable, "Debezium source block lacks schema or table")
        }
        if schemaName.utf8.contains(0) || tableName.utf8.contains(0) {
            throw PoisonError(.undecodable, "Debezium source schema or table contains a NUL character")
        }
        let table = TableName(schema: schemaName, name: tableName)
        let lsn = source["lsn"]?.int64Value
        guard let op = payload["op"]?.stringValue else { throw PoisonError(.unknownOperation, "Debezium op is missing") }

        let operation: ChangeOperation
        switch op {
        case "c": operation = .insert
        case "u": operation = .update
        case "r": operation = .read
        case "d": operation = .delete
        case "t": return .truncate(table, version: lsn)
        default: throw PoisonError(.unknownOperation, "unknown Debezium op \(quoted(op))")
        }

        let imageSchemas = schema.map { Self.fieldSchemas(of: $0, field: operation == .delete ? "before" : "after") } ?? [:]
        let image = operation == .delete ? payload["before"] : payload["after"]
        var row: [(String, ColumnValue)]?
        switch image {
        case let .object(cols)?:
            var converted: [(String, ColumnValue)] = []
            for (name, v) in cols { converted.append((name, try convert(v, schema: imageSchemas[name]))) }
            row = converted
        case nil, .null?:
            if operation.isUpsert { throw PoisonError(.undecodable, "Debezium op \(op) has no after image") }
        default: throw PoisonError(.undecodable, "Debezium row image is not an object")
        }

        // The message key carries the primary key; with the schema wrapper it sits in `payload`.
        var key: [(String, ColumnValue)] = []
        let keyPayload = messageKey.map { $0["payload"] != nil && $0["schema"] != nil ? $0["payload"]! : $0 }
        if let members = keyPayload?.objectMembers {
            let keySchemas = messageKey?["schema"].map { fieldSchemas(ofStruct: $0) } ?? [:]
            for (name, v) in members { key.append((name, try convert(v, schema: keySchemas[name]))) }
        }
        if key.isEmpty && row == nil { throw PoisonError(.noKey, "Debezium delete without message key or before image") }

        // Deterministic change ID from the source position and the row's identity: a redelivery or a
        // re-snapshot of the same change gets the same ID; two rows changed at one LSN do not collide.
        let identity = keyPayload?.serialized ?? image?.serialized ?? "null"
        let position = lsn.map(String.init) ?? (source["ts_ms"]?.int64Value.map { "ts\($0)" } ?? "?")
        let changeID = "dbz:\(table):\(position):\(op == "r" ? "r" : "w"):\(identity)"

        let tsMillis = source["ts_ms"]?.int64Value ?? payload["ts_ms"]?.int64Value
        return .change(ChangeEvent(
            changeID: changeID, table: table, operation: operation, key: key, row: row,
            version: lsn, timestampMicros: tsMillis.map { $0 * 1000 }, format: .debezium))
    }

    private static func unwrap(_ value: JSONValue) -> JSONValue {
        if let payload = value["payload"], value["schema"] != nil { return payload }
        return value
    }

    /// The field schemas of the `before`/`after` struct in an envelope schema, by field name.
    private static func fieldSchemas(of envelope: JSONValue, field: String) -> [String: JSONValue] {
        guard case let .array(fields)? = envelope["fields"] else { return [:] }
        for f in fields where f["field"]?.stringValue == field { return fieldSchemas(ofStruct: f) }
        return [:]
    }

    private static func fieldSchemas(ofStruct structSchema: JSONValue) -> [String: JSONValue] {
        guard case let .array(fields)? = structSchema["fields"] else { return [:] }
        var out: [String: JSONValue] = [:]
        for f in fields { if let name = f["field"]?.stringValue { out[name] = f } }
        return out
    }

    /// Applies a Connect logical type from the field's schema; without a schema the raw JSON is kept
    /// and the target column's type decides (see `ValueConverter`).
    static func convert(_ value: JSONValue, schema: JSONValue?) throws(PoisonError) -> ColumnValue {
        if case .null = value { return .null }
        if case let .string(s) = value, s == unavailableValue { return .unavailable }
        guard let schema, let logical = schema["name"]?.stringValue else {
            // A string that is the JSON text of a Json column stays raw; flagged by format at conversion.
            return .json(value)
        }
        switch logical {
        case "org.apache.kafka.connect.data.Decimal":
            guard let b64 = value.stringValue, let bytes = DecimalBytes.base64Decode(b64) else {
                if case .number = value { return .json(value) }
                throw PoisonError(.invalidValue, "Decimal value is not base64")
            }
            let scale = Int(schema["parameters"]?["scale"]?.stringValue ?? "0") ?? 0
            return .text(DecimalBytes.decimalString(bigEndianTwosComplement: bytes, scale: scale))
        case "io.debezium.data.VariableScaleDecimal":
            guard let b64 = value["value"]?.stringValue, let bytes = DecimalBytes.base64Decode(b64),
                  let scale = value["scale"]?.int64Value else {
                throw PoisonError(.invalidValue, "VariableScaleDecimal needs scale and value")
            }
            return .text(DecimalBytes.decimalString(bigEndianTwosComplement: bytes, scale: Int(scale)))
        case "io.debezium.time.Date", "org.apache.kafka.connect.data.Date":
            guard let days = value.int64Value else { throw PoisonError(.invalidValue, "Date is not an integer") }
            return .text(CivilTime.dateString(days: days))
        case "io.debezium.time.Timestamp", "org.apache.kafka.connect.data.Timestamp":
            guard let ms = value.int64Value else { throw PoisonError(.invalidValue, "Timestamp is not an integer") }
            return .text(CivilTime.timestampString(micros: ms * 1000))
        case "io.debezium.time.MicroTimestamp":
            guard let us = value.int64Value else { throw PoisonError(.invalidValue, "MicroTimestamp is not an integer") }
            return .text(CivilTime.timestampString(micros: us))
        case "io.debezium.time.NanoTimestamp":
            guard let ns = value.int64Value else { throw PoisonError(.invalidValue, "NanoTimestamp is not an integer") }
            return .text(CivilTime.timestampString(micros: ns / 1000))
        case "io.debezium.time.Time", "org.apache.kafka.connect.data.Time":
            guard let ms = value.int64Value else { throw PoisonError(.invalidValue, "Time is not an integer") }
            return .text(CivilTime.timeString(micros: ms * 1000))
        case "io.debezium.time.MicroTime":
            guard let us = value.int64Value else { throw PoisonError(.invalidValue, "MicroTime is not an integer") }
            return .text(CivilTime.timeString(micros: us))
        case "io.debezium.time.ZonedTimestamp", "io.debezium.time.ZonedTime", "io.debezium.data.Uuid",
             "io.debezium.data.Json", "io.debezium.data.Xml", "io.debezium.data.Enum":
            guard let s = value.stringValue else { return .json(value) }
            return .text(s)
        default:
            return .json(value)
        }
    }
}
