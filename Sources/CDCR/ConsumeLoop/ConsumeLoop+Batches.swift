import CDCCore
import CDCKafka
import CDCPostgres
import Foundation
import Logging

/// The batches: decode and prepare, hand over to the apply thread, apply with retries, settle
/// (dead letters, offsets, counts).
extension ConsumeLoop {
    /// A batch handed to the apply thread, with what its bookkeeping needs afterwards.
    struct InFlightBatch {
        let batch: [KafkaMessage]
        let decoded: [Result<DecodedMessage, PoisonError>]
        let started: ContinuousClock.Instant
        let pollTook: Duration
        let decodeTook: Duration
        /// The outcomes, and when the target transaction that applied them committed.
        let outcomes: Handoff<([EventOutcome], committedAt: Date)>
    }

    /// A batch the database has finished with (committed, or rolled back with every outcome known).
    struct FinishedBatch {
        let job: InFlightBatch
        let outcomes: [EventOutcome]
        let committedAt: Date
        let phases: [(String, Duration)]
        /// Statement round trips the batch took to the target (debug logging).
        let roundTrips: Int
    }

    /// Decodes everything pending and hands it to the apply thread as soon as the batch before it is
    /// out of the database; that batch's dead letters and offset commit then overlap this one's
    /// database work (its offsets still follow its own commit; a crash in between redelivers both
    /// batches, which the ledger turns into duplicates). Returns without waiting for the new batch.
    func flush() throws {
        let batch = pending
        pending.removeAll(keepingCapacity: true)
        let started = ContinuousClock.now
        let (decoded, prepared) = Self.decodeAndPrepare(batch, decoder, resolvingAgainst: knownTables, settings: settings)
        let decodeTook = ContinuousClock.now - started
        let pollTook = self.pollTook
        self.pollTook = .zero
        if settings.onPoison == .halt, let (i, p) = firstPoison(decoded) {
            try finishInFlight()
            throw HaltError(position: position(batch[i]), poison: p)
        }
        let previous = try collectInFlight()
        // The apply thread owns `applier` until `collectInFlight` has waited for it.
        let me = UncheckedSendable(self)
        let outcomes = Handoff(on: applyQueue) { (try me.value.applyRetrying(decoded, prepared: prepared), committedAt: Date()) }
        inFlight = InFlightBatch(batch: batch, decoded: decoded, started: started, pollTook: pollTook, decodeTook: decodeTook, outcomes: outcomes)
        health?.applyStarted(at: started)
        guard let previous else { return }
        do {
            try settle(previous)
        } catch {
            _ = try? outcomes.wait()  // leave nothing running behind the error; its offsets stay uncommitted
            inFlight = nil
            throw error
        }
    }

    /// Applies everything pending and waits until it is committed: at a stop or a revocation.
    func flushNow() throws {
        if !pending.isEmpty { try flush() }
        try finishInFlight()
    }

    /// Waits for the batch on the apply thread, then dead-letters its poison events and commits its
    /// offsets. Nothing to do when no batch is in flight.
    func finishInFlight() throws {
        if let finished = try collectInFlight() { try settle(finished) }
    }

    /// Waits for the batch on the apply thread and takes what the applier knows after it (tables,
    /// phase timings) before the thread is given the next batch. Halts on poison when asked to.
    func collectInFlight() throws -> FinishedBatch? {
        guard let job = inFlight else { return nil }
        inFlight = nil
        let (outcomes, committedAt) = try job.outcomes.wait()
        knownTables = applier?.knownTables ?? [:]
        if settings.onPoison == .halt, let i = outcomes.firstIndex(where: { if case .deadLettered = $0 { true } else { false } }),
           case let .deadLettered(p) = outcomes[i] {
            throw HaltError(position: position(job.batch[i]), poison: p)
        }
        return FinishedBatch(job: job, outcomes: outcomes, committedAt: committedAt, phases: logger.logLevel <= .debug ? applier?.phases ?? [] : [],
                             roundTrips: applier?.roundTrips ?? 0)
    }

    /// Dead-letters a finished batch's poison events, then commits its offsets and counts it.
    func settle(_ finished: FinishedBatch) throws {
        let (job, outcomes) = (finished.job, finished.outcomes)
        let (batch, decoded) = (job.batch, job.decoded)
        var dead: [(KafkaMessage, PoisonError, changeID: String?)] = []
        var batchCounts = OutcomeCounts()
        for (i, outcome) in outcomes.enumerated() {
            batchCounts.add(outcome)
            if case let .deadLettered(p) = outcome {
                let id: String? = if case let .success(.change(e)) = decoded[i] { e.changeID } else { salvageChangeID(batch[i].value) }
                dead.append((batch[i], p, id))
                logger.warning("dead-lettering change", metadata: [
                    "reason": "\(p.reason.rawValue)", "error": "\(p.message)", "position": "\(position(batch[i]))",
                ])
            }
        }
        if !dead.isEmpty { try retrying("write dead letters") { try deadLetters!.write(dead) } }

        // A batch holds runs of one partition's messages: look each run's partition up once.
        var i = batch.startIndex
        while i < batch.endIndex {
            let (topic, partition) = (batch[i].topic, batch[i].partition)
            var end = batch[i].offset + 1
            i += 1
            while i < batch.endIndex, batch[i].partition == partition, batch[i].topic == topic {
                end = max(end, batch[i].offset + 1)
                i += 1
            }
            let tp = TopicPartition(topic: topic, partition: partition)
            uncommitted[tp] = max(uncommitted[tp] ?? 0, end)
        }
        try commitApplied()
        counts.add(batchCounts)
        let took = ContinuousClock.now - job.started
        if logger.logLevel <= .debug {
            let phases = BatchApplier.describe([("poll", job.pollTook), ("decode", job.decodeTook)] + finished.phases)
            logger.debug("batch committed", metadata: ["events": "\(batch.count)", "took": "\(took)", "phases": "\(phases)", "round_trips": "\(finished.roundTrips)", "counts": "\(batchCounts.json)"])
        }
        let latencies = CDCRMetrics.recordBatch(messages: batch, decoded: decoded, outcomes: outcomes,
                                                tableFor: { settings.targetTable(for: $0).description }, took: took,
                                                committedAt: finished.committedAt)
        health?.recordBatch(batchCounts, latencies: latencies)
    }

