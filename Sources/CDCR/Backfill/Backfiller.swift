import CDCCore
import CDCPostgres
import Foundation
import Logging
import Synchronization

/// Copies tables' existing rows from the source into the target while the live stream runs, chunk
/// by chunk in primary-key order (keyset pagination), each chunk stamped with its low watermark and
/// applied through the version guard, checkpointed in the same transaction, then verified by range
/// checksums. See docs/BACKFILL.md for why the result converges with the stream.
///
/// Blocking: call from a thread of its own, never from Swift's cooperative pool.
public final class Backfiller: Sendable {
    let settings: Settings
    let options: BackfillOptions
    let logger: Logger
    let stop: StopSignal
    let onProgress: @Sendable (BackfillProgress) -> Void

    public init(settings: Settings, options: BackfillOptions, logger: Logger, stop: StopSignal = StopSignal(),
                progress: @escaping @Sendable (BackfillProgress) -> Void = { _ in }) {
        self.settings = settings
        self.options = options
        self.logger = logger
        self.stop = stop
        self.onProgress = progress
    }

    /// Backfills every table (`options.parallel` at once); the first error stops the run.
    public func run() throws -> BackfillReport {
        let started = ContinuousClock.now
        guard settings.sourceURL != nil else { throw BackfillError("no source database configured (--source / CDCR_SOURCE_URL)") }
        guard settings.targetURL != nil else { throw BackfillError("no target database configured (--target / CDCR_TARGET_URL)") }
        // The bookkeeping schema (cdcr's own, never a user table), created or upgraded like `cdcr run` does.
        let bookkeeping = try TargetConnection.open(settings.targetURL!, applicationName: "cdcr-backfill-setup")
        defer { bookkeeping.close() }
        if options.dryRun {
            guard try bookkeeping.query("SELECT to_regclass('cdcr.backfill_state') IS NOT NULL").scalar == "t" else {
                throw BackfillError("--dry-run writes nothing, and the target has no cdcr bookkeeping schema of this version yet: run `cdcr init` first")
            }
        } else {
            _ = try BookkeepingSchema.install(on: bookkeeping)
        }
        let tables = options.tables
        let results = Mutex<[Int: Result<BackfillTableReport, any Error>]>([:])
        let next = Atomic<Int>(0)
        let workers = max(1, min(options.parallel, tables.count))
        DispatchQueue.concurrentPerform(iterations: workers) { _ in
            while true {
                let i = next.add(1, ordering: .relaxed).oldValue
                guard i < tables.count else { return }
                if results.withLock({ $0.values.contains { if case .failure = $0 { true } else { false } } }) { return }
                let r = Result { try self.backfill(tables[i]) }
                results.withLock { $0[i] = r }
            }
        }
        var report = BackfillReport()
        let all = results.withLock { $0 }
        for i in tables.indices {
            guard let r = all[i] else { continue }
            report.tables.append(try r.get())
        }
        report.duration = ContinuousClock.now - started
        return report
    }

    /// Connections of one table's backfill: the source reads, the target writes on `writers`
    /// sessions (the first holds the table's advisory lock), and one more per side for the checks
    /// (and the verified counts).
    struct Connections {
        let source: PGConnection
        let writers: [PGConnection]
        let verifySource: PGConnection
        let verifyTarget: PGConnection

        var target: PGConnection { writers[0] }

        func close() { for c in [source, verifySource, verifyTarget] + writers { c.close() } }
    }

    func connect() throws -> Connections {
        let (s, t) = (settings.sourceURL!, settings.targetURL!)
        let (a, b) = try concurrently({ try TargetConnection.open(s, applicationName: "cdcr-backfill") }, { try TargetConnection.open(t, applicationName: "cdcr-backfill") })
        var opened = [a, b]
        do {
            let (c, d) = try concurrently({ try VerifyRun.open(s, name: "cdcr-backfill-verify") }, { try VerifyRun.open(t, name: "cdcr-backfill-verify") })
            opened += [c, d]
            // The checkers evaluate --where on both sides: read-only, so a predicate calling a
            // function that writes fails instead of writing (the verified count opens READ WRITE).
            for conn in [c, d] { try conn.execute("SET default_transaction_read_only = on") }
            var writers = [b]
            for _ in 1..<max(1, options.writers) {
                writers.append(try TargetConnection.open(t, applicationName: "cdcr-backfill"))
                opened.append(writers.last!)
            }
            return Connections(source: a, writers: writers, verifySource: c, verifyTarget: d)
        } catch {
            for c in opened { c.close() }
            throw error
        }
    }

