import CDCCore
import CDCKafka
import CDCPostgres
import Foundation
import Logging

/// The applier daemon's heart: poll a batch → decode → apply in one target transaction →
/// dead-letter poison → commit offsets. Offsets move only after the batch is durably applied and its
/// dead letters acknowledged, so a crash anywhere redelivers, and the ledger makes redelivery harmless.
///
/// Runs on one dedicated thread (librdkafka and libpq block), with one helper thread for the
/// database: while batch n is being applied there, this thread polls and prepares batch n+1. Batch
/// n+1 goes to the database only once batch n's transaction has ended, so at most one batch is ever
/// in the target; batch n's dead letters and offset commit then overlap batch n+1's transaction.
/// Memory holds at most two batches. `StopSignal` ends the loop at the next batch boundary.
public final class ConsumeLoop {
    private let settings: Settings
    private let logger: Logger
    private let stop: StopSignal
    private let stopWhenCaughtUp: Bool
    private let decoder: EventDecoder

    private var consumer: KafkaConsumer?
    private var deadLetters: DeadLetterWriter?
    private var applier: BatchApplier?
    private var pending: [KafkaMessage] = []
    /// The batch being applied on `applyQueue`; `applier` belongs to that thread until it is finished.
    private var inFlight: InFlightBatch?
    private let applyQueue = DispatchQueue(label: "cdcr-apply")
    /// Time spent polling for the batch being filled (debug logging).
    private var pollTook = Duration.zero
    /// The applier's resolved tables as of the last finished batch: the next one is resolved against
    /// them while it is decoded, off the apply thread.
    private var knownTables: [TableName: TargetTable] = [:]
    /// Next offset to read, per partition, as last committed by this process.
    private var committed: [TopicPartition: Int64] = [:]
    /// Offsets of applied batches whose commit the broker has not accepted yet (rebalance in progress).
    private var uncommitted: [TopicPartition: Int64] = [:]
    private var rebalanceError: (any Error)?
    public private(set) var counts = OutcomeCounts()
    /// Messages Kafka deleted before this process read them (see `RetentionWatch`).
    public private(set) var lostToRetention = 0
    private var retention = RetentionWatch()
    /// Log starts asked of the broker when librdkafka had none cached (see `checkRetention`).
    private var askedLogStart: [TopicPartition: (ContinuousClock.Instant, Int64)] = [:]
    /// When the first message arrived; the active period ends when `run` returns.
    private var firstMessageAt: ContinuousClock.Instant?

    private let health: HealthState?

    public init(settings: Settings, logger: Logger, stop: StopSignal, stopWhenCaughtUp: Bool = false, health: HealthState? = nil) {
        self.health = health
        self.settings = settings
        self.logger = logger
        self.stop = stop
        self.stopWhenCaughtUp = stopWhenCaughtUp
        self.decoder = EventDecoder(choice: settings.format)
    }

