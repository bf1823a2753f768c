import CDCCore
import CDCPostgres
import Dispatch
import Foundation
import Synchronization

extension Backfiller {
    /// One connection attempt at a table: checks, the checkpoint, then the chunks from where it says.
    ///
    /// The chunks flow through a pipeline: while chunk k is written on one target session, chunk
    /// k + 1 is read from the source and written on another (disjoint key ranges), and chunk k − 1 is
    /// verified. Commits stay in key order — a writer waits for the previous chunk's commit before it
    /// writes its checkpoint — so `next_key` always has every chunk below it committed.
    func attempt(_ run: inout TableRun) throws {
        let (sourceName, targetName) = (run.report.source, run.report.target)
        let first = run.attempts == 0
        run.attempts += 1
        let conns = try connect()
        defer { conns.close() }  // closing the target session also releases the advisory lock

        // Everything is checked before anything is written (again after a reconnect: an outage may hide a change).
        let table = try BackfillTable.resolve(source: sourceName, target: targetName, sourceConn: conns.source, targetConn: conns.target,
                                              denySchemas: settings.denySchemas)
        run.report.keyNames = table.keyNames
        try VerifySide.checkPredicate(options.predicate, table: sourceName, side: .source, on: conns.source)
        try VerifySide.checkPredicate(options.predicate, table: targetName, side: .target, on: conns.target)
        let versionSource = try options.versionSource ?? VersionSource.detect(on: conns.source)
        if versionSource == .changeLog, try VersionSource.detect(on: conns.source) != .changeLog {
            throw BackfillError("--version-source change-log: the source has no cdcr.change_log")
        }
        if versionSource == .changeLog { try VersionSource.checkSequence(on: conns.source) }
        try BackfillState.lock(targetName, on: conns.target)
        defer { BackfillState.unlock(targetName, on: conns.target) }
        guard let checkpoint = try loadCheckpoint(&run, first: first, versionSource: versionSource, on: conns.target) else { return }
        run.checked = true
        run.report.runID = checkpoint.runID
        run.report.versionSource = checkpoint.versionSource

        let sql = BackfillSQL(table, predicate: options.predicate)
        // Range watermarks only where "which range holds this key" has one answer on both sides and
        // every key of a range was copied (no --where), and only for one run per table, whose
        // ranges are disjoint (a rerun after --restart writes entries, docs/BACKFILL.md).
        let otherRuns = try BackfillState.rangesOfOtherRuns(targetName, runID: checkpoint.runID, on: conns.target)
        let useRanges = table.keyOrdersByType && options.predicate == nil && !otherRuns
        let writers = conns.writers.map { conn in
            var writer = ChunkWriter(sql: sql, conn: conn, runID: checkpoint.runID, logger: logger)
            writer.useRanges = useRanges
            return writer
        }
        let queues = writers.indices.map { DispatchQueue(label: "cdcr-backfill-writer-\($0)") }
        let verifier = options.verify && !options.dryRun
            ? ChunkVerifier(pair: table.pair, predicate: options.predicate, sourceConn: conns.verifySource, targetConn: conns.verifyTarget,
                            logger: logger, pending: run.pending) : nil
        defer { if let verifier { run.pending = verifier.pendingChunks } }
        // Chunks that committed before the outage but were not checked yet.
        while let verifier, let next = run.unverified.first {
            try verify(next.range, chunk: next.chunk, verifier, run: &run, conn: conns.verifyTarget)
            run.unverified.removeFirst()
        }

        let estimate = try VerifySide(.source, conn: conns.source, pair: table.pair, predicate: nil, floatTolerance: nil).estimatedRows()
        let limit = max(1, min(options.chunkRows, options.maxRowsPerSecond.map { max(1, Int($0)) } ?? .max))
        var lower = checkpoint.nextKey
        var chunkNumber = checkpoint.counts.chunks
        var doneBefore = checkpoint.counts.rowsRead
        var rowsThisAttempt: Int64 = 0
        let attemptStarted = ContinuousClock.now
        var lastProgress = ContinuousClock.now - .seconds(10)

        // Written chunks in key order, oldest first; at most one more than writers.
        var inFlight: [(chunk: SourceChunk, number: Int64, gate: ChunkGate)] = []
        // The committed chunk being checked on the checkers' sessions while the loop reads and submits
        // the next ones (at most one: the checkers are one session per side).
        var checking: (number: Int64, check: Handoff<Bool>)?
        let checkQueue = DispatchQueue(label: "cdcr-backfill-check")
        defer {
            _ = try? checking?.check.wait()  // never close a connection under a running check
            for f in inFlight { _ = f.gate.wait() }  // … or write
            // Any of these may have committed even so (its commit's answer lost): the reload tells.
            run.interrupted = inFlight.map { (KeyRange(lo: $0.chunk.lower, hi: $0.chunk.upper), $0.number) }
        }

        /// Waits for the running check, if any, and counts its result.
        func finishCheck() throws {
            guard let verifier, let (number, check) = checking else { return }
            checking = nil
            try count(check: try check.wait(), verifier, run: &run, conn: conns.verifyTarget)
            run.unverified.removeAll { $0.chunk == number }
        }

        /// Waits for the oldest chunk in flight, counts it, starts its check and reports progress.
        func collect() throws {
            let (chunk, number, gate) = inFlight[0]
            let outcome = try gate.wait().get()
            inFlight.removeFirst()
            run.progressed = true
            run.report.thisRun = run.report.thisRun + outcome.counts
            run.report.failedKeys += outcome.failedKeys.prefix(max(0, 100 - run.report.failedKeys.count))
            if options.dryRun { run.dryCheckpoint?.advance(to: chunk.upper, counts: outcome.counts) }
            if let verifier {
                try finishCheck()
                let range = KeyRange(lo: chunk.lower, hi: chunk.upper)
                run.unverified.append((range, number))
                checking = (number, Handoff(on: checkQueue) { try verifier.check(range, chunk: number) })
            }
            logger.debug("chunk", metadata: ["table": "\(targetName)", "chunk": "\(number)", "rows": "\(chunk.rowCount)",
                                          "phases": "\(outcome.phases)"])
            doneBefore += outcome.counts.rowsRead
            rowsThisAttempt += outcome.counts.rowsRead
            let elapsed = (ContinuousClock.now - attemptStarted).seconds
            let rate = elapsed > 0 ? Double(rowsThisAttempt) / elapsed : 0
            let progress = BackfillProgress(table: targetName, rowsDone: doneBefore, estimatedRows: max(estimate, doneBefore), rowsPerSecond: rate)
            if !options.dryRun { CDCRMetrics.recordBackfill(progress, rows: outcome.counts.rowsRead, done: chunk.upper == nil) }
            if ContinuousClock.now - lastProgress >= .milliseconds(500) || chunk.upper == nil {
                onProgress(progress)
                lastProgress = ContinuousClock.now
            }
            if chunk.upper == nil { run.report.done = !options.dryRun }
        }

        var submittedRows: Int64 = 0
        while !checkpoint.done {
            if stop.isStopped { run.report.stopped = true; break }
            let watermark = try Watermark.read(checkpoint.versionSource, on: conns.source)
            do {
                try watermark.waitForOlderTransactions(on: conns.source, timeout: options.horizonTimeout, stop: stop, logger: logger)
            } catch is BackfillStopped {
                run.report.stopped = true
                break
            }
            let chunk = try SourceChunk.read(sql, lower: lower, limit: limit, watermark: watermark, on: conns.source)
            chunkNumber += 1
            // One chunk more than writers: the next chunk is read and queued behind its writer's
            // current one, so a writer never waits for the read when the chunk before it commits.
            if inFlight.count > writers.count { try collect() }
            let (gate, previous, number, dryRun) = (ChunkGate(), inFlight.last?.gate, chunkNumber, options.dryRun)
            let writer = writers[Int(number) % writers.count]
            queues[Int(number) % writers.count].async {
                let result = Result { () throws -> ChunkOutcome in
                    defer { gate.markStarted() }
                    try writer.holdTurn(number)
                    gate.markStarted()
                    var outcome = try writer.write(chunk, chunkNumber: number, dryRun: dryRun) {
                        guard let previous else { return }
                        previous.waitStarted()
                        try writer.awaitTurn(after: number - 1)
                        if case let .failure(error) = previous.wait() { throw error }
                    }
                    outcome.phases = writer.phases.describe()  // here: the writer may start its next chunk before the loop logs this one
                    return outcome
                }
                gate.finish(result)
                writer.releaseTurn(number)
            }
            inFlight.append((chunk, number, gate))
            submittedRows += Int64(chunk.rowCount)
            lower = chunk.upper
            if chunk.upper == nil { break }
            if let max = options.maxRowsPerSecond, max > 0 {
                // Never ahead of the allowed rate over the attempt so far.
                let due = Double(submittedRows) / max
                let elapsed = (ContinuousClock.now - attemptStarted).seconds
                if due > elapsed { stop.sleep(ms: Int((due - elapsed) * 1000)) }
            }
        }
        while !inFlight.isEmpty { try collect() }
        try finishCheck()
        if checkpoint.done { run.report.done = true }  // the last chunk committed before an outage cut the run short
        if let verifier { try settle(verifier, rounds: options.settleRounds, run: &run, conn: conns.verifyTarget) }
    }

