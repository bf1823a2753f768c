import CDCCore
import CDCKafka
import CDCPostgres
import Foundation
import Logging
import ServiceLifecycle
import Synchronization

/// Lag of one partition of the group.
public struct PartitionLag: Sendable {
    public let topic: String
    public let partition: Int32
    /// Next offset the group will read; negative when it has committed nothing.
    public let committed: Int64
    public let end: Int64
    public let lag: Int64
    /// Age of the oldest unapplied message (the one at the committed offset); 0 without lag.
    public let lagSeconds: Double?
    public let status: LagStatus

    var json: String {
        "{\"topic\":\(JSONValue.string(topic).serialized),\"partition\":\(partition),\"committed\":\(committed),\"end\":\(end),\"lag\":\(lag),\"lag_seconds\":\(lagSeconds.map { String(format: "%.3f", $0) } ?? "null"),\"status\":\"\(status.rawValue)\"}"
    }
}

/// The group's lag at one moment, with Burrow statuses over the sample history.
public struct LagReport: Sendable {
    public let group: String
    public let partitions: [PartitionLag]
    public let window: Double

    public var totalLag: Int64 { partitions.reduce(0) { $0 + $1.lag } }
    public var worst: PartitionLag? { partitions.max { ($0.status, $0.lag) < ($1.status, $1.lag) } }
    public var status: GroupStatus { LagEvaluator.group(partitions.map(\.status)) }

    /// The JSON of `cdcr lag --json` (and of `GET /lag`).
    public var json: String {
        let worst = self.worst.map { "{\"topic\":\(JSONValue.string($0.topic).serialized),\"partition\":\($0.partition),\"lag\":\($0.lag),\"status\":\"\($0.status.rawValue)\"}" } ?? "null"
        return "{\"group\":\(JSONValue.string(group).serialized),\"status\":\"\(status.rawValue)\",\"total_lag\":\(totalLag),\"worst\":\(worst),\"window_seconds\":\(Int(window)),\"partitions\":[\(partitions.map(\.json).joined(separator: ","))]}"
    }
}

/// Samples the configured group's committed offsets and log ends, whether or not the applier runs.
/// Samples are kept in the target (`cdcr.lag_samples`) when one is configured, so one-shot
/// `cdcr lag` calls, `--watch` and the daemon share one history; otherwise in memory.
public final class LagMonitor {
    private let settings: Settings
    private let window: Double
    private let groupView: KafkaConsumer
    private let reader: KafkaConsumer
    private let store: PGConnection?
    private var memory: [TopicPartition: [LagSample]] = [:]

    public init(settings: Settings, windowSeconds: Double) throws {
        self.settings = settings
        self.window = windowSeconds
        // Never subscribes or commits: it only reads the group's committed offsets.
        groupView = try KafkaConsumer(properties: settings.kafkaClientProperties(extra: [("group.id", settings.group), ("client.id", "cdcr-lag")])) { _ in }
        reader = try KafkaConsumer(properties: settings.kafkaClientProperties(extra: [
            ("group.id", "cdcr-lag-reader"), ("enable.partition.eof", "false"), ("client.id", "cdcr-lag-reader"),
        ])) { _ in }
        if let url = settings.targetURL {
            let conn = try TargetConnection.open(url, applicationName: "cdcr-lag")
            try BookkeepingSchema.install(on: conn)
            store = conn
        } else {
            store = nil
        }
    }

    public func close() {
        groupView.close()
        reader.close()
        store?.close()
    }

    public func sample() throws -> LagReport {
        var tps: [TopicPartition] = []
        for topic in settings.topics {
            for p in try groupView.partitions(of: topic) { tps.append(TopicPartition(topic: topic, partition: p)) }
        }
        let committed = try groupView.committed(tps)
        let ends = try groupView.endOffsets(tps)
        let now = Date().timeIntervalSince1970
        var measured: [(TopicPartition, LagSample, [LagSample])] = []
        var oldestUnread: [TopicPartitionOffset] = []
        for tp in tps.sorted() {
            let sample = LagSample(time: now, committed: committed[tp] ?? -1, end: ends[tp] ?? 0)
            measured.append((tp, sample, try record(tp, sample)))
            if sample.lag > 0 {
                let at = sample.committed >= 0 ? sample.committed : try groupView.watermarks(tp).low
                oldestUnread.append(TopicPartitionOffset(topic: tp.topic, partition: tp.partition, offset: at))
            }
        }
        // The age of each lagging partition's oldest unread message, all read in one go: one slow or
        // empty partition costs the timeout once, not once per partition.
        let written = try reader.timestamps(at: oldestUnread)
        let out = measured.map { tp, sample, history in
            PartitionLag(topic: tp.topic, partition: tp.partition, committed: sample.committed, end: sample.end, lag: sample.lag,
                         lagSeconds: sample.lag > 0 ? written[tp].map { max(0, now - Double($0) / 1000) } : 0,
                         status: LagEvaluator.evaluate(history, window: window, now: now))
        }
        return LagReport(group: settings.group, partitions: out, window: window)
    }