    /// Runs until stopped (or caught up, with `stopWhenCaughtUp`). Throws only fatal errors.
    public func run() throws -> RunSummary {
        guard let url = settings.targetURL else { throw ConfigError("target", "no target database: pass --target or set CDCR_TARGET_URL") }
        applier = try connectTarget(url, installSchema: true)
        guard !stop.isStopped else { return summary }
        if let applier { warnIfSuperuser(applier.conn) }

        let props = settings.kafkaClientProperties(extra: [
            ("group.id", settings.group), ("auto.offset.reset", "earliest"),
            ("enable.partition.eof", "false"), ("client.id", "cdcr-applier"),
            // A broker answers a connection's requests in order, so an idle partition's long-poll
            // fetch (librdkafka waits 500 ms by default) delays the offset commit and the end-offset
            // query behind it. 100 ms bounds that at the price of a few more fetches when idle.
            ("fetch.wait.max.ms", "100"),
        ])
        let consumer = try KafkaConsumer(properties: props) { [unowned self] event in self.rebalanced(event) }
        self.consumer = consumer
        defer {
            // Nothing of ours outlives the run: a batch still in the database finishes first (its
            // offsets stay uncommitted when we got here by an error, so it is redelivered).
            if let inFlight { _ = try? inFlight.outcomes.wait() }
            consumer.close()
            deadLetters?.close()
        }
        deadLetters = try DeadLetterWriter(settings: settings)
        try consumer.subscribe(settings.topics)
        logger.info("applier started", metadata: ["topics": "\(settings.topics.joined(separator: ","))", "group": "\(settings.group)"])

        var lastReport = ContinuousClock.now
        var lastPrune = ContinuousClock.now - .seconds(3_000)  // first prune ten minutes after start
        while !stop.isStopped {
            if let rebalanceError { throw rebalanceError }
            let gotAny = try fillBatch(consumer)
            if !pending.isEmpty {
                try flush()
            } else {
                try finishInFlight()
                if !gotAny {
                    try commitPastMarkers(consumer)
                    if stopWhenCaughtUp, try caughtUp(consumer) {
                        logger.info("caught up with every assigned partition; stopping")
                        break
                    }
                }
            }
            if ContinuousClock.now - lastReport > .seconds(10) {
                lastReport = .now
                logger.info("progress", metadata: ["counts": "\(counts.json)"])
            }
            if ContinuousClock.now - lastPrune > .seconds(3_600) {
                lastPrune = .now
                try finishInFlight()
                pruneBookkeeping()
            }
        }
        // Graceful stop: the batches in flight and being filled are applied and committed before
        // leaving the group.
        try flushNow()
        try commitApplied()
        logger.info("applier stopped", metadata: ["counts": "\(counts.json)"])
        return summary
    }

    private var summary: RunSummary {
        RunSummary(counts: counts, activeSeconds: firstMessageAt.map { (ContinuousClock.now - $0).seconds } ?? 0, lostToRetention: lostToRetention)
    }

    /// Polls until the batch is full or its time is up. Returns whether any message arrived.
    private func fillBatch(_ consumer: KafkaConsumer) throws -> Bool {
        let started = ContinuousClock.now
        defer { pollTook += ContinuousClock.now - started }
        let deadline = started + .milliseconds(settings.batchMaxWaitMs)
        var gotAny = false
        var lastMessageAt = started
        var backoff = Backoff(capMs: settings.retryMaxBackoffMs)
        while pending.count < settings.batchMaxEvents && !stop.isStopped {
            // The batch in the database is done: commit its offsets now rather than at the next flush.
            if let inFlight, inFlight.outcomes.isFinished { try finishInFlight() }
            let left = deadline - ContinuousClock.now
            if left <= .zero { break }
            let slice: Int64 = inFlight == nil ? 100 : 5  // look at the batch in flight often
            let ms = Int32(clamping: max(1, min(slice, left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000)))
            do {
                guard let message = try consumer.poll(timeoutMs: ms) else {
                    // Draining a backlog to stop: after 50 ms without a message, flush at once if
                    // the end is reached (waiting out the batch window would only delay the exit);
                    // if the broker merely stalled mid-backlog, keep filling the batch.
                    if stopWhenCaughtUp, !pending.isEmpty, ContinuousClock.now - lastMessageAt > .milliseconds(50) {
                        if (try? readToEnd(consumer)) ?? true { break }
                        lastMessageAt = .now
                    }
                    continue
                }
                pending.append(message)
                let tp = TopicPartition(topic: message.topic, partition: message.partition)
                if let skipped = retention.read(tp, offset: message.offset) { checkRetention(skipped, before: message, tp, consumer) }
                gotAny = true
                if firstMessageAt == nil { firstMessageAt = .now }
                if stopWhenCaughtUp { lastMessageAt = .now }
            } catch {
                // Broker trouble surfaces here as transient consume errors: wait it out.
                guard case let .transient(reason) = ErrorClassifier.classify(error) else { throw error }
                logger.warning("consume failed, retrying", metadata: ["error": "\(error)", "reason": "\(reason)"])
                stop.sleep(ms: backoff.next())
            }
        }
        return gotAny
    }

