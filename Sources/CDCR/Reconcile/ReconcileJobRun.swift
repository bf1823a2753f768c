import CDCCore
import CDCPostgres
import Foundation
import Logging

/// How a reconcile run ended.
public struct ReconcileOutcome: Sendable {
    /// `cdcr.reconcile_runs.run_id`.
    public var runID: String
    public var job: String
    /// ok, drift, error or timeout.
    public var status: RunStatus
    /// As stored with the run.
    public var counts: RunCounts
    /// Why it failed or stopped (error, timeout).
    public var error: String?
    /// Discrepancies of the run's tables still open or queued after it.
    public var remaining: Int
    /// Tables whose drift exceeded the guard rails: nothing repaired, all queued.
    public var massDrift: [TableName]
    /// The run failed on a configuration problem found only against the catalogs (a newest-wins
    /// column, a check rule): `cdcr reconcile --job` exits 64 for it.
    public var configProblem = false
}

/// Another run of the job holds its lock (in this process or another one).
public struct ReconcileLocked: Error, CustomStringConvertible, Sendable {
    /// The job's name.
    public let job: String
    public var description: String { "job \(job) is already running (its advisory lock is held by another session)" }
}

/// The budget ran out: the run stops, keeping what it found.
struct BudgetExceeded: Error, CustomStringConvertible {
    let seconds: Int64
    var description: String { "the job's budget of \(JobSchedule.durationText(seconds)) ran out" }
}

/// One run of a reconcile job (docs/RECONCILE.md): holds the job's advisory lock so it never
/// overlaps itself, records the run in `cdcr.reconcile_runs`, what it finds in
/// `cdcr.discrepancies`, decides each row difference under the table's policy and the job's
/// repair mode, and marks as `resolved_by_stream` what earlier runs found and this one, looking
/// at the same tables and kinds, did not.
public final class ReconcileJobRun {
    let job: ReconcileJob
    let settings: Settings
    let logger: Logger
    let tables: [TableName]
    var deadline: ContinuousClock.Instant?
    var counts = RunCounts()
    var errors: [String] = []
    var massDrift: [TableName] = []
    /// What the run looked at completely: (target tables, kinds, only these keys or any).
    var covered: [(tables: [TableName], kinds: [DiscrepancyKind], keys: [String]?)] = []

    /// A run of `job`; refuses a job without tables or databases to compare.
    public init(job: ReconcileJob, settings: Settings, logger: Logger = Logger(label: "cdcr.reconcile")) throws(ConfigError) {
        self.job = job
        self.settings = settings
        self.logger = logger
        tables = job.tables.isEmpty ? settings.comparedTables(flags: []) : job.tables
        if tables.isEmpty {
            throw ConfigError("reconcile.jobs \"\(job.name)\".tables", "no tables: give tables, or verify.tables (or tables) in the config")
        }
        guard settings.targetURL != nil else { throw ConfigError("--target", "required (or CDCR_TARGET_URL, or target_url in the config)") }
        guard settings.sourceURL != nil else { throw ConfigError("--source", "required (or CDCR_SOURCE_URL, or source_url in the config)") }
    }

