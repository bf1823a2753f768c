import CDCCore
import CDCPostgres
import Logging

/// Applies batches of decoded messages to the target in one transaction each: rows, row versions
/// and ledger entries commit together or not at all.
///
/// Fast path: the whole batch set-based (see `StageStatements`). When the target refuses it for a
/// permanent reason, the batch is re-run with each change inside its own savepoint, so only the
/// poison changes are set aside and the rest of the batch still commits.
///
/// Not thread-safe: one applier per connection, used from the thread that owns the connection.
public final class BatchApplier {
    public let conn: PGConnection
    private let catalog: Catalog
    private let settings: Settings
    private let logger: Logger
    private var statements: [TableName: (TargetTable, StageStatements)] = [:]

    public init(conn: PGConnection, settings: Settings, logger: Logger) {
        self.conn = conn
        self.settings = settings
        self.catalog = Catalog(allowlist: settings.tables)
        self.logger = logger
    }

    /// One outcome per input, in order. Throws only transient or fatal errors (nothing committed then).
    public func apply(_ items: [Result<DecodedMessage, PoisonError>]) throws -> [EventOutcome] {
        do {
            return try conn.transaction { _ in try run(items, isolated: false) }
        } catch {
            guard case .poison = ErrorClassifier.classify(error) else { throw error }
            logger.info("batch refused by the target, isolating poison changes", metadata: ["error": "\(error)"])
            catalog.invalidate()
            statements.removeAll()
            return try conn.transaction { _ in try run(items, isolated: true) }
        }
    }

    /// A unit of work in arrival order: a run of resolved changes, or a truncate between runs.
    private enum Step {
        case changes([ResolvedChange])
        case truncate(TargetTable, version: Int64?, eventIndex: Int)
    }

    private func run(_ items: [Result<DecodedMessage, PoisonError>], isolated: Bool) throws -> [EventOutcome] {
        var outcomes = [EventOutcome?](repeating: nil, count: items.count)
        var changeIDs: [String] = []
        for case let .success(.change(e)) in items { changeIDs.append(e.changeID) }
        let known = try ledgerContains(changeIDs)

        var steps: [Step] = []
        var current: [ResolvedChange] = []
        var seen = Set<String>()
        var tableOf: [Int: TableName] = [:]
        for (i, item) in items.enumerated() {
            switch item {
            case let .failure(poison):
                outcomes[i] = .deadLettered(poison)
            case .success(.tombstone):
                outcomes[i] = .skipped(.tombstone)
            case let .success(.truncate(source, version)):
                guard settings.applyTruncate else { outcomes[i] = .skipped(.truncateIgnored); continue }
                do {
                    let table = try catalog.table(settings.targetTable(for: source), on: conn)
                    if !current.isEmpty { steps.append(.changes(current)); current = [] }
                    steps.append(.truncate(table, version: version, eventIndex: i))
                } catch let p as PoisonError {
                    outcomes[i] = .deadLettered(p)
                }
            case let .success(.change(event)):
                if known.contains(event.changeID) || !seen.insert(event.changeID).inserted {
                    outcomes[i] = .duplicate
                    continue
                }
                do {
                    let table = try catalog.table(settings.targetTable(for: event.table), on: conn)
                    current.append(try ResolvedChange.resolve(event, index: i, table: table))
                    tableOf[i] = table.name
                } catch let p as PoisonError {
                    outcomes[i] = .deadLettered(p)
                }
            }
        }
        if !current.isEmpty { steps.append(.changes(current)) }

        for step in steps {
            switch step {
            case let .changes(changes) where isolated:
                for change in changes {
                    try conn.execute("SAVEPOINT cdcr_change")
                    do {
                        try execute(BatchPlanner.plan([change]), outcomes: &outcomes)
                        try conn.execute("RELEASE SAVEPOINT cdcr_change")
                    } catch {
                        guard case let .poison(p) = ErrorClassifier.classify(error) else { throw error }
                        try conn.execute("ROLLBACK TO SAVEPOINT cdcr_change")
                        outcomes[change.eventIndex] = .deadLettered(p)
                    }
                }
            case let .changes(changes):
                try execute(BatchPlanner.plan(changes), outcomes: &outcomes)
            case let .truncate(table, version, index):
                try conn.execute("TRUNCATE \(table.name.quoted)")
                // Late changes older than the truncate must not bring rows back.
                try conn.query(
                    "UPDATE cdcr.row_versions SET deleted = true, updated_at = now(), version = greatest(version, $2::bigint) WHERE table_name = $1",
                    [table.name.description, version.map(String.init)])
                outcomes[index] = .applied
            }
        }

        try recordInLedger(items, outcomes: outcomes, tableOf: tableOf)
        return outcomes.map { $0 ?? .stale }
    }