    /// Offsets of `tp` were skipped before `message`: normal for compaction and transaction markers,
    /// a loss when the log no longer starts before them. The log start comes from librdkafka's cache
    /// (every fetch response carries it, so it is current when the message is); only a broker that
    /// does not send it makes cdcr ask — at most every 10 s per partition, as a compacted topic skips
    /// offsets at nearly every message, and never for a single skipped offset (a transaction marker).
    private func checkRetention(_ skipped: Range<Int64>, before message: KafkaMessage, _ tp: TopicPartition, _ consumer: KafkaConsumer) {
        var logStart: Int64 = -1
        if let cached = consumer.cachedLowWatermark(tp) {
            logStart = cached
        } else if skipped.count > 1 {
            if let (at, low) = askedLogStart[tp], ContinuousClock.now - at < .seconds(10) {
                logStart = low
            } else if let low = try? consumer.watermarks(tp, timeoutMs: 5_000).low {
                askedLogStart[tp] = (.now, low)
                logStart = low
            }
        }
        guard let lost = RetentionWatch.lost(skipped, logStart: logStart) else { return }
        reportLost(lost, tp, firstRetainedAtMillis: message.timestampMillis)
    }

    /// Counts, and logs at error level, offsets of `tp` Kafka deleted before they were read.
    private func reportLost(_ lost: Range<Int64>, _ tp: TopicPartition, firstRetainedAtMillis: Int64?) {
        lostToRetention += lost.count
        CDCRMetrics.recordLostToRetention(topic: tp.topic, partition: tp.partition, messages: lost.count)
        var metadata: Logger.Metadata = [
            "partition": "\(tp)", "lost_offsets": "\(lost.lowerBound)..<\(lost.upperBound)", "messages": "\(lost.count)",
        ]
        if let ms = firstRetainedAtMillis { metadata["first_retained_at"] = "\(CivilTime.timestampString(micros: ms * 1_000))Z" }
        logger.error("""
            Kafka deleted messages before cdcr read them (topic retention): their changes never reached the target. \
            Replay them from the source change log: the scheduled gap filler covers them if its window reaches back \
            far enough, else run `cdcr replay --from <when this partition was last applied> --to <first_retained_at>`.
            """, metadata: metadata)
    }

    /// Events can only write user tables (see `ForbiddenSchemas`), but a superuser target role
    /// would still let a bug or a forged event anywhere a superuser reaches: say so once.
    private func warnIfSuperuser(_ conn: PGConnection) {
        guard let row = try? conn.query("SELECT current_user::text, rolsuper FROM pg_roles WHERE rolname = current_user").rows.first,
              row[1] == "t" else { return }
        logger.warning("""
            the target role \(row[0] ?? "?") is a superuser; run cdcr as a role that may only write the replicated \
            tables and its own cdcr schema (see docs/OPERATIONS.md, "Target role")
            """)
    }

    /// Deletes ledger entries and tombstones older than the retention, in bounded chunks, between
    /// batches. A failure is logged and tried again at the next hour; it never stops the applier.
    private func pruneBookkeeping() {
        guard let applier else { return }
        do {
            let n = try BookkeepingSchema.prune(on: applier.conn, olderThanDays: settings.ledgerRetentionDays)
            if n > 0 { logger.info("pruned bookkeeping older than the retention", metadata: ["rows": "\(n)", "days": "\(settings.ledgerRetentionDays)"]) }
        } catch {
            logger.warning("pruning the ledger failed; will try again", metadata: ["error": "\(error)"])
        }
    }

    /// A batch handed to the apply thread, with what its bookkeeping needs afterwards.
    private struct InFlightBatch {
        let batch: [KafkaMessage]
        let decoded: [Result<DecodedMessage, PoisonError>]
        let started: ContinuousClock.Instant
        let pollTook: Duration
        let decodeTook: Duration
        let outcomes: Handoff<[EventOutcome]>
    }

    /// A batch the database has finished with (committed, or rolled back with every outcome known).
    private struct FinishedBatch {
        let job: InFlightBatch
        let outcomes: [EventOutcome]
        let phases: [(String, Duration)]
    }

