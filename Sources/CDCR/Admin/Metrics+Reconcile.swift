import CDCCore
import CDCPostgres
import Foundation

/// The reconcile metrics (docs/RECONCILE.md, config/alerts.yml): runs by status, last success,
/// live discrepancies per table and kind, the review queue, automatic repairs and mass drift.
enum ReconcileMetricsUpdate {
    /// Every series a job can move, at 0 (or its known value), so `increase()` sees the first
    /// event and "no success within twice the schedule" counts from the scheduler's start.
    static func prepare(_ job: ReconcileJob, tables: [TableName], lastSuccess: Double?, startedAt: Date) {
        for status in RunStatus.allCases where status != .running {
            CDCRMetrics.counter("cdcr_reconcile_runs_total", [("job", job.name), ("status", status.rawValue)]).increment(by: Int64(0))
        }
        for t in tables {
            CDCRMetrics.counter("cdcr_reconcile_auto_repaired_total", [("table", t.description)]).increment(by: Int64(0))
            CDCRMetrics.counter("cdcr_reconcile_mass_drift_total", [("table", t.description)]).increment(by: Int64(0))
        }
        CDCRMetrics.gauge("cdcr_reconcile_last_success_timestamp_seconds", [("job", job.name)])
            .set(to: lastSuccess ?? startedAt.timeIntervalSince1970)
        CDCRMetrics.gauge("cdcr_reconcile_schedule_interval_seconds", [("job", job.name)])
            .set(to: Double(job.schedule.longestGap(from: Int64(startedAt.timeIntervalSince1970))))
    }

    /// After a run: its status, and the live discrepancies and review queue as the store has them.
    /// Returns how many discrepancies of `tables` are open or queued.
    static func afterRun(job: String, status: RunStatus, tables: [TableName], on conn: PGConnection) throws -> Int {
        CDCRMetrics.counter("cdcr_reconcile_runs_total", [("job", job), ("status", status.rawValue)]).increment()
        if status == .ok || status == .drift {
            CDCRMetrics.gauge("cdcr_reconcile_last_success_timestamp_seconds", [("job", job)]).set(to: Date().timeIntervalSince1970)
        }
        let live = try ReconcileStore.liveCounts(on: conn)
        var byLabels: [String: Int] = [:]
        for l in live { byLabels[l.table + "\u{0}" + l.kind] = l.count }
        // Bounded label set: the run's tables (catalog names) times the six kinds, plus the
        // tables live discrepancies name (all catalog names too).
        let names = Set(tables.map(\.description) + live.map(\.table))
        var remaining = 0
        for table in names {
            for kind in DiscrepancyKind.allCases {
                let n = byLabels[table + "\u{0}" + kind.rawValue] ?? 0
                CDCRMetrics.gauge("cdcr_reconcile_discrepancies", [("table", table), ("kind", kind.rawValue)]).set(to: Double(n))
                if tables.contains(where: { $0.description == table }) { remaining += n }
            }
        }
        try reviewQueue(on: conn)
        return remaining
    }

    /// `cdcr_review_open_items` from the table: after each run, and after each review request the
    /// admin server answers (a decision made there changes it at once; one made with the `cdcr
    /// review` command in another process shows at the daemon's next run or review request).
    static func reviewQueue(on conn: PGConnection) throws {
        CDCRMetrics.gauge("cdcr_review_open_items").set(to: Double(try ReconcileStore.queuedCount(on: conn)))
    }

    static func autoRepaired(table: TableName, rows: Int) {
        CDCRMetrics.counter("cdcr_reconcile_auto_repaired_total", [("table", table.description)]).increment(by: Int64(rows))
    }

    static func massDrift(table: TableName) {
        CDCRMetrics.counter("cdcr_reconcile_mass_drift_total", [("table", table.description)]).increment()
    }
}