    /// The checkpoint this attempt starts from, nil when the table was already complete. On the first
    /// attempt: the saved one (checked against the options) or a fresh one; on a reconnect: the saved
    /// one again — the truth about which chunks committed, even one whose commit's answer was lost.
    private func loadCheckpoint(_ run: inout TableRun, first: Bool, versionSource: VersionSource, on conn: PGConnection) throws -> BackfillCheckpoint? {
        let targetName = run.report.target
        if options.dryRun, !first, let saved = run.dryCheckpoint { return saved }
        if let saved = try BackfillState.load(targetName, on: conn), !(options.restart && first) {
            guard first else {
                guard saved.runID == run.report.runID else {
                    throw BackfillError("the checkpoint of \(targetName) changed to run \(saved.runID) while this run (\(run.report.runID)) was reconnecting; stopped")
                }
                run.report.thisRun = saved.counts - (run.base ?? BackfillCounts())
                if options.verify { run.unverified += run.interrupted.filter { $0.chunk <= saved.counts.chunks } }
                run.interrupted = []
                return saved
            }
            if saved.done {
                run.report.alreadyDone = true
                run.report.done = true
                run.report.counts = saved.counts
                run.report.runID = saved.runID
                run.report.versionSource = saved.versionSource
                return nil
            }
            guard saved.predicate == options.predicate else {
                throw BackfillError("the unfinished backfill of \(targetName) (run \(saved.runID)) used --where \(saved.predicate.map { "'\($0)'" } ?? "(none)"); rerun with the same predicate to continue, or --restart")
            }
            guard options.versionSource == nil || saved.versionSource == versionSource else {
                throw BackfillError("the unfinished backfill of \(targetName) (run \(saved.runID)) stamped versions from \(saved.versionSource.rawValue); rerun with that --version-source, or --restart")
            }
            run.report.resumed = true
            run.base = saved.counts
            if options.dryRun { run.dryCheckpoint = saved }
            return saved
        }
        guard first else { throw BackfillError("the checkpoint of \(targetName) vanished from cdcr.backfill_state while this run was reconnecting; stopped") }
        let runID = "bf-" + String(UInt64(Date().timeIntervalSince1970 * 1000), radix: 36) + "-" + String(UInt32.random(in: 0...UInt32.max), radix: 36)
        let fresh = BackfillCheckpoint(runID: runID, versionSource: versionSource, predicate: options.predicate, nextKey: nil, done: false, counts: BackfillCounts())
        if options.dryRun {
            run.dryCheckpoint = fresh
        } else {
            try BackfillState.start(targetName, source: run.report.source, checkpoint: fresh, on: conn)
        }
        run.base = BackfillCounts()
        return fresh
    }

