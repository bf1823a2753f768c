import CDCCore
import CDCPostgres
import Foundation

/// A day's counts for one table and kind, a table, or the whole report (docs/RECONCILE.md, "Reports").
/// A day is a UTC calendar day; each count is of discrepancies whose event fell in it.
public struct ReportCounts: Sendable, Equatable {
    /// First seen that day (new discrepancies).
    public var found = 0
    /// Repaired automatically that day (`resolved_at`).
    public var autoRepaired = 0
    /// Entered the review queue that day (`queued_at`), whatever was decided later.
    public var queued = 0
    /// Gone that day without a repair: the stream caught up.
    public var resolvedByStream = 0
    /// Approved / rejected by a person that day (`decided_at`).
    public var approved = 0
    public var rejected = 0
    /// Approved items applied that day (`applied_at`).
    public var applied = 0
    /// Open or queued at the end of the day (found by then, not resolved by then).
    public var openAtEnd = 0
    /// Approved by the end of the day and not applied by then.
    public var awaitingApply = 0

    public init() {}

    /// Resolved that day: by the stream, approved or rejected.
    public var resolved: Int { resolvedByStream + approved + rejected }

    /// Of the discrepancies the repair policy acted on that day, the share it fixed without a person:
    /// `auto_repaired / (auto_repaired + queued)`; nil when it acted on none.
    public var autoCorrectionRate: Double? {
        autoRepaired + queued == 0 ? nil : Double(autoRepaired) / Double(autoRepaired + queued)
    }

    var isEmpty: Bool { self == ReportCounts() }

    mutating func add(_ o: ReportCounts) {
        found += o.found; autoRepaired += o.autoRepaired; queued += o.queued; resolvedByStream += o.resolvedByStream
        approved += o.approved; rejected += o.rejected; applied += o.applied; openAtEnd += o.openAtEnd; awaitingApply += o.awaitingApply
    }
}

/// One table's part of the report.
public struct TableReport: Sendable {
    public let table: TableName
    public var kinds: [(kind: DiscrepancyKind, counts: ReportCounts)] = []
    public var totals = ReportCounts()
    public var trend7 = DriftTrend(daily: [])
    public var trend30 = DriftTrend(daily: [])
    /// Runs covering the table that finished that day.
    public var finishedRuns = 0
    public var audit = AuditStatus.ok
    public var auditReasons: [String] = []
}

/// `cdcr report daily`: per table and kind what was found, auto-repaired, queued and resolved on a
/// day, the auto-correction rate, the 7- and 30-day trend of new discrepancies, and the migration
/// audit status. Read from `cdcr.discrepancies` and `cdcr.reconcile_runs` only.
public struct DailyReport: Sendable {
    /// `YYYY-MM-DD` (UTC).
    public let date: String
    public let overloadLimit: Int
    public var tables: [TableReport] = []
    public var totals = ReportCounts()
    public var trend7 = DriftTrend(daily: [])
    public var trend30 = DriftTrend(daily: [])
    /// Runs started that day, by status.
    public var runs: [(status: String, count: Int)] = []
    public var audit = AuditStatus.ok
    public var auditReasons: [String] = []

    /// The default overload limit: the default automatic-repair limit per table.
    public static let defaultOverloadLimit = 1_000

