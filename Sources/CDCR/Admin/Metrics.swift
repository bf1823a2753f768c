import CDCCore
import CoreMetrics
import Foundation

/// The metrics cdcr emits through swift-metrics (the executable bootstraps a Prometheus backend).
/// Names follow Prometheus conventions: base units, `_total` counters, bounded label sets (tables
/// are catalog names, never raw event text).
public enum CDCRMetrics {
    /// Counts one committed batch's outcomes: `cdcr_events_total{topic,table,operation,outcome}`,
    /// `cdcr_batch_events`, `cdcr_batch_duration_seconds`, `cdcr_apply_latency_seconds`.
    static func recordBatch(
        topics: [String], decoded: [Result<DecodedMessage, PoisonError>], outcomes: [EventOutcome],
        tableFor: (ChangeEvent) -> String, took: Duration, now: Date = Date()
    ) {
        var counts: [[String]: Int] = [:]
        let latency = Timer(label: "cdcr_apply_latency_seconds")
        let nowMicros = Int64(now.timeIntervalSince1970 * 1_000_000)
        for (i, outcome) in outcomes.enumerated() {
            var table = "", operation = "unknown"
            switch decoded[i] {
            case let .success(.change(e)):
                table = tableFor(e)
                operation = e.operation.rawValue.lowercased()
                if case .applied = outcome, let ts = e.timestampMicros, nowMicros > ts {
                    latency.recordNanoseconds((nowMicros - ts) * 1_000)
                }
            case .success(.tombstone): operation = "tombstone"
            case let .success(.truncate(t, _)):
                table = tableFor(ChangeEvent(changeID: "", table: t, operation: .delete, key: [], row: nil, version: nil, timestampMicros: nil, format: .debezium))
                operation = "truncate"
            case .failure: break
            }
            // Only tables that resolved against the catalog become label values.
            if case .deadLettered = outcome { table = "" }
            counts[[topics[i], table, operation, outcome.metricLabel], default: 0] += 1
        }
        for (labels, n) in counts {
            Counter(label: "cdcr_events_total", dimensions: [
                ("topic", labels[0]), ("table", labels[1]), ("operation", labels[2]), ("outcome", labels[3]),
            ]).increment(by: Int64(n))
        }
        Recorder(label: "cdcr_batch_events", aggregate: true).record(outcomes.count)
        Timer(label: "cdcr_batch_duration_seconds").recordNanoseconds(Int64(took.components.seconds) * 1_000_000_000 + took.components.attoseconds / 1_000_000_000)
    }

    static func recordRetry(_ reason: String) {
        Counter(label: "cdcr_retries_total", dimensions: [("reason", reason)]).increment()
    }

    static func recordGapFill(_ counts: ReplayCounts) {
        for (outcome, n) in [("applied", counts.appliedNow), ("already_applied", counts.alreadyApplied), ("stale", counts.stale), ("failed", counts.failed)] {
            Counter(label: "cdcr_gap_fill_changes_total", dimensions: [("outcome", outcome)]).increment(by: Int64(n))
        }
        Gauge(label: "cdcr_gap_fill_last_success_timestamp_seconds").record(Date().timeIntervalSince1970)
    }

    public static func recordBuildInfo(version: String) {
        Gauge(label: "cdcr_build_info", dimensions: [("version", version)]).record(1)
    }

    static func recordLag(_ report: LagReport) {
        for p in report.partitions {
            let dims = [("topic", p.topic), ("partition", String(p.partition))]
            Gauge(label: "cdcr_consumer_lag_messages", dimensions: dims).record(Double(p.lag))
            if let s = p.lagSeconds { Gauge(label: "cdcr_consumer_lag_seconds", dimensions: dims).record(s) }
        }
    }
}

extension EventOutcome {
    /// The `outcome` label: applied, duplicate, stale, dead_lettered, skipped.
    var metricLabel: String {
        switch self {
        case .skipped: "skipped"
        default: label
        }
    }
}
