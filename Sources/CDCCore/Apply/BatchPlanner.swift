/// One row to stage for a table: the net effect of a batch's changes to one key.
public struct StagedRow: Sendable, Equatable {
    public var keyTexts: [String]
    public var isDelete: Bool
    public var version: Int64?
    public var values: [String?]
    public var keep: [Int]
    /// Event indices folded into this row, in arrival order. If the target holds a newer version they
    /// all end stale; otherwise they are all applied.
    public var members: [Int]
}

/// The set-based plan for one batch.
public struct BatchPlan: Sendable, Equatable {
    /// Tables in first-seen order with their staged rows (one per key).
    public var tables: [(table: TargetTable, rows: [StagedRow])]
    /// Event indices made stale inside the batch by a newer version of the same key that arrived earlier.
    public var staleInBatch: [Int]
    /// Per table, the values of upserts that no staged row carries (folded into a later change of the
    /// key, or stale in the batch). They are staged for their column types only: a value the column
    /// cannot hold makes the change poison even when a later change of the same key replaces it.
    public var checks: [TableName: [[String?]]] = [:]

    public init(tables: [(table: TargetTable, rows: [StagedRow])], staleInBatch: [Int], checks: [TableName: [[String?]]] = [:]) {
        self.tables = tables
        self.staleInBatch = staleInBatch
        self.checks = checks
    }

    public static func == (lhs: BatchPlan, rhs: BatchPlan) -> Bool {
        lhs.staleInBatch == rhs.staleInBatch && lhs.checks == rhs.checks && lhs.tables.count == rhs.tables.count
            && zip(lhs.tables, rhs.tables).allSatisfy { $0.table == $1.table && $0.rows == $1.rows }
    }
}

/// Folds a batch's changes into at most one staged row per key, keeping per-key arrival order and
/// the version rule: a change whose version is not greater than what the key already reached is stale.
public enum BatchPlanner {
    public static func plan(_ changes: [ResolvedChange]) -> BatchPlan {
        var tableOrder: [TableName] = []
        var tables: [TableName: TargetTable] = [:]
        var rowsByTable: [TableName: [StagedRow]] = [:]
        var slot: [TableName: [[String]: Int]] = [:]
        var stale: [Int] = []
        var checks: [TableName: [[String?]]] = [:]

        for change in changes {
            let name = change.table.name
            if tables[name] == nil {
                tables[name] = change.table
                tableOrder.append(name)
            }
            if let i = slot[name]?[change.keyTexts] {
                var row = rowsByTable[name]![i]
                if let old = row.version, let new = change.version, new <= old {
                    stale.append(change.eventIndex)
                    if !change.isDelete { checks[name, default: []].append(change.values) }
                    continue
                }
                if !row.isDelete { checks[name, default: []].append(row.values) }
                row = fold(row, change)
                rowsByTable[name]![i] = row
            } else {
                slot[name, default: [:]][change.keyTexts] = rowsByTable[name, default: []].count
                rowsByTable[name, default: []].append(StagedRow(
                    keyTexts: change.keyTexts, isDelete: change.isDelete, version: change.version,
                    values: change.values, keep: change.keep, members: [change.eventIndex]))
            }
        }
        return BatchPlan(tables: tableOrder.map { (tables[$0]!, rowsByTable[$0]!) }, staleInBatch: stale, checks: checks)
    }

    /// The newer change wins; columns it must keep are taken from the earlier upsert in the batch.
    static func fold(_ row: StagedRow, _ change: ResolvedChange) -> StagedRow {
        var next = StagedRow(
            keyTexts: row.keyTexts, isDelete: change.isDelete, version: change.version,
            values: change.values, keep: change.keep, members: row.members + [change.eventIndex])
        if !change.isDelete, !row.isDelete, !change.keep.isEmpty {
            var stillKept: [Int] = []
            for col in change.keep {
                if row.keep.contains(col) { stillKept.append(col) } else { next.values[col] = row.values[col] }
            }
            next.keep = stillKept
        }
        return next
    }
}

/// Encodes rows for `COPY ... FROM STDIN` in PostgreSQL's text format.
public enum CopyText {
    public static func appendField(_ value: String?, to out: inout [UInt8]) {
        guard let value else {
            out.append(contentsOf: [0x5C, 0x4E])  // \N
            return
        }
        for b in value.utf8 {
            switch b {
            case 0x5C: out.append(contentsOf: [0x5C, 0x5C])
            case 0x09: out.append(contentsOf: [0x5C, 0x74])
            case 0x0A: out.append(contentsOf: [0x5C, 0x6E])
            case 0x0D: out.append(contentsOf: [0x5C, 0x72])
            default: out.append(b)
            }
        }
    }

    /// Appends one row: fields separated by tabs, terminated by a newline.
    public static func appendRow(_ fields: [String?], to out: inout [UInt8]) {
        for (i, f) in fields.enumerated() {
            if i > 0 { out.append(0x09) }
            appendField(f, to: &out)
        }
        out.append(0x0A)
    }
}
