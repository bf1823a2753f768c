import CDCCore
import CDCKafka
import Foundation
import Prometheus

/// The metrics cdcr exports on `/metrics` (swift-prometheus registry, with HELP texts, so the
/// exposition passes `promtool check metrics`). Names follow Prometheus conventions: base units,
/// `_total` counters, bounded label sets (tables are catalog names, never raw event text).
public enum CDCRMetrics {
    /// The process's registry; the admin server emits it.
    public static let registry = PrometheusCollectorRegistry()

    static let help: [String: String] = [
        "cdcr_events_total": "Consumed change events by topic, target table, operation and outcome.",
        "cdcr_batch_duration_seconds": "Time to decode, apply, dead-letter and commit one batch.",
        "cdcr_batch_events": "Events per applied batch.",
        "cdcr_apply_latency_seconds": "Kafka message timestamp to the commit of the target transaction that applied it, per message.",
        "cdcr_source_latency_seconds": "Source change time (the event's own timestamp) to the commit of the target transaction that applied it, per applied event.",
        "cdcr_retries_total": "Retried transient failures by reason.",
        "cdcr_kafka_lost_messages_total": "Messages Kafka deleted (retention) before the applier read them, per partition: their changes need a replay.",
        "cdcr_gap_fill_changes_total": "Changes replayed by the scheduled gap filler, by outcome.",
        "cdcr_gap_fill_last_success_timestamp_seconds": "Unix time of the last successful gap fill pass.",
        "cdcr_consumer_lag_messages": "Consumer group lag in messages per partition.",
        "cdcr_consumer_lag_seconds": "Age of the oldest unapplied message per partition.",
        "cdcr_build_info": "Build information; always 1.",
        "cdcr_apply_stalled_seconds": "Seconds the oldest batch not yet committed has waited: how long the stream has made no progress while messages wait; 0 when none waits.",
        "cdcr_consumer_lag_status": "Burrow status per partition: 0 OK, 1 WARN, 2 STALL, 3 STOP, 4 REWIND.",
        "cdcr_consumer_group_status": "Burrow verdict of the consumer group: 0 OK, 1 WARN, 2 ERR.",
        "cdcr_backfill_rows_total": "Rows a backfill read from the source and applied (or skipped by the version guard), per target table.",
        "cdcr_backfill_progress_ratio": "Progress of a backfill per target table: rows done over the source's estimated row count (1 when done).",
        "cdcr_reconcile_runs_total": "Reconcile runs by job and how they ended (ok, drift, error, timeout).",
        "cdcr_reconcile_discrepancies": "Discrepancies open or queued per target table and kind, as of the last reconcile run.",
        "cdcr_reconcile_last_success_timestamp_seconds": "Unix time a reconcile job last finished a run (ok or drift); the scheduler's start until it has.",
        "cdcr_reconcile_schedule_interval_seconds": "Longest gap between two scheduled slots of a reconcile job.",
        "cdcr_review_open_items": "Discrepancies waiting in the review queue (queued).",
        "cdcr_reconcile_auto_repaired_total": "Rows reconcile repaired automatically under the table's policy, per target table.",
        "cdcr_reconcile_mass_drift_total": "Reconcile runs that found more drift in a table than its guard rails allow to repair automatically (everything was queued).",
    ]

    static func descriptor(_ name: String) -> MetricNameDescriptor {
        MetricNameDescriptor(metricName: name, unitName: "", helpText: help[name] ?? name)
    }

    static func counter(_ label: String, _ dimensions: [(String, String)] = []) -> Prometheus.Counter {
        registry.makeCounter(descriptor: descriptor(label), labels: dimensions)
    }

    static func gauge(_ label: String, _ dimensions: [(String, String)] = []) -> Prometheus.Gauge {
        registry.makeGauge(descriptor: descriptor(label), labels: dimensions)
    }

