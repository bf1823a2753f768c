import CDCCore
import CDCPostgres
import Foundation

/// The admin server's `GET /`: one self-contained HTML page (inline CSS and SVG, no scripts, no
/// external assets) with the partitions' lag and status, a lag chart over the last hour, event
/// rates, the last gap fill and replays, and reconciliation (the review queue, the last runs, new
/// discrepancies per day per table, each table's health: StatusPage+Reconcile.swift).
enum StatusPage {
    static let unavailable = page(body: "<p class=err>status unavailable: the broker or the target did not answer</p>")

    static func render(settings: Settings, report: LagReport, health: HealthState, jobs: ReplayJobs) throws -> String {
        var history: [(Double, Double)] = []
        var gapFill: [String?]?
        var reconcile = ""
        if let url = settings.targetURL {
            let conn = try TargetConnection.open(url, applicationName: "cdcr-status")
            defer { conn.close() }
            history = try conn.query("""
                SELECT extract(epoch FROM sampled_at)::float8, sum(greatest(end_offset - greatest(committed, 0), 0))::float8
                FROM cdcr.lag_samples WHERE group_id = $1 AND sampled_at > now() - interval '1 hour' GROUP BY 1 ORDER BY 1
                """, [settings.group]).rows.compactMap { r in Double(r[0] ?? "").flatMap { t in Double(r[1] ?? "").map { (t, $0) } } }
            gapFill = try conn.query("SELECT window_start::text, window_end::text, changes::text, applied::text, finished_at::text FROM cdcr.gap_fill_state").rows.first
            reconcile = reconcileSection(on: conn)
        }
        let rates = health.rates()
        var body = "<h1>cdcr <span class=\(report.status.rawValue.lowercased())>\(report.status.rawValue)</span></h1>"
        body += "<p>group <b>\(esc(report.group))</b> · \(health.assignedPartitions) partition(s) assigned here · total lag <b>\(report.totalLag)</b>"
        body += " · applied \(String(format: "%.1f", rates.applied))/s · dead-lettered \(String(format: "%.2f", rates.deadLettered))/s (last 5 min)</p>"
        if let l = health.latencyQuantiles() {
            body += "<p id=latency>latency (Kafka message time → target commit, last \(l.minutes) min, \(l.count) messages):"
            body += " p50 <b>\(formatLatency(l.p50))</b> · p99 <b>\(formatLatency(l.p99))</b></p>"
        } else {
            body += "<p id=latency>latency: no message applied in the last minutes</p>"
        }
        body += "<h2>Partitions</h2><table id=partitions><tr><th>topic</th><th>partition</th><th>committed</th><th>end</th><th>lag</th><th>lag s</th><th>status</th></tr>"
        for p in report.partitions {
            body += "<tr><td>\(esc(p.topic))</td><td>\(p.partition)</td><td>\(p.committed >= 0 ? String(p.committed) : "-")</td><td>\(p.end)</td><td>\(p.lag)</td>"
            body += "<td>\(p.lagSeconds.map { String(format: "%.1f", $0) } ?? "?")</td><td class=\(p.status.rawValue.lowercased())>\(p.status.rawValue)</td></tr>"
        }
        body += "</table><h2>Lag, last hour</h2>" + chart(history)
        body += "<h2>Gap filling</h2>"
        if let g = gapFill {
            body += "<p>last pass \(esc(g[4] ?? "")): window \(esc(g[0] ?? "")) → \(esc(g[1] ?? "")), \(esc(g[2] ?? "0")) changes, \(esc(g[3] ?? "0")) applied</p>"
        } else {
            body += "<p>no gap fill has run yet</p>"
        }
        body += "<h2>Replays</h2>"
        let all = jobs.all
        if all.isEmpty {
            body += "<p>none since start-up</p>"
        } else {
            body += "<table><tr><th>id</th><th>window</th><th>status</th><th>progress</th></tr>"
            for j in all {
                body += "<tr><td>\(esc(j.id))</td><td>\(esc(j.from)) → \(esc(j.to))\(j.dryRun ? " (dry run)" : "")</td><td>\(esc(j.status))</td><td>\(j.done)/\(j.total)</td></tr>"
            }
            body += "</table>"
        }
        body += reconcile
        return page(body: body)
    }

    /// A latency for people: milliseconds below 10 s, else seconds. The window's buckets are 10 %
    /// wide, so two significant digits are all it knows.
    static func formatLatency(_ seconds: Double) -> String {
        if seconds.isInfinite { return "> 15 min" }
        if seconds < 0.01 { return String(format: "%.1f ms", seconds * 1_000) }
        return seconds < 10 ? String(format: "%.0f ms", seconds * 1_000) : String(format: "%.0f s", seconds)
    }

    /// An inline SVG polyline of total lag over time.
    static func chart(_ points: [(Double, Double)]) -> String {
        let w = 720.0, h = 160.0
        guard points.count >= 2, let t0 = points.first?.0, let t1 = points.last?.0, t1 > t0 else {
            return "<svg id=lagchart width=720 height=160 role=img aria-label='lag chart'><text x=10 y=80>not enough samples yet (each status refresh adds one)</text></svg>"
        }
        let observedMax = points.map(\.1).max()!
        let maxLag = max(1, observedMax)
        let coords = points.map { String(format: "%.1f,%.1f", ($0.0 - t0) / (t1 - t0) * (w - 20) + 10, h - 10 - $0.1 / maxLag * (h - 30)) }.joined(separator: " ")
        return "<svg id=lagchart width=720 height=160 role=img aria-label='lag chart'><rect width=720 height=160 fill=#fafafa />"
            + "<polyline fill=none stroke=#c33 stroke-width=2 points='\(coords)' /><text x=12 y=16>max \(Int(observedMax)) messages</text></svg>"
    }

    static func page(body: String) -> String {
        """
        <!doctype html><html lang=en><head><meta charset=utf-8><title>cdcr status</title><meta http-equiv=refresh content=15>
        <style>body{font:14px system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse}td,th{padding:4px 10px;border-bottom:1px solid #ddd;text-align:right}
        td:first-child,th:first-child{text-align:left}.ok{color:#282}.warn{color:#b80}.err,.stall,.stop,.rewind{color:#c22;font-weight:bold}</style>
        </head><body>\(body)</body></html>
        """
    }

    static func esc(_ s: String) -> String {
        var out = ""
        for c in s {
            switch c {
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "&": out += "&amp;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default: out.append(c)
            }
        }
        return out
    }
}