    private func verify(_ range: KeyRange, chunk: Int64, _ verifier: ChunkVerifier, run: inout TableRun, conn: PGConnection) throws {
        try count(check: try verifier.check(range, chunk: chunk), verifier, run: &run, conn: conn)
    }

    /// Counts a chunk's check (`equal`: its range matched), and settles at once when too many
    /// differing keys wait.
    private func count(check equal: Bool, _ verifier: ChunkVerifier, run: inout TableRun, conn: PGConnection) throws {
        if equal {
            run.report.thisRun.verified += 1
            try BackfillState.addVerified(run.report.target, 1, on: conn)
        }
        if verifier.pendingKeys > verifier.maxPending { try settle(verifier, rounds: 1, run: &run, conn: conn) }
    }

    private func settle(_ verifier: ChunkVerifier, rounds: Int, run: inout TableRun, conn: PGConnection) throws {
        guard verifier.pendingKeys > 0 else { return }
        let table = run.report.target
        logger.info("re-checking rows that differed after their chunk", metadata: ["table": "\(table)", "keys": "\(verifier.pendingKeys)", "settle_seconds": "\(options.settleSeconds)"])
        let (verified, differing) = try verifier.settle(rounds: rounds, seconds: options.settleSeconds, stop: stop)
        run.report.thisRun.verified += verified
        try BackfillState.addVerified(table, verified, on: conn)
        run.report.differing = differing
    }
}

extension BackfillCheckpoint {
    /// A dry run's in-memory checkpoint after a chunk.
    mutating func advance(to next: KeyTexts?, counts delta: BackfillCounts) {
        nextKey = next
        done = next == nil
        counts = counts + delta
    }
}

/// The result of one chunk's write, set once by its writer's thread and awaited by the table's loop
/// and by the next chunk's writer (which commits only after this one did). Before that the next
/// writer waits for this one to hold its turn lock (`ChunkWriter.holdTurn`), which takes no time
/// and depends on nobody, so the wait that matters happens inside PostgreSQL.
final class ChunkGate: Sendable {
    private let result = Mutex<Result<ChunkOutcome, any Error>?>(nil)
    private let ready = DispatchSemaphore(value: 0)
    private let started = DispatchSemaphore(value: 0)
    private let startedOnce = Atomic<Bool>(false)

    func markStarted() {
        if !startedOnce.exchange(true, ordering: .acquiringAndReleasing) { started.signal() }
    }

    func waitStarted() {
        started.wait()
        started.signal()
    }

    func finish(_ r: Result<ChunkOutcome, any Error>) {
        result.withLock { $0 = r }
        ready.signal()
    }

    /// Blocks until the result is set; any number of waiters, any number of times.
    func wait() -> Result<ChunkOutcome, any Error> {
        ready.wait()
        ready.signal()  // pass it on to the next waiter
        return result.withLock { $0! }
    }
}
