import CDCCore

/// The one outcome every consumed message ends in.
public enum EventOutcome: Equatable, Sendable {
    case applied
    /// Its change ID was already in the ledger (or earlier in the same batch).
    case duplicate
    /// The target already holds a newer version of the row.
    case stale
    case deadLettered(PoisonError)
    /// Nothing to do: a tombstone, a logical decoding message (Debezium `op: m`), or a truncate while
    /// `--apply-truncate` is off.
    case skipped(SkipKind)

    public enum SkipKind: String, Sendable { case tombstone, logicalMessage = "logical_message", truncateIgnored = "truncate_ignored" }

    /// Label for counters and logs.
    public var label: String {
        switch self {
        case .applied: "applied"
        case .duplicate: "duplicate"
        case .stale: "stale"
        case .deadLettered: "dead_lettered"
        case let .skipped(kind): kind.rawValue
        }
    }
}

/// Running totals of outcomes.
public struct OutcomeCounts: Sendable, Equatable {
    public var applied = 0, duplicate = 0, stale = 0, deadLettered = 0, tombstone = 0, logicalMessage = 0, truncateIgnored = 0

    public init() {}

    public mutating func add(_ o: EventOutcome) {
        switch o {
        case .applied: applied += 1
        case .duplicate: duplicate += 1
        case .stale: stale += 1
        case .deadLettered: deadLettered += 1
        case .skipped(.tombstone): tombstone += 1
        case .skipped(.logicalMessage): logicalMessage += 1
        case .skipped(.truncateIgnored): truncateIgnored += 1
        }
    }

    public mutating func add(_ other: OutcomeCounts) {
        applied += other.applied; duplicate += other.duplicate; stale += other.stale
        deadLettered += other.deadLettered; tombstone += other.tombstone
        logicalMessage += other.logicalMessage
        truncateIgnored += other.truncateIgnored
    }

    /// One-line JSON, printed by `cdcr run --stop-when-caught-up` on exit.
    public var json: String {
        "{\"applied\":\(applied),\"duplicate\":\(duplicate),\"stale\":\(stale),\"dead_lettered\":\(deadLettered),\"tombstone\":\(tombstone),\"logical_message\":\(logicalMessage),\"truncate_ignored\":\(truncateIgnored)}"
    }
}
