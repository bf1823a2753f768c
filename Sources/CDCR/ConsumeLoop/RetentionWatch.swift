import CDCKafka

/// Notices messages that Kafka deleted (retention, `DeleteRecords`) before the applier read them.
///
/// librdkafka answers a position that is no longer in the log by jumping to `auto.offset.reset`
/// (earliest, for cdcr) and only prints a warning, so the changes in between would be skipped without
/// a trace. This remembers, per assigned partition, the next offset the applier expects (the group's
/// committed offset at assignment, then one past each message); when a message skips past it, the
/// caller checks the skipped range against the partition's log start. Skips are normal on their own
/// (compacted topics, transaction markers): only the part below the log start is lost.
struct RetentionWatch {
    private var next: [TopicPartition: Int64] = [:]

    /// The next message of `tp` should be at `offset` (a negative offset, "none committed", sets
    /// no expectation: a new group starts wherever `auto.offset.reset` puts it).
    mutating func expect(_ tp: TopicPartition, at offset: Int64) {
        next[tp] = offset >= 0 ? offset : nil
    }

    mutating func forget(_ tp: TopicPartition) { next[tp] = nil }

    /// The next offset of `tp` the applier expects, if it watches the partition.
    func expected(_ tp: TopicPartition) -> Int64? { next[tp] }

    /// The consumer's position of `tp` moved to `position` without a message (transaction markers,
    /// a log emptied by retention): returns the offsets skipped, if any, and expects `position` next.
    mutating func moved(_ tp: TopicPartition, to position: Int64) -> Range<Int64>? {
        guard let expected = next[tp] else { return nil }
        next[tp] = max(expected, position)
        return position > expected ? expected..<position : nil
    }

    /// Nothing was consumed from `tp` since it was assigned and its log, `low..<high`, holds nothing
    /// to read: when the log starts after the expected offset, retention emptied it past the resume
    /// position. Returns the offsets lost (and expects `low` next), or nil.
    mutating func emptied(_ tp: TopicPartition, low: Int64, high: Int64) -> Range<Int64>? {
        guard let expected = next[tp], low == high, low > expected else { return nil }
        next[tp] = low
        return expected..<low
    }

    /// Records that `offset` of `tp` was read; returns the offsets skipped before it, if any.
    mutating func read(_ tp: TopicPartition, offset: Int64) -> Range<Int64>? {
        let expected = next.updateValue(offset + 1, forKey: tp)
        guard let expected, offset > expected else { return nil }
        return expected..<offset
    }

    /// The part of `skipped` that a log starting at `logStart` no longer holds.
    static func lost(_ skipped: Range<Int64>, logStart: Int64) -> Range<Int64>? {
        let end = min(logStart, skipped.upperBound)
        return end > skipped.lowerBound ? skipped.lowerBound..<end : nil
    }
}