    static func durationHistogram(_ label: String) -> DurationHistogram {
        registry.makeDurationHistogram(descriptor: descriptor(label), labels: [], buckets: [
            .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250),
            .milliseconds(500), .seconds(1), .seconds(2.5), .seconds(5), .seconds(10), .seconds(30), .seconds(60), .seconds(300),
        ])
    }

    /// Latency buckets: from the milliseconds of an idle stream to the minutes of a backlog.
    static func latencyHistogram(_ label: String) -> DurationHistogram {
        registry.makeDurationHistogram(descriptor: descriptor(label), labels: [], buckets: [
            .milliseconds(1), .milliseconds(2.5), .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50),
            .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(2.5), .seconds(5), .seconds(10),
            .seconds(30), .seconds(60),
        ])
    }

    static func valueHistogram(_ label: String) -> ValueHistogram {
        registry.makeValueHistogram(descriptor: descriptor(label), labels: [], buckets: [1, 10, 100, 500, 1_000, 5_000, 10_000, 20_000, 50_000, 100_000])
    }

    /// Counts one committed batch's outcomes: `cdcr_events_total{topic,table,operation,outcome}`,
    /// `cdcr_batch_events`, `cdcr_batch_duration_seconds`; and its latencies up to `committedAt`
    /// (when its target transaction committed): `cdcr_apply_latency_seconds` from each message's
    /// Kafka timestamp, `cdcr_source_latency_seconds` from each applied change's source time.
    /// Returns the former, in seconds (the status page's window).
    @discardableResult
    static func recordBatch(
        messages: [KafkaMessage], decoded: [Result<DecodedMessage, PoisonError>], outcomes: [EventOutcome],
        tableFor: (TableName) -> String, took: Duration, committedAt: Date
    ) -> [Double] {
        /// One label set; consecutive events usually share it, so runs are counted before any
        /// dictionary lookup or label string is made.
        struct Labels: Hashable {
            var topic: String, table: TableName?, operation: String, outcome: String
        }
        var counts: [Labels: Int] = [:]
        var run: (labels: Labels, count: Int)?
        let sourceLatency = latencyHistogram("cdcr_source_latency_seconds")
        let applyLatency = latencyHistogram("cdcr_apply_latency_seconds")
        let nowMicros = Int64(committedAt.timeIntervalSince1970 * 1_000_000)
        var latencies: [Double] = []
        latencies.reserveCapacity(messages.count)
        for (i, outcome) in outcomes.enumerated() {
            // A producer's clock a little ahead of ours reads as 0, not as a negative latency.
            if let ms = messages[i].timestampMillis, ms > 0 {
                let micros = max(0, nowMicros - ms * 1_000)
                applyLatency.recordNanoseconds(micros * 1_000)
                latencies.append(Double(micros) / 1e6)
            }
            var labels = Labels(topic: messages[i].topic, table: nil, operation: "unknown", outcome: outcome.metricLabel)
            switch decoded[i] {
            case let .success(.change(e)):
                labels.table = e.table
                labels.operation = e.operation.metricLabel
                if case .applied = outcome, let ts = e.timestampMicros, nowMicros > ts {
                    sourceLatency.recordNanoseconds((nowMicros - ts) * 1_000)
                }
            case .success(.tombstone): labels.operation = "tombstone"
            case .success(.logicalMessage): labels.operation = "logical_message"
            case let .success(.truncate(t, _)):
                labels.table = t
                labels.operation = "truncate"
            case .failure: break
            }
            // Only tables that resolved against the catalog become label values.
            if case .deadLettered = outcome { labels.table = nil }
            if let r = run, r.labels == labels {
                run!.count += 1
            } else {
                if let r = run { counts[r.labels, default: 0] += r.count }
                run = (labels, 1)
            }
        }
        if let r = run { counts[r.labels, default: 0] += r.count }
        for (labels, n) in counts {
            counter("cdcr_events_total", [
                ("topic", labels.topic), ("table", labels.table.map(tableFor) ?? ""), ("operation", labels.operation), ("outcome", labels.outcome),
            ]).increment(by: Int64(n))
        }
        valueHistogram("cdcr_batch_events").record(Double(outcomes.count))
        durationHistogram("cdcr_batch_duration_seconds").recordNanoseconds(Int64(took.components.seconds) * 1_000_000_000 + took.components.attoseconds / 1_000_000_000)
        return latencies
    }

    static func recordStall(seconds: Double) {
        gauge("cdcr_apply_stalled_seconds").set(to: seconds)
    }

    static func recordRetry(_ reason: String) {
        counter("cdcr_retries_total", [("reason", reason)]).increment()
    }

    static func recordLostToRetention(topic: String, partition: Int32, messages: Int) {
        counter("cdcr_kafka_lost_messages_total", [("topic", topic), ("partition", String(partition))]).increment(by: Int64(messages))
    }

    static func recordGapFill(_ counts: ReplayCounts) {
        for (outcome, n) in [("applied", counts.appliedNow), ("already_applied", counts.alreadyApplied), ("stale", counts.stale), ("failed", counts.failed)] {
            counter("cdcr_gap_fill_changes_total", [("outcome", outcome)]).increment(by: Int64(n))
        }
        gauge("cdcr_gap_fill_last_success_timestamp_seconds").set(to: Date().timeIntervalSince1970)
    }

    static func recordBackfill(_ p: BackfillProgress, rows: Int64, done: Bool) {
        counter("cdcr_backfill_rows_total", [("table", p.table.description)]).increment(by: rows)
        gauge("cdcr_backfill_progress_ratio", [("table", p.table.description)]).set(to: done ? 1 : p.ratio)
    }

    public static func recordBuildInfo(version: String) {
        gauge("cdcr_build_info", [("version", version)]).set(to: 1)
    }

    static func recordLag(_ report: LagReport) {
        for p in report.partitions {
            let dims = [("topic", p.topic), ("partition", String(p.partition))]
            gauge("cdcr_consumer_lag_messages", dims).set(to: Double(p.lag))
            if let s = p.lagSeconds { gauge("cdcr_consumer_lag_seconds", dims).set(to: s) }
            gauge("cdcr_consumer_lag_status", dims).set(to: Double(LagStatus.allCases.firstIndex(of: p.status)!))
        }
        let verdict: Double = switch report.status { case .ok: 0; case .warn: 1; case .err: 2 }
        gauge("cdcr_consumer_group_status", [("group", report.group)]).set(to: verdict)
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