    /// Decodes everything pending and hands it to the apply thread as soon as the batch before it is
    /// out of the database; that batch's dead letters and offset commit then overlap this one's
    /// database work (its offsets still follow its own commit; a crash in between redelivers both
    /// batches, which the ledger turns into duplicates). Returns without waiting for the new batch.
    private func flush() throws {
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
        let outcomes = Handoff(on: applyQueue) { try me.value.applyRetrying(decoded, prepared: prepared) }
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
    private func flushNow() throws {
        if !pending.isEmpty { try flush() }
        try finishInFlight()
    }

    /// Waits for the batch on the apply thread, then dead-letters its poison events and commits its
    /// offsets. Nothing to do when no batch is in flight.
    private func finishInFlight() throws {
        if let finished = try collectInFlight() { try settle(finished) }
    }

    /// Waits for the batch on the apply thread and takes what the applier knows after it (tables,
    /// phase timings) before the thread is given the next batch. Halts on poison when asked to.
    private func collectInFlight() throws -> FinishedBatch? {
        guard let job = inFlight else { return nil }
        inFlight = nil
        let outcomes = try job.outcomes.wait()
        knownTables = applier?.knownTables ?? [:]
        if settings.onPoison == .halt, let i = outcomes.firstIndex(where: { if case .deadLettered = $0 { true } else { false } }),
           case let .deadLettered(p) = outcomes[i] {
            throw HaltError(position: position(job.batch[i]), poison: p)
        }
        return FinishedBatch(job: job, outcomes: outcomes, phases: logger.logLevel <= .debug ? applier?.phases ?? [] : [])
    }

    /// Dead-letters a finished batch's poison events, then commits its offsets and counts it.
    private func settle(_ finished: FinishedBatch) throws {
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
            logger.debug("batch committed", metadata: ["events": "\(batch.count)", "took": "\(took)", "phases": "\(phases)", "counts": "\(batchCounts.json)"])
        }
        CDCRMetrics.recordBatch(messages: batch, decoded: decoded, outcomes: outcomes,
                                tableFor: { settings.targetTable(for: $0).description }, took: took)
        health?.recordBatch(batchCounts)
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
    private func applyRetrying(_ decoded: [Result<DecodedMessage, PoisonError>], prepared: PreparedBatch) throws -> [EventOutcome] {
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
    private func retrying<T>(_ what: String, reconnectingTarget: Bool = false, unclear: ((any Error, String) -> Void)? = nil,
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

    private func currentApplier() throws -> BatchApplier {
        if let applier { return applier }
        throw PGError(sqlState: nil, message: "not connected to the target", connectionLost: true)
    }

    /// Connects (waiting out an unreachable target) and installs the bookkeeping schema.
    private func connectTarget(_ url: String, installSchema: Bool) throws -> BatchApplier {
        var backoff = Backoff(capMs: settings.retryMaxBackoffMs)
        while true {
            do {
                let conn = try TargetConnection.open(url)
                if installSchema { try BookkeepingSchema.install(on: conn) }
                return BatchApplier(conn: conn, settings: settings, logger: logger)
            } catch {
                guard case .transient = ErrorClassifier.classify(error) else { throw error }
                logger.warning("target unavailable, retrying", metadata: ["error": "\(error)"])
                if !stop.sleep(ms: backoff.next()) { throw StoppedDuringRetry() }
            }
        }
    }

    /// Commits the offsets of everything applied so far. During a group rebalance the broker refuses
    /// commits until this member has rejoined, which happens inside `poll`: so the offsets stay
    /// pending, the loop goes back to polling, and the revoke handler (or the next batch) commits them.
    /// Sleeping here instead would keep the member from rejoining until the group evicts it.
    private func commitApplied(only partitions: Set<TopicPartition>? = nil) throws {
        let due = uncommitted.filter { partitions?.contains($0.key) ?? true }
        guard !due.isEmpty, let consumer else { return }
        let offsets = due.map { TopicPartitionOffset(topic: $0.key.topic, partition: $0.key.partition, offset: $0.value) }
        do {
            try retrying("commit offsets") {
                do {
                    try consumer.commit(offsets)
                } catch let e as KafkaError where e.isRebalance {
                    throw DeferredCommit(error: e)
                }
            }
            for (tp, o) in due {
                committed[tp] = o
                uncommitted[tp] = nil
            }
        } catch let deferred as DeferredCommit {
            logger.info("offset commit deferred until the group rebalance completes", metadata: ["error": "\(deferred.error)"])
        } catch let e as KafkaError {
            // The partitions are gone (evicted from the group): the new owner redelivers from the last
            // commit and the ledger turns what we applied into duplicates.
            logger.warning("offset commit refused; those changes will be redelivered and deduplicated", metadata: ["error": "\(e)"])
            for tp in due.keys { uncommitted[tp] = nil }
        }
    }

    private func rebalanced(_ event: RebalanceEvent) {
        switch event {
        case let .assigned(parts):
            logger.info("partitions assigned", metadata: ["partitions": "\(parts.map(\.description).joined(separator: ","))"])
            // Where each partition should resume, to notice if Kafka no longer has it (best effort:
            // without an answer the partition is simply not watched until it is assigned again).
            let resume = (try? consumer?.committed(parts)) ?? [:]
            for p in parts { retention.expect(p, at: resume[p] ?? -1) }
            health?.setAssigned((try? consumer?.assignment().count) ?? parts.count)
        case let .revoking(parts):
            logger.info("partitions revoked; finishing the in-flight batch first", metadata: ["partitions": "\(parts.map(\.description).joined(separator: ","))"])
            do {
                try flushNow()
                try commitApplied(only: Set(parts))
            } catch {
                rebalanceError = error
                pending.removeAll()
            }
            for p in parts {
                committed[p] = nil
                uncommitted[p] = nil
                retention.forget(p)
                askedLogStart[p] = nil
            }
            health?.setAssigned(0)
        }
    }

    /// True when the messages read so far (committed, in flight and pending) reach every assigned
    /// partition's end offset. librdkafka's position covers every message polled and the transaction
    /// markers after them, which no message offset shows.
    private func readToEnd(_ consumer: KafkaConsumer) throws -> Bool {
        let assigned = try consumer.assignment()
        return try firstBehind(consumer.positions(assigned), of: assigned, consumer) == nil
    }

    /// When nothing is pending or in flight, every message polled is applied and committed, so the
    /// consumer's position is safe to commit, and it can be past the last message's offset + 1: a
    /// transactional producer ends each transaction with a commit marker, an offset the application
    /// never receives. Committing only message offsets would leave each such partition one behind
    /// its end for good: lag 1, a STALL verdict, and `--stop-when-caught-up` never stopping.
    ///
    /// Retention can move a partition on without any message too: when it empties the log past the
    /// resume position (log start = end), librdkafka resets to the end, delivers nothing and reports
    /// no position. That is a loss like any other retention loss (reported the same way), and the
    /// new start is committed, so lag returns to 0 and `--stop-when-caught-up` stops.
    private func commitPastMarkers(_ consumer: KafkaConsumer) throws {
        guard pending.isEmpty, inFlight == nil, uncommitted.isEmpty else { return }
        let assigned = try consumer.assignment()
        let positions = try consumer.positions(assigned)
        for tp in assigned {
            if let position = positions[tp] {
                if let skipped = retention.moved(tp, to: position), let low = logStart(tp, consumer),
                   let lost = RetentionWatch.lost(skipped, logStart: low) {
                    reportLost(lost, tp, firstRetainedAtMillis: nil)
                }
                if position > (committed[tp] ?? -1) { uncommitted[tp] = position }
            } else if retention.expected(tp) != nil, let (low, high) = logBounds(tp, consumer),
                      let lost = retention.emptied(tp, low: low, high: high) {
                reportLost(lost, tp, firstRetainedAtMillis: nil)
                if low > (committed[tp] ?? -1) { uncommitted[tp] = low }
            }
        }
        try commitApplied()
    }

    /// `tp`'s log start, from librdkafka's cache or (at most every 10 s) the broker.
    private func logStart(_ tp: TopicPartition, _ consumer: KafkaConsumer) -> Int64? {
        logBounds(tp, consumer)?.low
    }

    /// `tp`'s log start and end, from librdkafka's cache when it has them, else from the broker at
    /// most every 10 s per partition (an idle loop comes here every batch window).
    private func logBounds(_ tp: TopicPartition, _ consumer: KafkaConsumer) -> (low: Int64, high: Int64)? {
        if let cached = consumer.cachedWatermarks(tp) { return cached }
        if let (at, _) = askedLogStart[tp], ContinuousClock.now - at < .seconds(10) { return nil }
        guard let marks = try? consumer.watermarks(tp, timeoutMs: 5_000) else { return nil }
        askedLogStart[tp] = (.now, marks.low)
        return (marks.low, marks.high)
    }

    /// The first of `assigned` whose next offset to read (from `position`, else the group's commit)
    /// is below its end offset; nil when all are at their end. An empty partition has end 0.
    private func firstBehind(_ position: [TopicPartition: Int64], of assigned: [TopicPartition],
                             _ consumer: KafkaConsumer) throws -> (TopicPartition, position: Int64, end: Int64)? {
        let unknown = assigned.filter { position[$0] == nil }
        let fetched = unknown.isEmpty ? [:] : try consumer.committed(unknown)
        let ends = try consumer.endOffsets(assigned)
        for tp in assigned {
            let end = ends[tp] ?? 0
            let at = position[tp] ?? fetched[tp] ?? -1
            if end > 0 && at < end { return (tp, at, end) }
        }
        return nil
    }

    /// True when every assigned partition is committed up to its end offset.
    private func caughtUp(_ consumer: KafkaConsumer) throws -> Bool {
        if !uncommitted.isEmpty {
            try commitApplied()
            if !uncommitted.isEmpty { return false }
        }
        let assigned = try consumer.assignment()
        guard !assigned.isEmpty else { return false }
        if let (tp, position, end) = try firstBehind(committed, of: assigned, consumer) {
            logger.debug("not caught up", metadata: ["partition": "\(tp)", "committed": "\(position)", "end": "\(end)"])
            return false
        }
        return true
    }

    private func firstPoison(_ decoded: [Result<DecodedMessage, PoisonError>]) -> (Int, PoisonError)? {
        for (i, r) in decoded.enumerated() { if case let .failure(p) = r { return (i, p) } }
        return nil
    }

    private func position(_ m: KafkaMessage) -> SourcePosition {
        SourcePosition(topic: m.topic, partition: m.partition, offset: m.offset)
    }
}

/// What a finished run did.
public struct RunSummary: Sendable {
    public let counts: OutcomeCounts
    /// Seconds from the first consumed message to the end of the run (excludes start-up and group join).
    public let activeSeconds: Double
    /// Messages Kafka had deleted before they were read (their changes need a replay).
    public var lostToRetention = 0

    /// The counts JSON with `active_seconds` and `lost_to_retention` added, printed by
    /// `run --stop-when-caught-up`.
    public var json: String {
        String(counts.json.dropLast()) + ",\"active_seconds\":\(activeSeconds),\"lost_to_retention\":\(lostToRetention)}"
    }
}

extension Duration {
    /// The duration in seconds, as a floating-point number (logs, reports, benchmarks).
    public var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}

/// A commit refused because the group is rebalancing: not retried in place (see `commitApplied`).
private struct DeferredCommit: Error {
    let error: KafkaError
}

/// `--on-poison halt` met a poison event: nothing from its batch was committed.
public struct HaltError: Error, CustomStringConvertible {
    public let position: SourcePosition
    public let poison: PoisonError
    public var description: String { "halting on poison event at \(position): \(poison) (--on-poison halt)" }
}

/// A stop request arrived while a transient failure was being waited out; nothing was committed.
public struct StoppedDuringRetry: Error, CustomStringConvertible {
    public var description: String { "stopped while retrying; the uncommitted batch will be redelivered" }
}
