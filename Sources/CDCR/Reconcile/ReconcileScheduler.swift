import CDCCore
import CDCPostgres
import Foundation
import Logging

/// Runs the `reconcile.jobs` on their schedules (inside `cdcr run`, or `cdcr reconcile --serve`).
///
/// When a job is due comes from the slot its newest scheduled or catch-up run in
/// `cdcr.reconcile_runs` was for (`ScheduleDecision.decide`), so a restart neither repeats a slot
/// nor, after downtime, runs once per missed slot: one `catch_up` run stands for all of them. A
/// job never overlaps itself: each run holds the job's advisory lock in the target, across
/// processes, and re-checks under it that its slot was not run meanwhile. Jobs of one scheduler
/// run one after another, earliest due first.
public final class ReconcileScheduler {
    let settings: Settings
    let logger: Logger
    let stop: StopSignal
    /// The scheduler's clock; tests inject one.
    let now: @Sendable () -> Date
    /// Runs one job; tests may replace it. Returns nil when the slot turned out to be done.
    var runner: (ReconcileJob, RunTrigger, Date?) throws -> ReconcileOutcome?
    /// When this scheduler first looked at each job: a job that never ran waits for its first
    /// slot after this (nothing was missed).
    private var firstSeen: [String: Int64] = [:]
    private var store: PGConnection?

    /// The scheduler of `settings.reconcile.jobs`, on `now`'s clock.
    public init(settings: Settings, logger: Logger, stop: StopSignal = StopSignal(), now: @escaping @Sendable () -> Date = { Date() }) {
        self.settings = settings
        self.logger = logger
        self.stop = stop
        self.now = now
        runner = { job, trigger, slot in
            try ReconcileJobRun(job: job, settings: settings, logger: logger).run(trigger: trigger, scheduledFor: slot)
        }
    }

    deinit { store?.close() }

    func connection() throws -> PGConnection {
        if let store, store.isHealthy { return store }
        store?.close()
        guard let url = settings.targetURL else { throw ConfigError("--target", "required (or CDCR_TARGET_URL, or target_url in the config)") }
        let conn = try TargetConnection.open(url, applicationName: "cdcr-reconcile-scheduler")
        try BookkeepingSchema.install(on: conn)
        store = conn
        return conn
    }

    /// Sets every job's metrics to their starting values (see `ReconcileMetricsUpdate.prepare`).
    public func prepareMetrics() throws {
        let conn = try connection()
        for job in settings.reconcile.jobs {
            let tables = (job.tables.isEmpty ? settings.comparedTables(flags: []) : job.tables).map(settings.targetTable(for:))
            ReconcileMetricsUpdate.prepare(job, tables: tables, lastSuccess: try ReconcileStore.lastSuccess(job: job.name, on: conn), startedAt: now())
        }
    }

    /// What each job should do now.
    public func decisions() throws -> [(job: ReconcileJob, decision: ScheduleDecision)] {
        let conn = try connection()
        let t = Int64(now().timeIntervalSince1970.rounded(.down))
        return try settings.reconcile.jobs.map { job in
            let anchor = try ReconcileStore.lastSlot(job: job.name, on: conn) ?? firstSeen[job.name, default: t]
            if firstSeen[job.name] == nil { firstSeen[job.name] = t }
            return (job, ScheduleDecision.decide(job.schedule, lastSlot: anchor, now: t))
        }
    }

    /// Runs the jobs that are due, earliest slot first; returns their outcomes. A job that fails
    /// to run (its database is down) is logged and tried again at the next tick.
    @discardableResult
    public func tick() throws -> [ReconcileOutcome] {
        var due: [(ReconcileJob, Int64, Bool)] = []
        for (job, decision) in try decisions() {
            if case let .run(slot, catchUp) = decision { due.append((job, slot, catchUp)) }
        }
        var outcomes: [ReconcileOutcome] = []
        for (job, slot, catchUp) in due.sorted(by: { $0.1 < $1.1 }) where !stop.isStopped {
            do {
                if let o = try runner(job, catchUp ? .catchUp : .schedule, Date(timeIntervalSince1970: TimeInterval(slot))) { outcomes.append(o) }
            } catch let locked as ReconcileLocked {
                logger.info("reconcile job skipped: it is running elsewhere", metadata: ["job": "\(locked.job)"])
            } catch {
                logger.warning("reconcile job could not run; will try again", metadata: ["job": "\(job.name)", "error": "\(error)"])
            }
        }
        return outcomes
    }

    /// Ticks until stopped, sleeping until the next slot (at most 30 s, so a changed clock or a
    /// run of another process is noticed soon).
    public func run() throws {
        guard !settings.reconcile.jobs.isEmpty else { return }
        logger.info("reconcile scheduler started", metadata: ["jobs": "\(settings.reconcile.jobs.map { "\($0.name) (\($0.schedule))" }.joined(separator: ", "))"])
        var backoff = Backoff(capMs: settings.retryMaxBackoffMs)
        var prepared = false
        while !stop.isStopped {
            do {
                if !prepared { try prepareMetrics(); prepared = true }
                try tick()
                backoff.reset()
                let t = Int64(now().timeIntervalSince1970)
                let wake = try decisions().map { d -> Int64 in if case let .wait(until) = d.decision { until } else { t } }.min() ?? t + 30
                // A job still due right after a tick could not run: it is retried in 5 s, not in a loop.
                stop.sleep(ms: Int(max(5, min(30, wake - t))) * 1_000)
            } catch {
                logger.warning("reconcile scheduler cannot reach the target; retrying", metadata: ["error": "\(error)"])
                store?.close()
                store = nil
                stop.sleep(ms: backoff.next())
            }
        }
    }
}

extension BlockingLoopService {
    /// The reconcile scheduler as a lifecycle service (next to the applier, or alone).
    public static func reconcile(settings: Settings, logger: Logger) -> BlockingLoopService {
        BlockingLoopService(name: "cdcr-reconcile") { stop in try ReconcileScheduler(settings: settings, logger: logger, stop: stop).run() }
    }
}
