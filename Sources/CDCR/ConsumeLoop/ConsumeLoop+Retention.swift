import CDCCore
import CDCKafka
import Foundation
import Logging

/// Retention: messages Kafka deleted before the applier read them (see `RetentionWatch`).
extension ConsumeLoop {
    /// Offsets of `tp` were skipped before `message`: normal for compaction and transaction markers,
    /// a loss when the log no longer starts before them. The log start comes from librdkafka's cache
    /// (every fetch response carries it, so it is current when the message is); only a broker that
    /// does not send it makes cdcr ask — at most every 10 s per partition, as a compacted topic skips
    /// offsets at nearly every message, and never for a single skipped offset (a transaction marker).
    func checkRetention(_ skipped: Range<Int64>, before message: KafkaMessage, _ tp: TopicPartition, _ consumer: KafkaConsumer) {
        let logStart = consumer.cachedLowWatermark(tp) ?? (skipped.count > 1 ? logBounds(tp, consumer)?.low : nil) ?? -1
        guard let lost = RetentionWatch.lost(skipped, logStart: logStart) else { return }
        reportLost(lost, tp, firstRetainedAtMillis: message.timestampMillis)
    }

    /// Counts, and logs at error level, offsets of `tp` Kafka deleted before they were read.
    func reportLost(_ lost: Range<Int64>, _ tp: TopicPartition, firstRetainedAtMillis: Int64?) {
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

    /// `tp`'s log start, from librdkafka's cache or (at most every 10 s) the broker.
    func logStart(_ tp: TopicPartition, _ consumer: KafkaConsumer) -> Int64? {
        logBounds(tp, consumer)?.low
    }

    /// `tp`'s log start and end, from librdkafka's cache when it has them, else from the broker at
    /// most every 10 s per partition (a compacted topic skips offsets at nearly every message, and an
    /// idle loop comes here every batch window); in between, the broker's last answer. The log start
    /// only moves forward, so an older answer never reports a loss that is not one.
    func logBounds(_ tp: TopicPartition, _ consumer: KafkaConsumer) -> (low: Int64, high: Int64)? {
        if let cached = consumer.cachedWatermarks(tp) { return cached }
        if let asked = askedLogBounds[tp], ContinuousClock.now - asked.at < .seconds(10) { return (asked.low, asked.high) }
        guard let marks = try? consumer.watermarks(tp, timeoutMs: 5_000) else { return nil }
        askedLogBounds[tp] = (.now, marks.low, marks.high)
        return marks
    }
}
