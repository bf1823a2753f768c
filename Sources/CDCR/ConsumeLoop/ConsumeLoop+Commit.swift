import CDCCore
import CDCKafka
import Foundation
import Logging

/// Offsets: commits after each batch, past transaction markers when idle, at a rebalance; and
/// whether the stream is caught up.
extension ConsumeLoop {
    /// Commits the offsets of everything applied so far. During a group rebalance the broker refuses
    /// commits until this member has rejoined, which happens inside `poll`: so the offsets stay
    /// pending, the loop goes back to polling, and the revoke handler (or the next batch) commits them.
    /// Sleeping here instead would keep the member from rejoining until the group evicts it.
    func commitApplied(only partitions: Set<TopicPartition>? = nil) throws {
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

    func rebalanced(_ event: RebalanceEvent) {
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
            // This ran inside `poll`, outside the state machine's actions: tell it.
            batching.drained(now: .now)
            for p in parts {
                committed[p] = nil
                uncommitted[p] = nil
                retention.forget(p)
                askedLogBounds[p] = nil
            }
            health?.setAssigned(0)
        }
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
    func commitPastMarkers(_ consumer: KafkaConsumer) throws {
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

    /// The first of `assigned` whose next offset to read (from `position`, else the group's commit)
    /// is below its end offset; nil when all are at their end. An empty partition has end 0.
    func firstBehind(_ position: [TopicPartition: Int64], of assigned: [TopicPartition],
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
    func caughtUp(_ consumer: KafkaConsumer) throws -> Bool {
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
}

/// A commit refused because the group is rebalancing: not retried in place (see `commitApplied`).
struct DeferredCommit: Error {
    let error: KafkaError
}