    /// Backfills one table, waiting out database outages: a transient failure (a lost connection, a
    /// server shutting down or restarting, a deadlock) closes every connection, waits with backoff,
    /// reconnects and resumes from the last committed checkpoint — the chunks in flight rolled back
    /// and are redone. Any other error, or an outage longer than `outageTimeout`, ends the run.
    func backfill(_ sourceName: TableName) throws -> BackfillTableReport {
        let started = ContinuousClock.now
        var run = TableRun(report: BackfillTableReport(source: sourceName, target: settings.targetTable(for: sourceName)))
        run.report.dryRun = options.dryRun
        var backoff = Backoff(baseMs: 500, capMs: 15_000)
        var outageSince: ContinuousClock.Instant?
        while true {
            run.progressed = false
            do {
                try attempt(&run)
                break
            } catch {
                guard case let .transient(reason) = ErrorClassifier.classify(error), run.checked else { throw error }
                if run.progressed {
                    outageSince = nil
                    backoff.reset()
                }
                let since = outageSince ?? .now
                outageSince = since
                let waited = ContinuousClock.now - since
                guard waited < options.outageTimeout else {
                    throw BackfillError("\(run.report.target): the databases stayed unreachable for \(Int(waited.seconds)) s (more than \(Int(options.outageTimeout.seconds)) s): \(error)")
                }
                let ms = backoff.next()
                logger.warning("backfill lost a database; reconnecting, then resuming from the last committed checkpoint", metadata: [
                    "table": "\(run.report.target)", "reason": "\(reason)", "error": "\(error)", "retry_ms": "\(ms)", "outage_seconds": "\(Int(waited.seconds))",
                ])
                CDCRMetrics.recordRetry(reason)
                if !stop.sleep(ms: ms) {
                    run.report.stopped = true
                    break
                }
            }
        }
        if !run.report.alreadyDone {
            run.report.counts = options.dryRun ? run.report.thisRun : (run.base ?? BackfillCounts()) + run.report.thisRun
        }
        run.report.duration = ContinuousClock.now - started
        let report = run.report
        logger.info("backfill of a table ended", metadata: [
            "table": "\(report.target)", "rows": "\(report.thisRun.rowsRead)", "done": "\(report.done)", "stopped": "\(report.stopped)",
            "differing": "\(report.differing.count)", "failed": "\(report.thisRun.failed)", "reconnects": "\(max(0, run.attempts - 1))",
        ])
        return report
    }
}

/// What one table's backfill carries from one connection attempt to the next across an outage: the
/// report so far, the counts it started from, the verifier's unsettled keys and the chunks committed
/// but not checked yet, and (for a dry run, which records no checkpoint) where it had got to.
struct TableRun {
    var report: BackfillTableReport
    /// Connection attempts begun.
    var attempts = 0
    /// The table passed its checks before anything was written (so a later outage is waited out).
    var checked = false
    /// Some chunk committed in the current attempt (an outage after it starts a new backoff).
    var progressed = false
    /// The checkpoint's counts when this run first loaded it: the run's own counts are the rest.
    var base: BackfillCounts?
    /// A dry run's position: its chunks roll back, so nothing in the target says where it was.
    var dryCheckpoint: BackfillCheckpoint?
    var pending: [Int64: [KeyTexts]] = [:]
    var unverified: [(range: KeyRange, chunk: Int64)] = []
    /// The chunks in flight when the last attempt failed.
    var interrupted: [(range: KeyRange, chunk: Int64)] = []
}