    /// Decoding is pure and per message, so a large batch is split across the cores. The rest of the
    /// database-free work (resolving against known tables, ledger rows, plan, stage rows) follows
    /// here too, off the apply thread, which checks that it still holds (see `PreparedBatch`).
    static func decodeAndPrepare(_ batch: [KafkaMessage], _ decoder: EventDecoder, resolvingAgainst tables: [TableName: TargetTable],
                                 settings: Settings) -> ([Result<DecodedMessage, PoisonError>], PreparedBatch) {
        let decoded = parallelMap(batch) { m in
            Result { () throws(PoisonError) -> DecodedMessage in try decoder.decode(key: m.key, value: m.value) }
        }
        return (decoded, PreparedBatch.make(decoded, tables: tables, settings: settings))
    }

    /// Applies a batch on the apply thread. A transient failure is retried until it passes (see
    /// `retrying`); an unclear one (`FailureClass.unclear`) `unclear_error_retries` times, after
    /// which the batch is isolated change by change and a change that fails alone is dead-lettered.
    /// If isolation shows the database itself is broken (`DatabaseBroken`), the batch is retried for
    /// as long as that lasts. Either way the health state says why the batch is waiting.
    func applyRetrying(_ decoded: [Result<DecodedMessage, PoisonError>], prepared: PreparedBatch) throws -> [EventOutcome] {
        var unclearFailures = 0
        defer { health?.setApplyProblem(nil) }
        return try retrying("apply batch", reconnectingTarget: true, unclear: { error, reason in
            unclearFailures += 1
            let isolating = unclearFailures > self.settings.unclearErrorRetries
            self.logger.warning(isolating ? "apply batch failed for an unclear reason; isolating its changes next" : "apply batch failed for an unclear reason, retrying", metadata: [
                "error": "\(error)", "reason": "\(reason)", "attempt": "\(unclearFailures)", "retries": "\(self.settings.unclearErrorRetries)",
            ])
            self.health?.setApplyProblem("unclear failure (\(reason)): \(error)")
        }) {
            try currentApplier().apply(decoded, prepared: unclearFailures == 0 ? prepared : nil,
                                       isolateUnclear: unclearFailures > settings.unclearErrorRetries)
        }
    }

    /// Runs `body` until it succeeds, retrying transient failures with capped exponential backoff.
    /// A stop request during an outage abandons the batch: nothing is committed, it is redelivered.
    /// Only the apply thread passes `reconnectingTarget`: it owns the target connection while a batch
    /// is in flight, and dead letters and offset commits are retried on the consume thread meanwhile.
    /// With `unclear`, unclear failures are retried too, after `unclear` has seen each one.
    func retrying<T>(_ what: String, reconnectingTarget: Bool = false, unclear: ((any Error, String) -> Void)? = nil,
                             _ body: () throws -> T) throws -> T {
        var backoff = Backoff(capMs: settings.retryMaxBackoffMs)
        while true {
            do {
                return try body()
            } catch {
                let reason: String
                switch ErrorClassifier.classify(error) {
                case let .transient(r):
                    reason = r
                    let broken = error is DatabaseBroken
                    logger.log(level: broken ? .error : .warning, "\(what) failed, retrying", metadata: [
                        "error": "\(error)", "reason": "\(r)", "attempt": "\(backoff.attempt + 1)",
                    ])
                    if reconnectingTarget { health?.setApplyProblem(broken ? "\(error)" : "retrying \(what): \(r)") }
                case let .unclear(r, _) where unclear != nil:
                    reason = r
                    unclear!(error, r)
                default:
                    throw error
                }
                let delay = backoff.next()
                CDCRMetrics.recordRetry(reason)
                if !stop.sleep(ms: delay) { throw StoppedDuringRetry() }
                if reconnectingTarget, let applier, !applier.conn.isHealthy || reason == "pg_connection" {
                    applier.conn.close()
                    self.applier = try? connectTarget(settings.targetURL!, installSchema: false)
                }
            }
        }
    }

    func currentApplier() throws -> BatchApplier {
        if let applier { return applier }
        throw PGError(sqlState: nil, message: "not connected to the target", connectionLost: true)
    }

    /// Connects (waiting out an unreachable target) and installs the bookkeeping schema.
    func connectTarget(_ url: String, installSchema: Bool) throws -> BatchApplier {
        var backoff = Backoff(capMs: settings.retryMaxBackoffMs)
        while true {
            do {
                let conn = try TargetConnection.open(url, applying: true)
                if installSchema { try BookkeepingSchema.install(on: conn) }
                return BatchApplier(conn: conn, settings: settings, logger: logger)
            } catch {
                guard case .transient = ErrorClassifier.classify(error) else { throw error }
                logger.warning("target unavailable, retrying", metadata: ["error": "\(error)"])
                if !stop.sleep(ms: backoff.next()) { throw StoppedDuringRetry() }
            }
        }
    }
}
