import CDCCore
import CDCPostgres
import Foundation

extension StatusPage {
    /// The status page's reconciliation part: the review queue, the last runs, a chart of new
    /// discrepancies per day per table (inline SVG) and each table's health today.
    static func reconcileSection(on conn: PGConnection) -> String {
        do {
            return try reconcile(on: conn)
        } catch {
            return "<h2>Reconciliation</h2><p class=err>unavailable: \(esc(redactConnectionString("\(error)")))</p>"
        }
    }

    static func reconcile(on conn: PGConnection) throws -> String {
        var body = "<h2>Reconciliation</h2>"
        guard try conn.query("SELECT to_regclass('cdcr.discrepancies') IS NOT NULL AND to_regclass('cdcr.reconcile_runs') IS NOT NULL").scalar == "t" else {
            return body + "<p>no reconcile history yet (cdcr init creates its tables)</p>"
        }
        let live = try conn.query("""
            SELECT CASE WHEN resolution = 'approved' THEN 'approved' ELSE resolution END, count(*)::text FROM cdcr.discrepancies
            WHERE resolution IN ('open', 'queued') OR (resolution = 'approved' AND applied_at IS NULL) GROUP BY 1
            """).rows
        let count = Dictionary(live.map { ($0[0] ?? "", Int($0[1] ?? "") ?? 0) }, uniquingKeysWith: +)
        body += "<p id=review-queue>review queue: <b>\(count["queued"] ?? 0)</b> queued, <b>\(count["open"] ?? 0)</b> open,"
            + " <b>\(count["approved"] ?? 0)</b> approved and not yet applied · <a href=\"/ui/review\">review page</a></p>"

        let runs = try ReconcileStore.runs(limit: 10, on: conn)
        body += "<h3>Last runs</h3>"
        if runs.isEmpty {
            body += "<p>no reconcile run yet</p>"
        } else {
            body += "<table id=reconcile-runs><tr><th>run</th><th>job</th><th>kind</th><th>started</th><th>finished</th><th>status</th>"
                + "<th>found</th><th>new</th><th>auto-repaired</th><th>queued</th><th>by stream</th></tr>"
            for r in runs {
                let status = r.status == .ok ? "ok" : r.status == .drift ? "warn" : r.status == .running ? "" : "err"
                body += "<tr><td>\(esc(r.runID))</td><td>\(esc(r.job))</td><td>\(r.kind.rawValue)</td><td>\(esc(r.startedAt))</td>"
                    + "<td>\(esc(r.finishedAt ?? "–"))</td><td class='\(status)' title='\(esc(r.error ?? ""))'>\(r.status.rawValue)</td>"
                    + "<td>\(r.counts.found)</td><td>\(r.counts.newFound)</td><td>\(r.counts.autoRepaired)</td><td>\(r.counts.queued)</td>"
                    + "<td>\(r.counts.resolvedByStream)</td></tr>"
            }
            body += "</table>"
        }

        let report = try DailyReport.build(date: nil, on: conn)
        body += "<h3>New discrepancies per day, last 30 days</h3>"
        let days = try conn.query("SELECT to_char(d, 'YYYY-MM-DD') FROM generate_series($1::date - 29, $1::date, interval '1 day') d", [report.date])
            .rows.map { $0[0] ?? "" }
        body += driftChart(days: days, series: report.tables.map { ($0.table.description, $0.trend30.daily) })
        body += "<h3>Tables today (\(esc(report.date)), audit <span class=\(auditClass(report.audit))>\(report.audit.rawValue)</span>)</h3>"
        if report.tables.isEmpty {
            body += "<p>no table reconciled yet</p>"
        } else {
            body += "<table id=table-health><tr><th>table</th><th>audit</th><th>open or queued</th><th>found today</th><th>auto-repaired</th>"
                + "<th>trend 7 d</th><th>why</th></tr>"
            for t in report.tables {
                body += "<tr><td>\(esc(t.table.description))</td><td class=\(auditClass(t.audit))>\(t.audit.rawValue)</td>"
                    + "<td>\(t.totals.openAtEnd)</td><td>\(t.totals.found)</td><td>\(t.totals.autoRepaired)</td>"
                    + "<td>\(t.trend7.direction.rawValue)</td><td>\(esc(t.auditReasons.joined(separator: "; ")))</td></tr>"
            }
            body += "</table>"
        }
        return body
    }

    static func auditClass(_ s: AuditStatus) -> String {
        switch s {
        case .ok: "ok"
        case .partial: "warn"
        case .overload, .reject: "err"
        }
    }

    static let palette = ["#c33", "#36c", "#393", "#c80", "#939", "#099", "#663", "#c39"]

    /// Inline SVG: one line per table of new discrepancies per day, days along the bottom, a legend.
    static func driftChart(days: [String], series: [(name: String, daily: [Int])]) -> String {
        let w = 720.0, h = 220.0, left = 40.0, right = 10.0, top = 14.0, bottom = 40.0
        let shown = series.filter { $0.daily.contains { $0 > 0 } }
        guard !shown.isEmpty, days.count >= 2 else {
            return "<svg id=driftchart width=720 height=60 role=img aria-label='discrepancies per day'><text x=10 y=30>no discrepancy in the last 30 days</text></svg>"
        }
        let maxY = Double(max(1, shown.flatMap(\.daily).max() ?? 1))
        let n = Double(days.count - 1)
        func x(_ i: Int) -> Double { left + Double(i) / n * (w - left - right) }
        func y(_ v: Int) -> Double { h - bottom - Double(v) / maxY * (h - top - bottom) }
        var svg = "<svg id=driftchart width=720 height=\(Int(h) + 18 * ((shown.count + 2) / 3)) role=img aria-label='discrepancies per day per table'>"
        svg += "<rect x=\(Int(left)) y=\(Int(top)) width=\(Int(w - left - right)) height=\(Int(h - top - bottom)) fill=#fafafa stroke=#ccc />"
        svg += "<text x=4 y=\(Int(top) + 10) font-size=11>\(Int(maxY))</text><text x=4 y=\(Int(h - bottom))  font-size=11>0</text>"
        for (i, anchor) in [(0, "start"), (days.count / 2, "middle"), (days.count - 1, "end")] {
            svg += "<text x=\(String(format: "%.0f", x(i))) y=\(Int(h - bottom) + 16) font-size=11 text-anchor=\(anchor)>\(esc(days[i]))</text>"
        }
        for (k, s) in shown.enumerated() {
            let color = palette[k % palette.count]
            let points = s.daily.enumerated().map { String(format: "%.1f,%.1f", x($0.offset), y($0.element)) }.joined(separator: " ")
            svg += "<polyline class=series fill=none stroke='\(color)' stroke-width=2 points='\(points)'><title>\(esc(s.name))</title></polyline>"
            for (i, v) in s.daily.enumerated() where v > 0 {
                svg += "<circle cx=\(String(format: "%.1f", x(i))) cy=\(String(format: "%.1f", y(v))) r=3 fill='\(color)'><title>\(esc(s.name)) \(esc(days[i])): \(v)</title></circle>"
            }
            let lx = 10 + Double(k % 3) * 235, ly = h + Double(k / 3) * 18
            svg += "<rect x=\(Int(lx)) y=\(Int(ly) - 9) width=12 height=10 fill='\(color)' /><text x=\(Int(lx) + 16) y=\(Int(ly)) font-size=12>\(esc(s.name))</text>"
        }
        return svg + "</svg>"
    }
}
