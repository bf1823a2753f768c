import CDCCore
import CDCPostgres
import Logging

/// Applies batches of decoded messages to the target in one transaction each: rows, row versions
/// and ledger entries commit together or not at all.
///
/// Fast path: the whole batch set-based (see `StageStatements`). When the target refuses it for a
/// permanent reason, the batch is re-run bisecting under savepoints, so only the poison changes are
/// set aside and the rest of the batch still commits.
///
/// Not thread-safe: one applier per connection, used from the thread that owns the connection.
public final class BatchApplier {
    public let conn: PGConnection
    let catalog: Catalog
    let settings: Settings
    private let logger: Logger
    private var statements: [TableName: (TargetTable, StageStatements)] = [:]
    /// The last ledger claim met IDs already there (a redelivery, a replay): claim the next batch
    /// with the path that skips them.
    var expectDuplicates = false
    /// Per table: batches left before an insert-only batch is tried the cheap way again
    /// (`StageStatements.insertNew`, see `applyFused`).
    var insertOnlyPause: [TableName: Int] = [:]
    /// Time spent per phase of the last batch (debug logging, benchmarks).
    public private(set) var phases: [(String, Duration)] = []
    private var phaseStart = ContinuousClock.now
    private var roundTripsAtStart = 0

    /// Phase timings as `name=12ms …`, for a debug log line.
    public static func describe(_ phases: [(String, Duration)]) -> String {
        phases.map { "\($0.0)=\(Int($0.1.seconds * 1000))ms" }.joined(separator: " ")
    }

    func mark(_ name: String) {
        let now = ContinuousClock.now
        phases.append((name, now - phaseStart))
        phaseStart = now
    }

    public init(conn: PGConnection, settings: Settings, logger: Logger) {
        self.conn = conn
        self.settings = settings
        self.catalog = Catalog(allowlist: settings.tables, denySchemas: settings.denySchemas)
        self.logger = logger
    }

    /// One outcome per input, in order. Throws only transient or fatal errors (nothing committed then).
    /// `dryRun` does all the work and rolls it back: the outcomes say what would happen.
    /// `prepared` may carry work done ahead of time on another thread (see `PreparedBatch`).
    ///
    /// `isolateUnclear`: a failure that is neither transient nor clearly poison (`FailureClass.unclear`)
    /// is isolated like poison instead of thrown, so a change that reproduces it alone is
    /// dead-lettered with its SQLSTATE. The caller passes it once its bounded retries are spent.
    public func apply(_ items: [Result<DecodedMessage, PoisonError>], prepared: PreparedBatch? = nil, dryRun: Bool = false,
                      isolateUnclear: Bool = false) throws -> [EventOutcome] {
        startPhases()
        do {
            if !dryRun, let prepared, let outcomes = try applyFused(items, prepared: prepared) { return outcomes }
            let outcomes = try inTransaction(dryRun: dryRun) { try run(items, prepared: prepared, isolated: false) }
            mark("commit")
            return outcomes
        } catch {
            return try isolatingPoison(after: error, unclearToo: isolateUnclear) {
                try inTransaction(dryRun: dryRun) { try run(items, isolated: true, isolateUnclear: isolateUnclear) }
            }
        }
    }

    /// The target tables resolved so far (allowlisted, with a primary key): what another thread may
    /// prepare the next batch against while this one is busy. Read it only while no batch is being
    /// applied.
    public var knownTables: [TableName: TargetTable] { catalog.knownTables }

    /// Reads the named tables into the catalog so the next batch can be prepared against them.
    /// Best effort: a table that cannot be read now is met again, with its error, when applied.
    public func learn(_ names: Set<TableName>) {
        for name in names { _ = try? catalog.table(name, on: conn) }
    }

    /// Like `apply`, inside a transaction the caller has open (and commits): the repairer locks rows
    /// and writes its log in the same transaction. A refused batch is retried, isolating the poison
    /// changes, after rolling back to a savepoint.
    public func applyInOpenTransaction(_ items: [Result<DecodedMessage, PoisonError>], isolateUnclear: Bool = false) throws -> [EventOutcome] {
        startPhases()
        try conn.execute("SAVEPOINT cdcr_batch")
        do {
            let outcomes = try run(items, isolated: false)
            try conn.execute("RELEASE SAVEPOINT cdcr_batch")
            return outcomes
        } catch {
            return try isolatingPoison(after: error, unclearToo: isolateUnclear) {
                try conn.execute("ROLLBACK TO SAVEPOINT cdcr_batch; RELEASE SAVEPOINT cdcr_batch")
                return try run(items, isolated: true, isolateUnclear: isolateUnclear)
            }
        }
    }

    private func startPhases() {
        phases.removeAll(keepingCapacity: true)
        phaseStart = .now
        roundTripsAtStart = conn.roundTrips
    }

