/// A change checked against its target table: every identifier is a catalog column, every value is
/// in PostgreSQL text form, the key is complete.
public struct ResolvedChange: Sendable, Equatable {
    /// Position of the event in its batch.
    public let eventIndex: Int
    public let table: TargetTable
    public let isDelete: Bool
    /// Key values in primary-key order, canonical text (integers normalised, uuids lower-case), so
    /// that two spellings of one key group together.
    public let keyTexts: [String]
    /// One entry per table column for upserts (nil = NULL); empty for deletes.
    public let values: [String?]
    /// Column indices whose target value must be kept (unchanged TOAST, or absent from the event).
    public let keep: [Int]
    public let version: Int64?

    public init(eventIndex: Int, table: TargetTable, isDelete: Bool, keyTexts: [String], values: [String?], keep: [Int], version: Int64?) {
        self.eventIndex = eventIndex
        self.table = table
        self.isDelete = isDelete
        self.keyTexts = keyTexts
        self.values = values
        self.keep = keep
        self.version = version
    }

    /// Resolves `event` against `table`. Throws the reason to dead-letter it.
    public static func resolve(_ event: ChangeEvent, index: Int, table: TargetTable) throws(PoisonError) -> ResolvedChange {
        var keyValues = [String?](repeating: nil, count: table.primaryKey.count)
        var keyFound = [Bool](repeating: false, count: table.primaryKey.count)

        for (name, value) in event.key {
            guard let col = table.columnIndex(name) else {
                throw PoisonError(.unknownColumn, "key column \(quoted(name)) is not a column of \(table.name)")
            }
            guard let pos = table.primaryKey.firstIndex(of: col) else {
                throw PoisonError(.noKey, "key column \(quoted(name)) is not part of the primary key of \(table.name)")
            }
            keyValues[pos] = try ValueConverter.pgText(value, column: table.columns[col], format: event.format)
            keyFound[pos] = true
        }

        var values = [String?](repeating: nil, count: event.operation.isUpsert ? table.columns.count : 0)
        var present = [Bool](repeating: false, count: table.columns.count)
        var keep: [Int] = []
        if let row = event.row {
            for (name, value) in row {
                guard let col = table.columnIndex(name) else {
                    throw PoisonError(.unknownColumn, "column \(quoted(name)) does not exist in \(table.name)")
                }
                present[col] = true
                let text: String?
                if case .unavailable = value {
                    text = nil
                    if event.operation.isUpsert { keep.append(col) }
                } else {
                    text = try ValueConverter.pgText(value, column: table.columns[col], format: event.format)
                }
                if let pos = table.primaryKey.firstIndex(of: col) {
                    if keyFound[pos] {
                        if event.operation.isUpsert, canonical(text, table.columns[col].kind) != canonical(keyValues[pos], table.columns[col].kind) {
                            throw PoisonError(.rejected, "key column \(name) differs between key and data; primary-key changes must be a delete and an insert")
                        }
                    } else if event.operation.isUpsert || text != nil {
                        keyValues[pos] = text
                        keyFound[pos] = text != nil
                    }
                }
                if event.operation.isUpsert { values[col] = text }
            }
        }
        for (pos, found) in keyFound.enumerated() where !found || keyValues[pos] == nil {
            throw PoisonError(.noKey, "no value for primary-key column \(table.columns[table.primaryKey[pos]].name) of \(table.name)")
        }
        if event.operation.isUpsert {
            for (col, isPresent) in present.enumerated() where !isPresent {
                if let pos = table.primaryKey.firstIndex(of: col) {
                    values[col] = keyValues[pos]
                } else {
                    keep.append(col)  // absent from the event: keep the target's value
                }
            }
        }
        let keyTexts = table.primaryKey.enumerated().map { pos, col in canonical(keyValues[pos], table.columns[col].kind) ?? "" }
        return ResolvedChange(
            eventIndex: index, table: table, isDelete: !event.operation.isUpsert, keyTexts: keyTexts,
            values: values, keep: keep.sorted(), version: event.version)
    }

    static func canonical(_ text: String?, _ kind: ColumnKind) -> String? {
        guard let text else { return nil }
        switch kind {
        case .integer: return Int64(text).map(String.init) ?? text
        case .uuid: return text.lowercased()
        default: return text
        }
    }
}
