import CDCCore
import CDCKafka
import CDCPostgres
import Logging

/// `cdcr relay`: publishes the source change log to Kafka as native events, at least once.
///
/// Position is a transaction-id horizon, not a change_id: a change_id is drawn when a row is
/// written, but its transaction may commit much later, after larger change_ids were already
/// published. Each pass publishes exactly the changes of transactions in [previous horizon, current
/// horizon) — all of them ended — in change_id order, and stores the new horizon in the source only
/// after the broker acknowledged every message.
public final class Relay {
    private let source: PGConnection
    private let producer: KafkaProducer
    private let topic: String
    private let logger: Logger
    public var chunkSize = 5_000

    public init(source: PGConnection, settings: Settings, logger: Logger) throws {
        try SourceChangeLog.requireInstalled(on: source)
        self.source = source
        self.topic = settings.topics[0]
        self.logger = logger
        self.producer = try KafkaProducer(properties: settings.kafkaClientProperties(extra: [("client.id", "cdcr-relay")]))
    }

    /// One pass; returns how many changes were published.
    @discardableResult
    public func pass() throws -> Int {
        let from = Int64(try source.query("SELECT txid_horizon FROM cdcr.relay_position WHERE topic = $1", [topic]).scalar ?? "0") ?? 0
        let to = try SourceChangeLog.txidHorizon(on: source)
        guard to > from else { return 0 }
        let window = try SourceChangeLog.Window(on: source, filter: "txid >= $1 AND txid < $2", params: [String(from), String(to)])
        var last = window.start
        var published = 0
        while true {
            let entries = try window.chunk(after: last, limit: chunkSize, on: source)
            guard let tail = entries.last else { break }
            // Key = the row's key, so one row always lands in one partition and keeps its order.
            try producer.send(entries.map { OutgoingMessage(topic: topic, key: Array($0.key.utf8), value: Array($0.nativeJSON.utf8)) })
            published += entries.count
            last = tail.changeID
        }
        try source.query("""
            INSERT INTO cdcr.relay_position (topic, txid_horizon) VALUES ($1, $2)
            ON CONFLICT (topic) DO UPDATE SET txid_horizon = EXCLUDED.txid_horizon, updated_at = now()
            """, [topic, String(to)])
        if published > 0 { logger.info("relayed changes", metadata: ["count": "\(published)", "topic": "\(topic)"]) }
        return published
    }

    public func close() { producer.close() }
}