    /// Statement round trips to the target since the last batch started (`PGConnection.roundTrips`):
    /// four for the usual batch of one table (see `applyFused`).
    public var roundTrips: Int { conn.roundTrips - roundTripsAtStart }

    /// After a failed set-based attempt: rethrows anything but a poison refusal; for that, forgets
    /// cached tables and statements (a DDL change may be the cause) and runs `isolated`, which applies
    /// the batch change by change under savepoints.
    private func isolatingPoison(after error: any Error, unclearToo: Bool, _ isolated: () throws -> [EventOutcome]) throws -> [EventOutcome] {
        switch ErrorClassifier.classify(error) {
        case .poison: break
        case .unclear where unclearToo: break
        default: throw error
        }
        logger.info("batch refused by the target, isolating poison changes", metadata: ["error": "\(error)"])
        catalog.invalidate()
        statements.removeAll()
        return try isolated()
    }

    private func inTransaction<T>(dryRun: Bool, _ body: () throws -> T) throws -> T {
        guard dryRun else { return try conn.transaction { _ in try body() } }
        try conn.execute("BEGIN")
        defer { _ = try? conn.execute("ROLLBACK") }
        return try body()
    }

    /// A unit of work in arrival order: a run of resolved changes, or a truncate between runs.
    private enum Step {
        case changes([ResolvedChange])
        case truncate(TargetTable, version: Int64?, eventIndex: Int)
    }

    private func run(_ items: [Result<DecodedMessage, PoisonError>], prepared: PreparedBatch? = nil, isolated: Bool,
                     isolateUnclear: Bool = false) throws -> [EventOutcome] {
        var outcomes = [EventOutcome?](repeating: nil, count: items.count)
        let claim = try claimInLedger(prepared?.ledger ?? LedgerRows(items, settings: settings), items)
        let claimed = claim.claimed
        mark("ledger_claim")

        var steps: [Step] = []
        var current: [ResolvedChange] = []
        var early = 0  // changes taken as `prepared` resolved them
        var refreshed = Set<TableName>()
        resolving: while true {
            outcomes = [EventOutcome?](repeating: nil, count: items.count)
            steps = []
            current = []
            early = 0
            var unchanged: [TableName: Bool] = [:]  // per table: still as it was when `prepared` was resolved
            for (i, item) in items.enumerated() {
                switch item {
                case let .failure(poison):
                    outcomes[i] = .deadLettered(poison)
                case .success(.tombstone):
                    outcomes[i] = .skipped(.tombstone)
                case .success(.logicalMessage):
                    outcomes[i] = .skipped(.logicalMessage)
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
                    if let refused = claim.refused[i] {
                        outcomes[i] = .deadLettered(refused)
                        continue
                    }
                    if !claimed[i] {
                        outcomes[i] = .duplicate
                        continue
                    }
                    let name = settings.targetTable(for: event.table)
                    do {
                        let table = try catalog.table(name, on: conn)
                        if let prepared, let resolved = prepared.changes[i], resolved.table.name == name,
                           unchanged[name] ?? { let same = prepared.tables[name] == table; unchanged[name] = same; return same }() {
                            current.append(resolved)
                            early += 1
                        } else {
                            current.append(try ResolvedChange.resolve(event, index: i, table: table))
                        }
                    } catch let p as PoisonError {
                        // The cached definition may predate a table or column added since: read it
                        // again (once per table and batch) and, if it changed, resolve the batch anew.
                        if p.reason == .unknownColumn || p.reason == .unknownTable, refreshed.insert(name).inserted,
                           try catalog.reload(name, on: conn) {
                            continue resolving
                        }
                        outcomes[i] = .deadLettered(p)
                    }
                }
            }
            break
        }
        if !current.isEmpty { steps.append(.changes(current)) }
        mark("resolve")
        // The prepared plan holds when this batch's changes are exactly the ones it was made from.
        let staged = prepared?.staged.flatMap { early == current.count && early == prepared?.plannedChanges && steps.count == 1 ? $0 : nil }

        for step in steps {
            switch step {
            case let .changes(changes) where isolated:
                try isolate(changes[...], unclearToo: isolateUnclear, outcomes: &outcomes)
            case let .changes(changes):
                let plan = staged ?? StagedPlan(BatchPlanner.plan(changes))
                mark("plan")
                try execute(plan, outcomes: &outcomes)
            case let .truncate(table, version, index):
                let fence = stageStatements(for: table).fence
                if let fence { try conn.execute(fence) }
                try conn.execute("TRUNCATE \(table.name.quoted)")
                // Late changes older than the truncate must not bring rows back, with an entry or a range floor.
                try conn.query(
                    "UPDATE cdcr.row_versions SET deleted = true, updated_at = now(), version = greatest(version, $2::bigint) WHERE table_name = $1",
                    [table.name.description, version.map(String.init)])
                if fence != nil { try conn.query(RangeFloors.raiseForTruncate, [table.name.description, version.map(String.init)]) }
                outcomes[index] = .applied
            }
        }

        try settleLedger(items, outcomes: outcomes, claimed: claimed)
        mark("ledger_settle")
        return outcomes.map { $0 ?? .stale }
    }

