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
        let bookkeeping = try TargetConnection.open(settings.targetURL!, applicationName: "cdcr-backfill")
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

    /// Connections of one table's backfill: the source reads, the target writes (and holds the
    /// table's advisory lock), and one more per side for the checks.
    private struct Connections {
        let source: PGConnection
        let target: PGConnection
        let verifySource: PGConnection
        let verifyTarget: PGConnection

        func close() { for c in [source, target, verifySource, verifyTarget] { c.close() } }
    }

    private func connect() throws -> Connections {
        let (s, t) = (settings.sourceURL!, settings.targetURL!)
        let (a, b) = try concurrently({ try TargetConnection.open(s, applicationName: "cdcr-backfill") }, { try TargetConnection.open(t, applicationName: "cdcr-backfill") })
        let (c, d) = try concurrently({ try VerifyRun.open(s, name: "cdcr-backfill-verify") }, { try VerifyRun.open(t, name: "cdcr-backfill-verify") })
        return Connections(source: a, target: b, verifySource: c, verifyTarget: d)
    }

    func backfill(_ sourceName: TableName) throws -> BackfillTableReport {
        let started = ContinuousClock.now
        let targetName = settings.targetTable(for: sourceName)
        var report = BackfillTableReport(source: sourceName, target: targetName)
        report.dryRun = options.dryRun
        let conns = try connect()
        defer { conns.close() }  // closing the target session also releases the advisory lock

        // Everything is checked before anything is written.
        let table = try BackfillTable.resolve(source: sourceName, target: targetName, sourceConn: conns.source, targetConn: conns.target,
                                              denySchemas: settings.denySchemas)
        report.keyNames = table.keyNames
        try VerifySide.checkPredicate(options.predicate, table: sourceName, side: .source, on: conns.source)
        try VerifySide.checkPredicate(options.predicate, table: targetName, side: .target, on: conns.target)
        let versionSource = try options.versionSource ?? VersionSource.detect(on: conns.source)
        if versionSource == .changeLog, try VersionSource.detect(on: conns.source) != .changeLog {
            throw BackfillError("--version-source change-log: the source has no cdcr.change_log")
        }
        if versionSource == .changeLog { try VersionSource.checkSequence(on: conns.source) }
        try BackfillState.lock(targetName, on: conns.target)
        defer { BackfillState.unlock(targetName, on: conns.target) }

        var checkpoint: BackfillCheckpoint
        if let saved = try BackfillState.load(targetName, on: conns.target), !options.restart {
            if saved.done {
                report.alreadyDone = true
                report.done = true
                report.counts = saved.counts
                report.runID = saved.runID
                report.versionSource = saved.versionSource
                return report
            }
            guard saved.predicate == options.predicate else {
                throw BackfillError("the unfinished backfill of \(targetName) (run \(saved.runID)) used --where \(saved.predicate.map { "'\($0)'" } ?? "(none)"); rerun with the same predicate to continue, or --restart")
            }
            guard options.versionSource == nil || saved.versionSource == versionSource else {
                throw BackfillError("the unfinished backfill of \(targetName) (run \(saved.runID)) stamped versions from \(saved.versionSource.rawValue); rerun with that --version-source, or --restart")
            }
            checkpoint = saved
            report.resumed = true
        } else {
            let runID = "bf-" + String(UInt64(Date().timeIntervalSince1970 * 1000), radix: 36) + "-" + String(UInt32.random(in: 0...UInt32.max), radix: 36)
            checkpoint = BackfillCheckpoint(runID: runID, versionSource: versionSource, predicate: options.predicate, nextKey: nil, done: false, counts: BackfillCounts())
            if !options.dryRun { try BackfillState.start(targetName, source: sourceName, checkpoint: checkpoint, on: conns.target) }
        }
        report.runID = checkpoint.runID
        report.versionSource = checkpoint.versionSource

        let sql = BackfillSQL(table, predicate: options.predicate)
        let writer = ChunkWriter(sql: sql, conn: conns.target, runID: checkpoint.runID, logger: logger)
        let verifier = options.verify && !options.dryRun
            ? ChunkVerifier(pair: table.pair, predicate: options.predicate, sourceConn: conns.verifySource, targetConn: conns.verifyTarget, logger: logger) : nil
        let estimate = try VerifySide(.source, conn: conns.source, pair: table.pair, predicate: nil, floatTolerance: nil).estimatedRows()
        let limit = max(1, min(options.chunkRows, options.maxRowsPerSecond.map { max(1, Int($0)) } ?? .max))
        var lower = checkpoint.nextKey
        var chunkNumber = checkpoint.counts.chunks
        var doneBefore = checkpoint.counts.rowsRead
        let runStarted = ContinuousClock.now
        var lastProgress = ContinuousClock.now - .seconds(10)

        while true {
            if stop.isStopped { report.stopped = true; break }
            let watermark = try Watermark.read(checkpoint.versionSource, on: conns.source)
            do {
                try watermark.waitForOlderTransactions(on: conns.source, timeout: options.horizonTimeout, stop: stop, logger: logger)
            } catch is BackfillStopped {
                report.stopped = true
                break
            }
            let t0 = ContinuousClock.now
            let chunk = try SourceChunk.read(sql, lower: lower, limit: limit, watermark: watermark, on: conns.source)
            let t1 = ContinuousClock.now
            chunkNumber += 1
            let outcome = try writer.write(chunk, chunkNumber: chunkNumber, dryRun: options.dryRun)
            let t2 = ContinuousClock.now
            report.thisRun = report.thisRun + outcome.counts
            report.failedKeys += outcome.failedKeys.prefix(max(0, 100 - report.failedKeys.count))
            if let verifier {
                if try verifier.check(KeyRange(lo: chunk.lower, hi: chunk.upper), chunk: chunkNumber) {
                    report.thisRun.verified += 1
                    try BackfillState.addVerified(targetName, 1, on: conns.target)
                }
                if verifier.pendingKeys > verifier.maxPending { try settle(verifier, rounds: 1, table: targetName, conn: conns.target, into: &report) }
            }
            logger.debug("chunk", metadata: ["table": "\(targetName)", "chunk": "\(chunkNumber)", "rows": "\(chunk.rowCount)",
                                          "read_ms": "\((t1 - t0).seconds * 1000)", "write_ms": "\((t2 - t1).seconds * 1000)",
                                          "verify_ms": "\((ContinuousClock.now - t2).seconds * 1000)", "phases": "\(writer.phases.describe())"])
            doneBefore += outcome.counts.rowsRead
            let elapsed = (ContinuousClock.now - runStarted).seconds
            let rate = elapsed > 0 ? Double(report.thisRun.rowsRead) / elapsed : 0
            let progress = BackfillProgress(table: targetName, rowsDone: doneBefore, estimatedRows: max(estimate, doneBefore), rowsPerSecond: rate)
            if !options.dryRun { CDCRMetrics.recordBackfill(progress, rows: outcome.counts.rowsRead, done: chunk.upper == nil) }
            if ContinuousClock.now - lastProgress >= .milliseconds(500) || chunk.upper == nil {
                onProgress(progress)
                lastProgress = ContinuousClock.now
            }
            lower = chunk.upper
            if chunk.upper == nil {
                report.done = !options.dryRun
                break
            }
            if let max = options.maxRowsPerSecond, max > 0 {
                // Never ahead of the allowed rate over the run so far.
                let due = Double(report.thisRun.rowsRead) / max
                if due > elapsed { stop.sleep(ms: Int((due - elapsed) * 1000)) }
            }
        }
        if let verifier { try settle(verifier, rounds: options.settleRounds, table: targetName, conn: conns.target, into: &report) }
        report.counts = options.dryRun ? report.thisRun : checkpoint.counts + report.thisRun
        report.duration = ContinuousClock.now - started
        logger.info("backfill of a table ended", metadata: [
            "table": "\(targetName)", "rows": "\(report.thisRun.rowsRead)", "done": "\(report.done)", "stopped": "\(report.stopped)",
            "differing": "\(report.differing.count)", "failed": "\(report.thisRun.failed)",
        ])
        return report
    }

    private func settle(_ verifier: ChunkVerifier, rounds: Int, table: TableName, conn: PGConnection, into report: inout BackfillTableReport) throws {
        guard verifier.pendingKeys > 0 else { return }
        logger.info("re-checking rows that differed after their chunk", metadata: ["table": "\(table)", "keys": "\(verifier.pendingKeys)", "settle_seconds": "\(options.settleSeconds)"])
        let (verified, differing) = try verifier.settle(rounds: rounds, seconds: options.settleSeconds, stop: stop)
        report.thisRun.verified += verified
        try BackfillState.addVerified(table, verified, on: conn)
        report.differing = differing
    }
}
