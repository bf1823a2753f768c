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
///
/// When a batch goes is `BatchingStateMachine`'s decision (natural batching: at once when the
/// database is free and nothing more is ready); this class runs the actions it returns. The batch
/// work is in `ConsumeLoop+Batches.swift`, offsets and rebalances in `ConsumeLoop+Commit.swift`,
/// retention checks in `ConsumeLoop+Retention.swift`.
public final class ConsumeLoop {
    let settings: Settings
    let logger: Logger
    let stop: StopSignal
    let stopWhenCaughtUp: Bool
    let decoder: EventDecoder
    let health: HealthState?

    var consumer: KafkaConsumer?
    var deadLetters: DeadLetterWriter?
    var applier: BatchApplier?
    /// The batching decisions; `pending` and `inFlight` below are what they are about.
    var batching: BatchingStateMachine
    /// The batch being filled.
    var pending: [KafkaMessage] = []
    /// The batch being applied on `applyQueue`; `applier` belongs to that thread until it is finished.
    var inFlight: InFlightBatch?
    let applyQueue = DispatchQueue(label: "cdcr-apply")
    /// Time spent polling for the batch being filled (debug logging).
    var pollTook = Duration.zero
    /// The applier's resolved tables as of the last finished batch: the next one is resolved against
    /// them while it is decoded, off the apply thread.
    var knownTables: [TableName: TargetTable] = [:]
    /// Next offset to read, per partition, as last committed by this process.
    var committed: [TopicPartition: Int64] = [:]
    /// Offsets of applied batches whose commit the broker has not accepted yet (rebalance in progress).
    var uncommitted: [TopicPartition: Int64] = [:]
    var rebalanceError: (any Error)?
    public internal(set) var counts = OutcomeCounts()
    /// Messages Kafka deleted before this process read them (see `RetentionWatch`).
    public internal(set) var lostToRetention = 0
    var retention = RetentionWatch()
    /// Log bounds asked of the broker when librdkafka had none cached (see `logBounds`).
    var askedLogBounds: [TopicPartition: (at: ContinuousClock.Instant, low: Int64, high: Int64)] = [:]
    /// When the first message arrived; the active period ends when `run` returns.
    var firstMessageAt: ContinuousClock.Instant?

    public init(settings: Settings, logger: Logger, stop: StopSignal, stopWhenCaughtUp: Bool = false, health: HealthState? = nil) {
        self.health = health
        self.settings = settings
        self.logger = logger
        self.stop = stop
        self.stopWhenCaughtUp = stopWhenCaughtUp
        self.decoder = EventDecoder(choice: settings.format)
        batching = BatchingStateMachine(limits: .init(maxEvents: settings.batchMaxEvents, maxWait: .milliseconds(settings.batchMaxWaitMs)), now: .now)
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
        var backoff = Backoff(capMs: settings.retryMaxBackoffMs)
        var action = batching.start(now: .now)
        run: while true {
            if stop.isStopped { action = batching.stopRequested() }
            if let rebalanceError { throw rebalanceError }
            switch action {
            case let .poll(timeout):
                if batching.watchingInFlight, let inFlight, inFlight.outcomes.isFinished {
                    action = batching.inFlightFinished(now: .now)
                    continue run
                }
                action = try pollOnce(consumer, timeout: timeout, backoff: &backoff)
            case .flush:
                try flush()
                backoff.reset()
                action = batching.handedOver(now: .now)
            case .settle:
                try finishInFlight()
                action = batching.settled(now: .now)
            case .idle:
                // Consume errors come as a queue of events, one per poll: a backoff that only grew
                // would sleep longer after each of them although the consumer recovered long ago.
                // It restarts with each batch and each idle period (as it did per batch window).
                backoff.reset()
                try commitPastMarkers(consumer)
                if stopWhenCaughtUp, try caughtUp(consumer) {
                    logger.info("caught up with every assigned partition; stopping")
                    break run
                }
                action = batching.idleDone(now: .now)
            case .stop:
                break run
            }
            if ContinuousClock.now - lastReport > .seconds(10) {
                lastReport = .now
                logger.info("progress", metadata: ["counts": "\(counts.json)"])
            }
            if ContinuousClock.now - lastPrune > .seconds(3_600) {
                lastPrune = .now
                if inFlight != nil {
                    try finishInFlight()
                    action = batching.settled(now: .now)
                }
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

    var summary: RunSummary {
        RunSummary(counts: counts, activeSeconds: firstMessageAt.map { (ContinuousClock.now - $0).seconds } ?? 0, lostToRetention: lostToRetention)
    }

    /// Polls the consumer once and tells the state machine what came back.
    private func pollOnce(_ consumer: KafkaConsumer, timeout: Duration, backoff: inout Backoff) throws -> BatchingStateMachine.Action {
        let started = ContinuousClock.now
        defer { pollTook += ContinuousClock.now - started }
        do {
            // Rebalance callbacks run inside `poll` (see `rebalanced`).
            guard let message = try consumer.poll(timeoutMs: Self.milliseconds(timeout)) else {
                return batching.pollReturnedNothing(now: .now)
            }
            pending.append(message)
            let tp = TopicPartition(topic: message.topic, partition: message.partition)
            if let skipped = retention.read(tp, offset: message.offset) { checkRetention(skipped, before: message, tp, consumer) }
            if firstMessageAt == nil { firstMessageAt = .now }
            backoff.reset()
            return batching.messageReceived(now: .now)
        } catch {
            // Broker trouble surfaces here as transient consume errors: wait it out.
            guard case let .transient(reason) = ErrorClassifier.classify(error) else { throw error }
            logger.warning("consume failed, retrying", metadata: ["error": "\(error)", "reason": "\(reason)"])
            stop.sleep(ms: backoff.next())
            return batching.pollReturnedNothing(now: .now)
        }
    }

    /// A poll timeout in whole milliseconds, rounded up (librdkafka's unit; 0 does not wait).
    static func milliseconds(_ d: Duration) -> Int32 {
        guard d > .zero else { return 0 }
        let (s, atto) = d.components
        return Int32(clamping: s * 1_000 + (atto + 999_999_999_999_999) / 1_000_000_000_000_000)
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

    func firstPoison(_ decoded: [Result<DecodedMessage, PoisonError>]) -> (Int, PoisonError)? {
        for (i, r) in decoded.enumerated() { if case let .failure(p) = r { return (i, p) } }
        return nil
    }

    func position(_ m: KafkaMessage) -> SourcePosition {
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