    /// Stores the sample and returns the partition's history that matters for the window.
    private func record(_ tp: TopicPartition, _ s: LagSample) throws -> [LagSample] {
        guard let store else {
            memory[tp, default: []].append(s)
            memory[tp] = memory[tp]!.filter { $0.time >= s.time - 4 * window }
            return memory[tp]!
        }
        let key: [String?] = [settings.group, tp.topic, String(tp.partition)]
        // Times are this process's clock throughout, so a skewed database clock cannot fake a STOP.
        try store.query("INSERT INTO cdcr.lag_samples (group_id, topic, partition, committed, end_offset, sampled_at) VALUES ($1, $2, $3, $4, $5, to_timestamp($6::float8))",
                        key + [String(s.committed), String(s.end), String(s.time)])
        try store.query("DELETE FROM cdcr.lag_samples WHERE group_id = $1 AND topic = $2 AND partition = $3 AND sampled_at < to_timestamp($4::float8)",
                        key + [String(s.time - 4 * window)])
        let rows = try store.query("""
            SELECT extract(epoch FROM sampled_at)::float8, committed, end_offset FROM cdcr.lag_samples
            WHERE group_id = $1 AND topic = $2 AND partition = $3 ORDER BY sampled_at
            """, key)
        return rows.rows.map { LagSample(time: Double($0[0]!)!, committed: Int64($0[1]!)!, end: Int64($0[2]!)!) }
    }
}

/// The one lag monitor of `cdcr run`, shared by the periodic sampler, `GET /lag` and the status
/// page: its Kafka clients and target connection are opened once (and again only after a failure),
/// samples are taken one at a time, and a caller content with a sample up to `maxAge` old gets the
/// last one again, so polling `/lag` hard neither opens clients per request nor loads the brokers.
public final class LagSampler: Sendable {
    private let settings: Settings
    private let state = Mutex<(monitor: UncheckedSendable<LagMonitor>?, last: (at: ContinuousClock.Instant, report: LagReport)?)>((nil, nil))

    public init(settings: Settings) {
        self.settings = settings
    }

    /// The group's lag, sampled now unless a sample at most `maxAge` old exists; every new sample
    /// also updates the lag metrics. Blocks (network and database): call it off the cooperative pool.
    public func report(maxAge: Duration = .zero) throws -> LagReport {
        let settings = self.settings
        return try state.withLock { s throws -> LagReport in
            if let last = s.last, ContinuousClock.now - last.at <= maxAge { return last.report }
            func sample() throws -> LagReport {
                do {
                    let monitor = try s.monitor?.value ?? LagMonitor(settings: settings, windowSeconds: 300)
                    s.monitor = UncheckedSendable(monitor)
                    let report = try monitor.sample()
                    CDCRMetrics.recordLag(report)
                    s.last = (.now, report)
                    return report
                } catch {
                    s.monitor?.value.close()
                    s.monitor = nil
                    throw error
                }
            }
            // A kept monitor's connections may have gone stale since (the target restarted, say):
            // then it is replaced and the sample taken once more, with fresh ones.
            let reused = s.monitor != nil
            do { return try sample() } catch where reused { return try sample() }
        }
    }

    public func close() {
        state.withLock { s in
            s.monitor?.value.close()
            s.monitor = nil
        }
    }
}

/// Samples the group's lag every `interval` inside `cdcr run`, so the `cdcr_consumer_lag_*` gauges
/// stay current for Prometheus and the status page's history fills in.
public final class LagSamplerService: Service, Sendable {
    private let sampler: LagSampler
    private let logger: Logger
    private let intervalSeconds: Int
    private let stop = StopSignal()

    public init(sampler: LagSampler, logger: Logger, intervalSeconds: Int = 15) {
        self.sampler = sampler
        self.logger = logger
        self.intervalSeconds = intervalSeconds
    }

    public func run() async throws {
        let (sampler, logger, stop, interval) = (self.sampler, self.logger, self.stop, self.intervalSeconds)
        try await runBlockingService(name: "cdcr-lag-sampler", stop: stop) {
            while !stop.isStopped {
                do {
                    _ = try sampler.report()
                } catch {
                    // Lag is observability: a failed sample is logged and retried, never fatal.
                    logger.debug("lag sample failed", metadata: ["error": "\(error)"])
                }
                stop.sleep(ms: interval * 1000)
            }
            sampler.close()
        }
    }
}
