import CDCCore
import Foundation

extension ReportCounts {
    public var jsonValue: JSONValue {
        func n(_ v: Int) -> JSONValue { .number(String(v)) }
        return .object([
            ("found", n(found)), ("auto_repaired", n(autoRepaired)), ("queued", n(queued)),
            ("resolved", .object([("by_stream", n(resolvedByStream)), ("approved", n(approved)), ("rejected", n(rejected)), ("total", n(resolved))])),
            ("applied", n(applied)), ("open_at_end", n(openAtEnd)), ("awaiting_apply", n(awaitingApply)),
            ("auto_correction_rate", autoCorrectionRate.map { .number(ratio($0)) } ?? .null),
        ])
    }
}

/// A ratio with at most 4 decimals, as JSON number text.
func ratio(_ x: Double) -> String {
    let s = String(format: "%.4f", x)
    var t = Substring(s)
    while t.hasSuffix("0") { t = t.dropLast() }
    if t.hasSuffix(".") { t = t.dropLast() }
    return String(t)
}

extension DriftTrend {
    public var jsonValue: JSONValue {
        .object([
            ("direction", .string(direction.rawValue)), ("slope_per_day", .number(ratio(slope))), ("mean_per_day", .number(ratio(mean))),
            ("relative_change", .number(ratio(relativeChange))), ("daily", .array(daily.map { .number(String($0)) })),
        ])
    }

    var summary: String { "\(direction.rawValue) (slope \(ratio(slope))/day, mean \(ratio(mean))/day)" }
}

extension DailyReport {
    public var jsonValue: JSONValue {
        .object([
            ("date", .string(date)), ("audit", .string(audit.rawValue)), ("audit_reasons", .array(auditReasons.map(JSONValue.string))),
            ("overload_limit", .number(String(overloadLimit))), ("totals", totals.jsonValue),
            ("trend", .object([("7d", trend7.jsonValue), ("30d", trend30.jsonValue)])),
            ("runs", .object(runs.map { ($0.status, .number(String($0.count))) })),
            ("tables", .array(tables.map { t in
                .object([
                    ("table", .string(t.table.description)), ("audit", .string(t.audit.rawValue)),
                    ("audit_reasons", .array(t.auditReasons.map(JSONValue.string))), ("finished_runs", .number(String(t.finishedRuns))),
                    ("totals", t.totals.jsonValue), ("trend", .object([("7d", t.trend7.jsonValue), ("30d", t.trend30.jsonValue)])),
                    ("kinds", .array(t.kinds.map { k in
                        var members = k.counts.jsonValue.objectMembers ?? []
                        members.insert(("kind", .string(k.kind.rawValue)), at: 0)
                        return .object(members)
                    })),
                ])
            })),
        ])
    }

    static let columns = ["table", "kind", "found", "auto-repaired", "queued", "by stream", "approved", "rejected", "applied",
                          "open at end", "auto-correction"]

    func rows() -> [[String]] {
        func cells(_ name: String, _ kind: String, _ c: ReportCounts) -> [String] {
            [name, kind] + [c.found, c.autoRepaired, c.queued, c.resolvedByStream, c.approved, c.rejected, c.applied, c.openAtEnd].map(String.init)
                + [c.autoCorrectionRate.map { String(format: "%.1f %%", $0 * 100) } ?? "–"]
        }
        var out: [[String]] = []
        for t in tables {
            for k in t.kinds { out.append(cells(t.table.description, k.kind.rawValue, k.counts)) }
            out.append(cells(t.table.description, "all", t.totals))
        }
        out.append(cells("total", "", totals))
        return out
    }

    /// Markdown (the default of `cdcr report daily`).
    public var markdown: String {
        var out = "# cdcr daily reconcile report, \(date) (UTC)\n\n"
        out += "Migration audit: **\(audit.rawValue)**" + (auditReasons.isEmpty ? "" : " — " + auditReasons.joined(separator: "; ")) + "\n\n"
        out += "Runs started: " + (runs.isEmpty ? "none" : runs.map { "\($0.count) \($0.status)" }.joined(separator: ", ")) + "\n\n"
        out += "New discrepancies per day: 7 days \(trend7.summary); 30 days \(trend30.summary)\n\n"
        out += "| " + Self.columns.joined(separator: " | ") + " |\n|" + Self.columns.map { _ in "---" }.joined(separator: "|") + "|\n"
        for r in rows() { out += "| " + r.map { $0.replacingOccurrences(of: "|", with: "\\|") }.joined(separator: " | ") + " |\n" }
        out += "\n| table | audit | why | trend 7 d | trend 30 d |\n|---|---|---|---|---|\n"
        for t in tables {
            out += "| \(t.table) | \(t.audit.rawValue) | \(t.auditReasons.joined(separator: "; ")) | \(t.trend7.summary) | \(t.trend30.summary) |\n"
        }
        return out
    }

    /// One self-contained HTML page (no scripts, no external assets).
    public var html: String {
        func esc(_ s: String) -> String {
            s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
                .replacingOccurrences(of: "\"", with: "&quot;")
        }
        var body = "<h1>cdcr daily reconcile report, \(esc(date)) (UTC)</h1>"
        body += "<p>Migration audit: <b class=\(audit.rawValue)>\(audit.rawValue)</b> \(esc(auditReasons.joined(separator: "; ")))</p>"
        body += "<p>Runs started: \(esc(runs.isEmpty ? "none" : runs.map { "\($0.count) \($0.status)" }.joined(separator: ", ")))</p>"
        body += "<p>New discrepancies per day: 7 days \(esc(trend7.summary)); 30 days \(esc(trend30.summary))</p>"
        body += "<table><tr>" + Self.columns.map { "<th>\(esc($0))</th>" }.joined() + "</tr>"
        for r in rows() { body += "<tr>" + r.map { "<td>\(esc($0))</td>" }.joined() + "</tr>" }
        body += "</table><h2>Tables</h2><table><tr><th>table</th><th>audit</th><th>why</th><th>trend 7 d</th><th>trend 30 d</th></tr>"
        for t in tables {
            body += "<tr><td>\(esc(t.table.description))</td><td class=\(t.audit.rawValue)>\(t.audit.rawValue)</td>"
                + "<td>\(esc(t.auditReasons.joined(separator: "; ")))</td><td>\(esc(t.trend7.summary))</td><td>\(esc(t.trend30.summary))</td></tr>"
        }
        body += "</table>"
        return """
            <!doctype html><html lang=en><head><meta charset=utf-8><title>cdcr daily report \(esc(date))</title>
            <style>body{font:14px system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse}td,th{padding:4px 10px;border-bottom:1px solid #ddd}
            .ok{color:#282}.partial{color:#b80}.overload,.reject{color:#c22;font-weight:bold}</style></head><body>\(body)</body></html>
            """
    }
}
