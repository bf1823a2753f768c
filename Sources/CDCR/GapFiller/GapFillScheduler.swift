import CDCCore
import CDCPostgres
import Foundation
import Logging

/// Scheduled gap filling inside `cdcr run`: every interval, replay the change-log window that ends
/// `settle` ago through the applier. The stream and the gap filler meet in the ledger and the
/// version guard, so a change arriving from both is applied once and an old one never overwrites a
/// newer one.
///
/// Late commits: `committed_at` is when a row was written, but its transaction may commit long
/// after its window was scanned. Each pass records the oldest transaction still open at scan time
/// (`scan_xmin`); the next pass also takes every change of a transaction from `scan_xmin` on whose
/// `committed_at` lies before its window — exactly the ones that were invisible last time.
public final class GapFillScheduler {
    private let settings: Settings
    private let logger: Logger
    private let stop: StopSignal

    public init(settings: Settings, logger: Logger, stop: StopSignal) {
        self.settings = settings
        self.logger = logger
        self.stop = stop
    }

    public func run() throws {
        guard let sourceURL = settings.sourceURL, let targetURL = settings.targetURL else { return }
        let g = settings.gapFill
        var backoff = Backoff(capMs: settings.retryMaxBackoffMs)
        var conns: (PGConnection, PGConnection)?
        var lastPrune: ContinuousClock.Instant?
        logger.info("gap filler started", metadata: ["interval_s": "\(g.intervalSeconds)", "window_s": "\(g.windowSeconds)", "settle_s": "\(g.settleSeconds)"])
        while !stop.isStopped {
            do {
                if conns == nil {
                    let target = try TargetConnection.open(targetURL, applicationName: "cdcr-gap-fill", applying: true)
                    try BookkeepingSchema.install(on: target)
                    let source = try PGConnection.connect(sourceURL)
                    try SourceChangeLog.requireInstalled(on: source)
                    conns = (source, target)
                }
                let (source, target) = conns!
                try pass(source: source, target: target)
                backoff.reset()
                if lastPrune.map({ ContinuousClock.now - $0 > .seconds(3_600) }) ?? true {
                    lastPrune = .now
                    pruneChangeLog(source)
                }
                stop.sleep(ms: g.intervalSeconds * 1000)
            } catch {
                // An unclear failure (a statement timeout, a system error) is retried like an outage:
                // the next pass reads the same window again, and the stream must not stop over it.
                let reason: String
                switch ErrorClassifier.classify(error) {
                case let .transient(r): reason = r
                case let .unclear(r, _): reason = r
                default: throw error
                }
                logger.warning("gap fill pass failed, retrying", metadata: ["error": "\(error)", "reason": "\(reason)"])
                CDCRMetrics.recordRetry(reason)
                conns = nil
                stop.sleep(ms: backoff.next())
            }
        }
    }

    /// Hourly, after a pass: the source change log would otherwise grow forever. A failure is logged
    /// and tried again an hour later; it never stops gap filling.
    private func pruneChangeLog(_ source: PGConnection) {
        let days = settings.effectiveChangeLogRetentionDays
        guard days > 0 else { return }
        do {
            let n = try SourceChangeLog.prune(on: source, olderThanDays: days)
            if n > 0 { logger.info("pruned the source change log", metadata: ["rows": "\(n)", "older_than_days": "\(days)"]) }
        } catch {
            logger.warning("pruning the source change log failed; will try again", metadata: ["error": "\(error)"])
        }
    }

    /// One pass over the window ending `settle` ago (and the late commits of the previous pass).
    func pass(source: PGConnection, target: PGConnection) throws {
        let g = settings.gapFill
        let state = try target.query("SELECT window_end::text, scan_xmin FROM cdcr.gap_fill_state WHERE id = 1").rows.first
        // The source's clock: committed_at is written by it.
        let bounds = try source.query("""
            SELECT (now() - make_interval(secs => $1::int))::text,
                   (now() - make_interval(secs => $1::int + $2::int))::text,
                   (now() - make_interval(days => $3::int) + interval '1 hour')::text
            """, [String(g.settleSeconds), String(g.windowSeconds), String(settings.ledgerRetentionDays)]).rows[0]
        let end = bounds[0]!
        var start = bounds[1]!
        if let previousEnd = state?[0] {
            // After downtime longer than the window, continue where the last pass ended (never skip),
            // but never before the ledger retention.
            start = try source.query("SELECT least($1::timestamptz, $2::timestamptz)::text", [start, previousEnd]).scalar!
            start = try source.query("SELECT greatest($1::timestamptz, $2::timestamptz)::text", [start, bounds[2]!]).scalar!
        }
        let scanXmin = try SourceChangeLog.txidHorizon(on: source)
        let previousXmin = state?[1] ?? String(Int64.max)
        let settings = self.settings
        let replayer = Replayer(source: source, applier: BatchApplier(conn: target, settings: settings, logger: logger),
                                settings: settings, logger: logger) { try DeadLetterWriter(settings: settings) }
        defer { replayer.close() }
        let report = try replayer.run(
            filter: "(committed_at >= $1::timestamptz AND committed_at < $2::timestamptz) OR (txid >= $3::bigint AND committed_at < $1::timestamptz)",
            params: [start, end, previousXmin], dryRun: false)
        try target.query("""
            INSERT INTO cdcr.gap_fill_state (id, window_start, window_end, scan_xmin, changes, applied)
            VALUES (1, $1, $2, $3, $4, $5)
            ON CONFLICT (id) DO UPDATE SET window_start = EXCLUDED.window_start, window_end = EXCLUDED.window_end,
                scan_xmin = EXCLUDED.scan_xmin, changes = EXCLUDED.changes, applied = EXCLUDED.applied, finished_at = now()
            """, [start, end, String(scanXmin), String(report.total.inWindow), String(report.total.appliedNow)])
        let t = report.total
        if t.appliedNow > 0 || t.failed > 0 {
            logger.warning("gap filler applied changes the stream had missed", metadata: [
                "window_start": "\(start)", "window_end": "\(end)", "counts": "\(t.json)",
            ])
        } else {
            logger.debug("gap fill pass", metadata: ["window_start": "\(start)", "window_end": "\(end)", "counts": "\(t.json)"])
        }
        CDCRMetrics.recordGapFill(t)
    }
}

extension BlockingLoopService {
    /// The gap filler as a lifecycle service next to the applier.
    public static func gapFill(settings: Settings, logger: Logger) -> BlockingLoopService {
        BlockingLoopService(name: "cdcr-gap-fill") { stop in try GapFillScheduler(settings: settings, logger: logger, stop: stop).run() }
    }
}