    /// Stages, guards and merges each table's rows; marks members applied or stale.
    private func execute(_ plan: BatchPlan, outcomes: inout [EventOutcome?]) throws {
        for i in plan.staleInBatch { outcomes[i] = .stale }
        for (table, rows) in plan.tables {
            let sql = stageStatements(for: table)
            try conn.execute(sql.prepare)
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
            try conn.copyIn(sql.copy, data: data)
            try conn.query(sql.guardSQL, [table.name.description])
            try conn.execute(anyKeep ? sql.mergeKeeping : sql.merge)
            var lost = Set<Int>()
            for r in try conn.query(sql.lost).rows { if let i = Int(r[0] ?? "") { lost.insert(i) } }
            for (idx, row) in rows.enumerated() {
                let outcome: EventOutcome = lost.contains(idx) ? .stale : .applied
                for m in row.members { outcomes[m] = outcome }
            }
        }
    }

    private func stageStatements(for table: TargetTable) -> StageStatements {
        if let (cached, sql) = statements[table.name], cached == table { return sql }
        let sql = StageStatements(table)
        statements[table.name] = (table, sql)
        return sql
    }

    /// The subset of `ids` the ledger already holds.
    private func ledgerContains(_ ids: [String]) throws -> Set<String> {
        guard !ids.isEmpty else { return [] }
        let rows = try conn.query("SELECT change_id FROM cdcr.ledger WHERE change_id = ANY($1::text[])", [pgArrayLiteral(ids)])
        return Set(rows.rows.compactMap { $0[0] })
    }

    /// Records every applied or stale change ID, in the same transaction as the data.
    private func recordInLedger(_ items: [Result<DecodedMessage, PoisonError>], outcomes: [EventOutcome?], tableOf: [Int: TableName]) throws {
        var data: [UInt8] = []
        var any = false
        for (i, item) in items.enumerated() {
            guard case let .success(.change(event)) = item, let table = tableOf[i] else { continue }
            let code: String
            switch outcomes[i] {
            case .applied?: code = "a"
            case .stale?, nil: code = "s"
            default: continue
            }
            any = true
            CopyText.appendRow([event.changeID, table.description, code], to: &data)
        }
        guard any else { return }
        try conn.execute("""
            CREATE TEMP TABLE IF NOT EXISTS cdcr_ledger_stage (change_id text, table_name text, outcome "char") ON COMMIT DELETE ROWS;
            DELETE FROM cdcr_ledger_stage;
            """)
        try conn.copyIn("COPY cdcr_ledger_stage FROM STDIN", data: data)
        // ON CONFLICT: a concurrent replay may have recorded the same change meanwhile; the version guard
        // already made the second application a no-op.
        try conn.execute("INSERT INTO cdcr.ledger (change_id, table_name, outcome) SELECT change_id, table_name, outcome FROM cdcr_ledger_stage ON CONFLICT (change_id) DO NOTHING")
    }
}

/// A PostgreSQL array literal of text values, for binding as one `text[]` parameter.
func pgArrayLiteral(_ values: [String]) -> String {
    var out = "{"
    for (i, v) in values.enumerated() {
        if i > 0 { out += "," }
        out += "\""
        for c in v.unicodeScalars {
            if c == "\"" || c == "\\" { out += "\\" }
            out.unicodeScalars.append(c)
        }
        out += "\""
    }
    return out + "}"
}