    /// Applies `changes` under a savepoint; when the target refuses them, splits them in halves and
    /// tries each half (left first, so a key's changes keep their order), down to single changes,
    /// which are dead-lettered. k poison changes in a batch of n cost O(k log n) attempts, not n.
    ///
    /// With `unclearToo`, an unclear failure is split the same way; a single change that still meets
    /// it is dead-lettered with its SQLSTATE and message, but only when the failure is about that
    /// change: a database-level one (`ErrorClassifier.isDatabaseLevel`), or a database that cannot
    /// even run `SELECT 1` after rolling back, throws `DatabaseBroken` and the batch is retried.
    private func isolate(_ changes: ArraySlice<ResolvedChange>, unclearToo: Bool, outcomes: inout [EventOutcome?]) throws {
        guard !changes.isEmpty else { return }
        try conn.execute("SAVEPOINT cdcr_isolate")
        do {
            try execute(StagedPlan(BatchPlanner.plan(Array(changes))), outcomes: &outcomes)
            try conn.execute("RELEASE SAVEPOINT cdcr_isolate")
        } catch {
            let refusal: PoisonError
            switch ErrorClassifier.classify(error) {
            case let .poison(p):
                refusal = p
                try conn.execute("ROLLBACK TO SAVEPOINT cdcr_isolate; RELEASE SAVEPOINT cdcr_isolate")
            case let .unclear(_, sqlState) where unclearToo:
                if ErrorClassifier.isDatabaseLevel(sqlState: sqlState) { throw DatabaseBroken(cause: error) }
                refusal = PoisonError(.rejected, "the target failed on this change alone: \((error as? PGError)?.message ?? "\(error)")", sqlState: sqlState)
                do {
                    try conn.execute("ROLLBACK TO SAVEPOINT cdcr_isolate; RELEASE SAVEPOINT cdcr_isolate")
                    try conn.query("SELECT 1")
                } catch {
                    throw DatabaseBroken(cause: error)
                }
            default:
                throw error
            }
            if changes.count == 1 {
                outcomes[changes.first!.eventIndex] = .deadLettered(refusal)
                return
            }
            let mid = changes.startIndex + changes.count / 2
            try isolate(changes[changes.startIndex..<mid], unclearToo: unclearToo, outcomes: &outcomes)
            try isolate(changes[mid...], unclearToo: unclearToo, outcomes: &outcomes)
        }
    }

    /// Stages, guards and merges each table's rows; marks members applied or stale.
    private func execute(_ staged: StagedPlan, outcomes: inout [EventOutcome?]) throws {
        for i in staged.plan.staleInBatch { outcomes[i] = .stale }
        for ((table, rows), (data, anyKeep)) in zip(staged.plan.tables, staged.stage) {
            let sql = stageStatements(for: table)
            try conn.execute(sql.prepare)
            try conn.copyIn(sql.copy, data: data)
            mark("stage_copy")
            let lost = try conn.query(sql.guardSQL)
            mark("guard")
            try conn.query(anyKeep ? sql.mergeKeeping : sql.merge)
            mark("merge")
            Self.record(rows, lost: lost, into: &outcomes)
        }
    }

    /// Marks each staged row's members applied, or stale when the guard returned the row as a loser.
    static func record(_ rows: [StagedRow], lost: PGRows, into outcomes: inout [EventOutcome?]) {
        var losers = Set<Int>()
        for r in lost.rows { if let i = Int(r[0] ?? "") { losers.insert(i) } }
        for (idx, row) in rows.enumerated() {
            let outcome: EventOutcome = losers.contains(idx) ? .stale : .applied
            for m in row.members { outcomes[m] = outcome }
        }
    }

    func stageStatements(for table: TargetTable) -> StageStatements {
        if let (cached, sql) = statements[table.name], cached == table { return sql }
        let sql = StageStatements(table)
        statements[table.name] = (table, sql)
        return sql
    }

}

/// A PostgreSQL array literal of text values, for binding as one `text[]` parameter.
func pgArrayLiteral(_ values: [String]) -> String {
    pgArrayLiteralNullable(values.map(Optional.some))
}

/// Isolating a batch's changes failed for a reason that is not about any one change: the database
/// itself is broken (a system or corruption error, or it cannot run a statement after a rollback).
/// Nothing is dead-lettered; the batch is retried until the database recovers.
public struct DatabaseBroken: Error, CustomStringConvertible {
    public let cause: any Error
    public var description: String { "the target database is failing for a reason that is not about one change: \(cause)" }
}