    /// Builds the report of `date` (any `date` input PostgreSQL reads; nil: today, UTC).
    public static func build(date: String?, overloadLimit: Int = defaultOverloadLimit, on conn: PGConnection) throws -> DailyReport {
        let day: String
        do {
            day = try conn.query("SELECT coalesce($1::date, (now() AT TIME ZONE 'UTC')::date)::text", [date]).scalar ?? ""
        } catch {
            throw ReviewError(.usage, "--date '\(date ?? "")' is not a date (YYYY-MM-DD): \(error.message)")
        }
        var report = DailyReport(date: day, overloadLimit: overloadLimit)
        let bounds = "($1::date)::timestamp AT TIME ZONE 'UTC'"
        let end = "($1::date + 1)::timestamp AT TIME ZONE 'UTC'"
        func inDay(_ column: String) -> String { "\(column) >= \(bounds) AND \(column) < \(end)" }
        let counts = try conn.query("""
            SELECT table_name, kind,
                   count(*) FILTER (WHERE \(inDay("first_seen_at"))),
                   count(*) FILTER (WHERE resolution = 'auto_repaired' AND \(inDay("resolved_at"))),
                   count(*) FILTER (WHERE \(inDay("queued_at"))),
                   count(*) FILTER (WHERE resolution = 'resolved_by_stream' AND \(inDay("resolved_at"))),
                   count(*) FILTER (WHERE resolution = 'approved' AND \(inDay("decided_at"))),
                   count(*) FILTER (WHERE resolution = 'rejected' AND \(inDay("decided_at"))),
                   count(*) FILTER (WHERE resolution = 'approved' AND \(inDay("applied_at"))),
                   count(*) FILTER (WHERE resolved_at IS NULL OR resolved_at >= \(end)),
                   count(*) FILTER (WHERE resolution = 'approved' AND decided_at < \(end) AND (applied_at IS NULL OR applied_at >= \(end)))
            FROM cdcr.discrepancies
            WHERE first_seen_at < \(end)
              -- Only rows that can count: anything decided, queued or resolved that day also has
              -- resolved_at that day or later (resolve() sets it with the decision), or none yet.
              AND (first_seen_at >= \(bounds) OR resolved_at IS NULL OR resolved_at >= \(bounds) OR applied_at >= \(bounds)
                   OR (resolution = 'approved' AND applied_at IS NULL))
            GROUP BY 1, 2 ORDER BY 1, 2
            """, [day]).rows
        var byTable: [TableName: TableReport] = [:]
        for r in counts {
            var c = ReportCounts()
            let n = r[2...].map { Int($0 ?? "") ?? 0 }
            (c.found, c.autoRepaired, c.queued, c.resolvedByStream, c.approved, c.rejected, c.applied, c.openAtEnd, c.awaitingApply) =
                (n[0], n[1], n[2], n[3], n[4], n[5], n[6], n[7], n[8])
            guard !c.isEmpty, let kind = DiscrepancyKind(rawValue: r[1] ?? "") else { continue }
            let table = TableName(parsing: r[0] ?? "")
            byTable[table, default: TableReport(table: table)].kinds.append((kind, c))
        }
        // New discrepancies per table and day over the 30 days ending on `day`.
        let daily = try conn.query("""
            SELECT table_name, ($1::date - (first_seen_at AT TIME ZONE 'UTC')::date), count(*)
            FROM cdcr.discrepancies WHERE first_seen_at >= \(bounds) - interval '29 days' AND first_seen_at < \(end)
            GROUP BY 1, 2
            """, [day]).rows
        var series: [TableName: [Int]] = [:]
        for r in daily {
            guard let back = Int(r[1] ?? ""), (0..<30).contains(back) else { continue }
            let table = TableName(parsing: r[0] ?? "")
            series[table, default: Array(repeating: 0, count: 30)][29 - back] += Int(r[2] ?? "") ?? 0
        }
        // Runs started that day, and each job's last finished run by the end of it.
        let dayRuns = try conn.query("""
            SELECT status, array_to_json(tables)::text, (finished_at IS NOT NULL AND finished_at < \(end))
            FROM cdcr.reconcile_runs WHERE \(inDay("started_at"))
            """, [day]).rows
        let lastRuns = try conn.query("""
            SELECT DISTINCT ON (job) run_id, status, array_to_json(tables)::text FROM cdcr.reconcile_runs
            WHERE finished_at IS NOT NULL AND finished_at < \(end) ORDER BY job, finished_at DESC, run_id DESC
            """, [day]).rows
        var runCounts: [String: Int] = [:]
        var finishedBy: [TableName: Int] = [:]
        for r in dayRuns {
            runCounts[r[0] ?? "", default: 0] += 1
            let tables = ReconcileStore.stringArray(r[1]).map { TableName(parsing: $0) }
            if r[2] == "t" && r[0] != "error" && r[0] != "timeout" { for t in tables { finishedBy[t, default: 0] += 1 } }
            for t in tables where byTable[t] == nil { byTable[t] = TableReport(table: t) }
        }
        var failedBy: [TableName: [String]] = [:]
        for r in lastRuns where r[1] == "error" || r[1] == "timeout" {
            for t in ReconcileStore.stringArray(r[2]).map({ TableName(parsing: $0) }) {
                failedBy[t, default: []].append(r[0] ?? "")
                if byTable[t] == nil { byTable[t] = TableReport(table: t) }
            }
        }
        for t in series.keys where byTable[t] == nil { byTable[t] = TableReport(table: t) }
        report.runs = runCounts.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }

        var allDaily = Array(repeating: 0, count: 30)
        for table in byTable.keys.sorted() {
            var t = byTable[table]!
            for k in t.kinds { t.totals.add(k.counts) }
            let s = series[table] ?? Array(repeating: 0, count: 30)
            for i in 0..<30 { allDaily[i] += s[i] }
            t.trend7 = DriftTrend(daily: Array(s.suffix(7)))
            t.trend30 = DriftTrend(daily: s)
            t.finishedRuns = finishedBy[table] ?? 0
            (t.audit, t.auditReasons) = AuditStatus.evaluate(
                failedRuns: failedBy[table] ?? [], rejected: t.totals.rejected, openAtEnd: t.totals.openAtEnd,
                awaitingApply: t.totals.awaitingApply, queued: t.totals.queued, finishedRuns: t.finishedRuns, overloadLimit: overloadLimit)
            report.totals.add(t.totals)
            report.tables.append(t)
        }
        report.trend7 = DriftTrend(daily: Array(allDaily.suffix(7)))
        report.trend30 = DriftTrend(daily: allDaily)
        report.audit = report.tables.map(\.audit).max() ?? .ok
        report.auditReasons = report.tables.filter { $0.audit == report.audit && $0.audit != .ok }
            .flatMap { t in t.auditReasons.map { "\(t.table): \($0)" } }
        if report.tables.isEmpty {
            report.audit = .partial
            report.auditReasons = ["no reconcile run and no discrepancy recorded by then"]
        }
        return report
    }
}
