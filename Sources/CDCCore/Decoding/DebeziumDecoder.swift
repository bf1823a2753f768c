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
        // A logical decoding message (pg_logical_emit_message) carries no row change; its source
        // block names no table.
        if payload["op"]?.stringValue == "m" { return .logicalMessage }
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
            for (name, v) in cols { converted.append((name, try convert(v, schema: imageSchemas[name], column: name))) }
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
            for (name, v) in members { key.append((name, try convert(v, schema: keySchemas[name], column: name))) }
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
}
