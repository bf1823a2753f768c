/// Decodes cdcr's own JSON change format (see README "Native event format").
public enum NativeDecoder {
    public static func decode(_ value: JSONValue) throws(PoisonError) -> DecodedMessage {
        guard let members = value.objectMembers else { throw PoisonError(.undecodable, "native event is not a JSON object") }
        let object = JSONValue.object(members)

        let changeID: String
        switch object["change_id"] {
        case let .string(s)? where !s.isEmpty: changeID = s
        case let .number(n)? where Int64(n) != nil: changeID = n
        case nil, .null?: throw PoisonError(.undecodable, "change_id is missing")
        default: throw PoisonError(.undecodable, "change_id must be a non-empty string or an integer")
        }
        if changeID.utf8.contains(0) { throw PoisonError(.undecodable, "change_id contains a NUL character") }

        guard let tableText = object["table"]?.stringValue, !tableText.isEmpty else {
            throw PoisonError(.undecodable, "table is missing or not a string")
        }
        if tableText.utf8.contains(0) { throw PoisonError(.undecodable, "table contains a NUL character") }
        let table = TableName(parsing: tableText)

        guard let opText = object["operation"]?.stringValue else {
            throw PoisonError(.unknownOperation, "operation is missing or not a string")
        }
        let operation: ChangeOperation
        switch opText {
        case "INSERT", "insert", "c": operation = .insert
        case "UPDATE", "update", "u": operation = .update
        case "DELETE", "delete", "d": operation = .delete
        default: throw PoisonError(.unknownOperation, "unknown operation \(quoted(opText)); expected INSERT, UPDATE or DELETE")
        }

        guard let keyMembers = object["key"]?.objectMembers, !keyMembers.isEmpty else {
            throw PoisonError(.noKey, "key is missing or empty; it must be an object of primary-key columns")
        }
        let key = keyMembers.map { ($0.0, ColumnValue.json($0.1)) }

        var row: [(String, ColumnValue)]?
        switch object["data"] {
        case let .object(cols)?: row = cols.map { ($0.0, ColumnValue.json($0.1)) }
        case nil, .null?:
            if operation.isUpsert { throw PoisonError(.undecodable, "\(operation.rawValue) needs data (the whole row)") }
        default: throw PoisonError(.undecodable, "data must be an object or null")
        }

        var version: Int64?
        switch object["version"] {
        case nil, .null?: version = Int64(changeID)
        case let v?:
            guard let parsed = v.int64Value else { throw PoisonError(.undecodable, "version must be an integer") }
            version = parsed
        }

        var timestamp: Int64?
        switch object["timestamp"] {
        case nil, .null?: timestamp = nil
        case let .number(n)?:
            guard let ms = Int64(n) else { throw PoisonError(.undecodable, "timestamp must be epoch milliseconds or ISO-8601") }
            timestamp = ms * 1000
        case let .string(s)?:
            guard let micros = CivilTime.parseInstant(s) else { throw PoisonError(.undecodable, "timestamp \(quoted(s)) is not ISO-8601") }
            timestamp = micros
        default: throw PoisonError(.undecodable, "timestamp must be epoch milliseconds or ISO-8601")
        }

        return .change(ChangeEvent(
            changeID: changeID, table: table, operation: operation, key: key, row: row,
            version: version, timestampMicros: timestamp, format: .native))
    }
}

/// Quotes untrusted text for an error message, cut to a readable length.
func quoted(_ text: String) -> String {
    let cut = text.count > 80 ? String(text.prefix(80)) + "…" : text
    return "'" + cut + "'"
}
