import CDCCore

/// The database-free part of applying a batch, done ahead of time on the consume thread while the
/// previous batch is in the database: changes resolved against the tables the applier knew then,
/// the ledger's COPY rows and, for the usual batch (no duplicate IDs, every change resolved, no
/// truncate), the plan with its stage rows encoded. `BatchApplier` uses each part only after
/// checking it still holds (same tables, every ID claimed); otherwise it redoes that part itself.
public struct PreparedBatch: Sendable {
    /// The tables the changes were resolved against (a `BatchApplier.knownTables` snapshot).
    public let tables: [TableName: TargetTable]
    /// By batch position: the change resolved, or nil (not a change, unknown table, or refused).
    public let changes: [ResolvedChange?]
    let ledger: LedgerRows
    /// The plan of all resolved changes, valid when the batch's changes are exactly those.
    let staged: StagedPlan?
    /// How many changes `staged` was planned from.
    let plannedChanges: Int

    /// Target tables of changes that were not in `tables` (so not resolved here).
    public let unknownTables: Set<TableName>

    /// Prepares `items`, resolving (on all cores) each change whose table is in `tables`.
    public static func make(_ items: [Result<DecodedMessage, PoisonError>], tables: [TableName: TargetTable], settings: Settings) -> PreparedBatch {
        let changes = parallelMap(Array(items.indices)) { i -> ResolvedChange? in
            guard case let .success(.change(event)) = items[i], let table = tables[settings.targetTable(for: event.table)] else { return nil }
            return try? ResolvedChange.resolve(event, index: i, table: table)
        }
        let ledger = LedgerRows(items, settings: settings)
        var planned: [ResolvedChange] = []
        var unknown = Set<TableName>()
        var complete = true
        for (i, item) in items.enumerated() {
            switch item {
            case let .success(.change(event)):
                if let c = changes[i] {
                    if ledger.first[i] { planned.append(c) }
                } else {
                    complete = false
                    let name = settings.targetTable(for: event.table)
                    if tables[name] == nil { unknown.insert(name) }
                }
            case .success(.truncate):
                if settings.applyTruncate { complete = false }
            default:
                break
            }
        }
        let staged = complete && !planned.isEmpty ? StagedPlan(BatchPlanner.plan(planned)) : nil
        return PreparedBatch(tables: tables, changes: changes, ledger: ledger, staged: staged, plannedChanges: planned.count, unknownTables: unknown)
    }
}

/// The ledger entries of a batch: one per distinct change ID, in COPY text form. The stored ID is
/// `BookkeepingKey.stored(changeID)` (a digest for a long ID, whose full text goes beside it).
struct LedgerRows: Sendable {
    /// `change_id, table_name, outcome, full_change_id` rows for `cdcr.ledger`.
    let data: [UInt8]
    /// Per batch position: a change whose ID did not occur earlier in the batch.
    let first: [Bool]
    let count: Int
    /// Per row of `data`: where it ends in `data`, and the batch position it belongs to.
    let rowEnds: [Int]
    let rowItems: [Int]

    init(_ items: [Result<DecodedMessage, PoisonError>], settings: Settings) {
        var data: [UInt8] = []
        var ids = Set<String>()
        var first = [Bool](repeating: false, count: items.count)
        var rowEnds: [Int] = []
        var rowItems: [Int] = []
        for (i, item) in items.enumerated() {
            guard case let .success(.change(event)) = item else { continue }
            let stored = BookkeepingKey.stored(event.changeID)
            guard ids.insert(stored).inserted else { continue }
            first[i] = true
            let full = stored == event.changeID ? nil : event.changeID
            CopyText.appendRow([stored, settings.targetTable(for: event.table).description, "a", full], to: &data)
            rowEnds.append(data.count)
            rowItems.append(i)
        }
        self.data = data
        self.first = first
        count = ids.count
        self.rowEnds = rowEnds
        self.rowItems = rowItems
    }

    /// The COPY data of rows `range` (indexes into `rowItems`).
    func data(rows range: Range<Int>) -> ArraySlice<UInt8> {
        let start = range.lowerBound == 0 ? 0 : rowEnds[range.lowerBound - 1]
        return data[start..<(range.isEmpty ? start : rowEnds[range.upperBound - 1])]
    }
}

/// A batch plan with each table's stage rows encoded for COPY (columns as `StageStatements.copy`
/// lists them).
struct StagedPlan: Sendable {
    let plan: BatchPlan
    /// Per `plan.tables` entry: the COPY data, and whether any row keeps columns from the target.
    let stage: [(data: [UInt8], anyKeep: Bool)]

    init(_ plan: BatchPlan) {
        self.plan = plan
        stage = plan.tables.map { Self.encode($0.table, $0.rows, checks: plan.checks[$0.table.name] ?? []) }
    }

    /// `checks` follow the rows as op `x` (see `BatchPlan.checks`): typed by the COPY, skipped by the
    /// guard and the MERGE.
    private static func encode(_ table: TargetTable, _ rows: [StagedRow], checks: [[String?]]) -> (data: [UInt8], anyKeep: Bool) {
        var data: [UInt8] = []
        data.reserveCapacity(rows.count * 128)
        var anyKeep = false
        for (idx, row) in rows.enumerated() {
            var fields: [String?] = [String(idx), row.isDelete ? "d" : "u", row.version.map(String.init)]
            if row.keep.isEmpty {
                fields.append(nil)
            } else {
                anyKeep = true
                fields.append("{" + row.keep.map(String.init).joined(separator: ",") + "}")
            }
            if row.isDelete {
                var values = [String?](repeating: nil, count: table.columns.count)
                for (pos, col) in table.primaryKey.enumerated() { values[col] = row.keyTexts[pos] }
                fields.append(contentsOf: values)
            } else {
                fields.append(contentsOf: row.values)
            }
            CopyText.appendRow(fields, to: &data)
        }
        for (k, values) in checks.enumerated() {
            CopyText.appendRow([String(rows.count + k), "x", nil, nil] + values, to: &data)
        }
        return (data, anyKeep)
    }
}