    /// Runs the job now. Throws `ReconcileLocked` when a run of it is under way elsewhere, and
    /// errors that prevent recording the run at all; any other failure is the run's status `error`.
    /// Returns nil, running nothing, when `scheduledFor` is a slot another process already ran
    /// (it held the lock while this one decided).
    public func run(trigger: RunTrigger, scheduledFor: Date?) throws -> ReconcileOutcome? {
        let store = try TargetConnection.open(settings.targetURL!, applicationName: "cdcr-reconcile")
        defer { store.close() }
        try BookkeepingSchema.install(on: store)
        // Session-level: held until this connection closes, so a crashed process frees it.
        guard try ReconcileStore.tryLock(job: job.name, on: store) else { throw ReconcileLocked(job: job.name) }
        try ReconcileStore.markInterrupted(job: job.name, on: store)
        if trigger != .manual, let slot = scheduledFor, let last = try ReconcileStore.lastSlot(job: job.name, on: store),
           last >= Int64(slot.timeIntervalSince1970.rounded(.down)) {
            return nil
        }
        let runID = ReconcileStore.newRunID()
        try ReconcileStore.startRun(id: runID, job: job.name, kind: job.kind, trigger: trigger, scheduledFor: scheduledFor, tables: tables, on: store)
        deadline = job.budgetSeconds.map { ContinuousClock.now + .seconds($0) }
        logger.info("reconcile run started", metadata: ["job": "\(job.name)", "run": "\(runID)", "kind": "\(job.kind.rawValue)", "trigger": "\(trigger.rawValue)"])
        var status: RunStatus
        var configProblem = false
        do {
            try body(runID: runID, store: store)
            status = errors.isEmpty ? (counts.found > 0 ? .drift : .ok) : .error
        } catch {
            if let budget = job.budgetSeconds, budgetPassed || error is BudgetExceeded {
                status = .timeout
                errors.append(BudgetExceeded(seconds: budget).description + " (partial results kept): \(error)")
            } else {
                status = .error
                configProblem = error is ConfigError
                errors.append("\(error)")
            }
        }
        for c in covered {
            counts.resolvedByStream += try ReconcileStore.resolveGone(runID: runID, targetTables: c.tables, kinds: c.kinds, onlyKeys: c.keys, on: store)
        }
        let error = errors.isEmpty ? nil : errors.joined(separator: "; ")
        try ReconcileStore.finishRun(id: runID, status: status, counts: counts, error: error, on: store)
        let remaining = try ReconcileMetricsUpdate.afterRun(job: job.name, status: status, tables: tables.map(settings.targetTable(for:)), on: store)
        logger.log(level: status == .ok || status == .drift ? .info : .warning, "reconcile run finished", metadata: [
            "job": "\(job.name)", "run": "\(runID)", "status": "\(status.rawValue)", "found": "\(counts.found)",
            "auto_repaired": "\(counts.autoRepaired)", "queued": "\(counts.queued)", "error": "\(error ?? "")",
        ])
        return ReconcileOutcome(runID: runID, job: job.name, status: status, counts: counts, error: error, remaining: remaining, massDrift: massDrift,
                                configProblem: configProblem)
    }

    var budgetPassed: Bool { deadline.map { ContinuousClock.now >= $0 } ?? false }

    /// Throws when the budget is spent; else the milliseconds left (nil: no budget).
    func remainingMs() throws -> Int? {
        guard let deadline else { return nil }
        let left = deadline - ContinuousClock.now
        guard left > .zero else { throw BudgetExceeded(seconds: job.budgetSeconds ?? 0) }
        return max(1, Int(left.components.seconds * 1_000 + left.components.attoseconds / 1_000_000_000_000_000))
    }

    func body(runID: String, store: PGConnection) throws {
        var options = VerifyOptions()
        options.tables = tables
        options.maxDifferences = settings.reconcile.maxFindingsPerTable
        options.floatTolerance = settings.verify.floatTolerance
        options.settleSeconds = settings.verify.settleSeconds
        let verify = try VerifyRun(settings: settings, options: options, logger: logger)
        defer { verify.close() }
        switch job.kind {
        case .quick:
            try audit(verify, runID: runID, store: store)
            try checks(runID: runID, store: store, aggregatesOnly: true)
        case .full:
            for table in tables { try compare(table, verify: verify, runID: runID, store: store) }
        case .deep:
            for table in tables { try compare(table, verify: verify, runID: runID, store: store) }
            try checks(runID: runID, store: store, aggregatesOnly: false)
        }
    }

    /// Bounds every statement of both verify sessions by what is left of the budget.
    func limitStatements(_ verify: VerifyRun) throws {
        let ms = try remainingMs().map(String.init) ?? "0"
        for conn in [verify.source, verify.target] { try conn.query("SELECT set_config('statement_timeout', $1, false)", [ms]) }
    }

    /// Quick: row counts of both sides (`cdcr audit`); a table whose counts differ is a `rule`
    /// discrepancy keyed `audit:row_count`.
    func audit(_ verify: VerifyRun, runID: String, store: PGConnection) throws {
        try limitStatements(verify)
        let rows = try Audit.refresh(run: verify, settings: settings, tables: tables)
        var findings: [Finding] = []
        for r in rows where r.status != "ok" {
            var f = Finding(table: r.table, targetTable: settings.targetTable(for: r.table), rowKeyJSON: nil, keyText: Self.auditKey, kind: .rule)
            f.sourceValuesJSON = "{\"rows\":\(r.sourceRows)}"
            f.targetValuesJSON = "{\"rows\":\(r.targetRows)}"
            f.digest = "row counts differ: source \(r.sourceRows), target \(r.targetRows) (\(r.status))"
            findings.append(f)
        }
        let recorded = try ReconcileStore.record(findings, runID: runID, on: store)
        counts.found += findings.count
        counts.newFound += recorded.new
        covered.append((tables.map(settings.targetTable(for:)), [.rule], [Self.auditKey]))
    }

    static let auditKey = "audit:row_count"

    /// Full and deep: verify one table, record its row differences with both sides' rows, decide
    /// them under the table's policy and repair what may be repaired.
    func compare(_ table: TableName, verify: VerifyRun, runID: String, store: PGConnection) throws {
        try limitStatements(verify)
        let diff = try verify.verify(table)
        let rows = try VerifyFindings.rows(of: diff)
        let policy = settings.reconcile.policy(for: table)
        let pair = try TablePair.resolve(source: diff.source, target: diff.target, only: nil, sourceConn: verify.source, targetConn: verify.target)
        let column = try newestColumn(policy, pair: pair)
        let images = RowImages(pair: pair, column: column?.name)
        let keys = rows.filter { $0.kind != .extra }.map(\.key)
        let sourceImages = try images.read(keys, side: .source, on: verify.source)
        let targetImages = try images.read(rows.filter { $0.kind != .missing }.map(\.key), side: .target, on: verify.target)
        let findings = rows.map { row in
            var f = Finding(table: diff.source, targetTable: diff.target, rowKeyJSON: diff.keyJSON(row.key), keyText: row.keyText, kind: row.kind)
            f.columns = row.columns
            f.sourceValuesJSON = sourceImages[row.key]?.json
            f.targetValuesJSON = targetImages[row.key]?.json
            return f
        }
        let recorded = try ReconcileStore.record(findings, runID: runID, on: store)
        counts.found += findings.count
        counts.newFound += recorded.new
        try recordRanges(diff, policy: policy, runID: runID, store: store)
        // Only rows still open are decided again; queued and approved ones wait for a person, and
        // one a person rejected before (same target row) is kept.
        let open = try ReconcileStore.openIDs(recorded.ids, on: store)
        let rejected = try ReconcileStore.rejectedBefore(rows.indices.filter { open.contains(recorded.ids[$0]) }.map { recorded.ids[$0] }, on: store)
        for (id, reason) in rejected { try ReconcileStore.resolve([id], as: .open, policy: policy.policy.rawValue, reason: reason, on: store) }
        let undecided = rows.indices.filter { open.contains(recorded.ids[$0]) && rejected[recorded.ids[$0]] == nil }
        var newer: [Bool] = []
        if let column, policy.policy == .newestWins {
            let pairs = undecided.map { (source: sourceImages[rows[$0].key]?.column, target: targetImages[rows[$0].key]?.column) }
            newer = try RowImages.targetNewer(pairs, column: column, on: verify.target)
        }
        let candidates = undecided.map { rows[$0] }
        let plan = ConflictPolicy.plan(candidates, policy: policy, repair: job.repair, tableRows: max(diff.sourceRows, diff.targetRows),
                                       unlisted: diff.unlisted + diff.rangeRows, targetNewer: { newer.indices.contains($0) && newer[$0] })
        try record(plan, candidates: candidates, ids: undecided.map { recorded.ids[$0] }, diff: diff, policy: policy, verify: verify, store: store)
        // With rows only counted or summarised in ranges, a row not listed this time may still
        // differ: nothing is resolved.
        if diff.unlisted == 0 && diff.ranges.isEmpty { covered.append(([diff.target], [.missing, .extra, .different], nil)) }
    }

    /// Records verify's one-sided ranges and queues the open ones: a stretch of rows on one side
    /// only is mass drift whatever the policy, for a person to look at.
    func recordRanges(_ diff: TableDiff, policy: TablePolicy, runID: String, store: PGConnection) throws {
        let findings = VerifyFindings.ranges(of: diff)
        guard !findings.isEmpty else { return }
        let recorded = try ReconcileStore.record(findings, runID: runID, on: store)
        counts.found += findings.count
        counts.newFound += recorded.new
        let open = try ReconcileStore.openIDs(recorded.ids, on: store)
        let queued = recorded.ids.filter(open.contains)
        try ReconcileStore.resolve(queued, as: .queued, policy: policy.policy.rawValue,
                                   reason: "a range of rows on one side only (mass drift): review it, then cdcr repair copies it page by page", on: store)
        counts.queued += queued.count
    }

    /// The `newest-wins` column, resolved on both sides (nil for other policies).
    func newestColumn(_ policy: TablePolicy, pair: TablePair) throws(ConfigError) -> ColumnInfo? {
        guard policy.policy == .newestWins, let name = policy.column else { return nil }
        guard pair.source.columnIndex(name) != nil else {
            throw ConfigError("reconcile.tables.\(pair.source.name).column", "column '\(name)' does not exist in the source table")
        }
        guard let i = pair.target.columnIndex(name) else {
            throw ConfigError("reconcile.tables.\(pair.source.name).column", "column '\(name)' does not exist in the target table \(pair.target.name)")
        }
        return pair.target.columns[i]
    }

    /// Stores the plan's decisions: repairs through `AutoRepair`, the rest queued or left open with the reason.
    func record(_ plan: PolicyPlan, candidates: [RowFinding], ids: [Int64], diff: TableDiff, policy: TablePolicy, verify: VerifyRun,
                store: PGConnection) throws {
        let policyName = policy.policy.rawValue
        var byReason: [String: (Resolution, [Int64])] = [:]
        var repairRows: [RowFinding] = [], repairIDs: [Int64] = []
        for (i, decision) in plan.decisions.enumerated() {
            switch decision {
            case .repair: repairRows.append(candidates[i]); repairIDs.append(ids[i])
            case let .queue(reason): byReason["q" + reason, default: (.queued, [])].1.append(ids[i])
            case let .leave(reason): byReason["o" + reason, default: (.open, [])].1.append(ids[i])
            }
        }
        for (key, (resolution, group)) in byReason {
            try ReconcileStore.resolve(group, as: resolution, policy: policyName, reason: String(key.dropFirst()), on: store)
            if resolution == .queued { counts.queued += group.count }
        }
        if let reason = plan.massDrift {
            massDrift.append(diff.source)
            ReconcileMetricsUpdate.massDrift(table: diff.target)
            logger.warning("reconcile found mass drift: nothing repaired, everything queued", metadata: [
                "job": "\(job.name)", "table": "\(diff.target)", "reason": "\(reason)",
            ])
        }
        guard !repairRows.isEmpty else { return }
        try limitStatements(verify)
        var repair = AutoRepair(run: verify, settings: settings, logger: logger)
        repair.mayRetry = { [weak self] in !(self?.budgetPassed ?? true) }
        let r: AutoRepairResult
        do {
            r = try repair.apply(repairRows, ids: repairIDs, diff: diff, policy: policy, store: store)
        } catch let partial as PartialRepair {
            counts.autoRepaired += partial.repaired
            ReconcileMetricsUpdate.autoRepaired(table: diff.target, rows: partial.repaired)
            throw partial.underlying
        }
        counts.autoRepaired += r.repaired
        counts.queued += r.refused
        counts.resolvedByStream += r.alreadyEqual
        ReconcileMetricsUpdate.autoRepaired(table: diff.target, rows: r.repaired)
    }
}
