import CDCCore
import Foundation

extension CheckReport {
    /// The terminal report: per check its status, name, kind and summary, then its examples; a total.
    public var text: String {
        let width = min(40, results.map(\.name.count).max() ?? 0)
        var lines: [String] = []
        for r in results {
            let pad = String(repeating: " ", count: max(0, width - r.name.count))
            lines.append("\(r.status.rawValue.padding(toLength: 5, withPad: " ", startingAt: 0)) \(r.name)\(pad)  \(r.kind): \(r.summary) (\(seconds(r.duration)) s)")
            for e in r.examples { lines.append("        \(e)") }
        }
        lines.append(totalLine)
        return lines.joined(separator: "\n")
    }

    var totalLine: String {
        "total: \(results.count) check\(results.count == 1 ? "" : "s"), \(passed) passed, \(failed) failed, \(errors) error\(errors == 1 ? "" : "s")"
            + " (\(seconds(duration)) s)" + (runID.isEmpty ? "" : ", run \(runID)")
    }

    /// The `--json` report.
    public var json: String {
        let items = results.map { r in
            "{\"name\":\(JSONValue.string(r.name).serialized),\"kind\":\"\(r.kind)\",\"status\":\"\(r.status.rawValue)\","
                + "\"summary\":\(JSONValue.string(r.summary).serialized),\"numbers\":\(r.numbersJSON),\"examples\":\(r.examplesJSON),"
                + "\"duration_seconds\":\(seconds(r.duration))}"
        }
        return "{\"run_id\":\(JSONValue.string(runID).serialized),\"status\":\"\(status.rawValue)\",\"passed\":\(passed),\"failed\":\(failed),"
            + "\"errors\":\(errors),\"duration_seconds\":\(seconds(duration)),\"checks\":[\(items.joined(separator: ","))]}"
    }

    /// A Markdown report (`--report FILE.md`).
    public var markdown: String {
        var out = "# cdcr check report\n\n**\(status.rawValue)**: \(totalLine.dropFirst("total: ".count))\n\n"
        out += "| status | check | kind | summary | seconds |\n|---|---|---|---|---:|\n"
        for r in results {
            out += "| \(r.status.rawValue) | \(mdCell(r.name)) | \(r.kind) | \(mdCell(r.summary)) | \(seconds(r.duration)) |\n"
        }
        for r in results where !r.examples.isEmpty {
            out += "\n## \(r.name)\n\n```\n" + r.examples.joined(separator: "\n") + "\n```\n"
        }
        return out
    }

    /// A standalone HTML report (`--report FILE.html`).
    public var html: String {
        func esc(_ s: String) -> String {
            s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
        }
        var out = """
            <!doctype html><html><head><meta charset="utf-8"><title>cdcr check report</title><style>
            body{font-family:system-ui,sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}
            .PASS{color:#070}.FAIL{color:#a00}.ERROR{color:#a60}pre{background:#f6f6f6;padding:1em}
            </style></head><body><h1>cdcr check report</h1>
            """
        out += "<p class=\"\(status.rawValue)\">\(status.rawValue): \(esc(String(totalLine.dropFirst("total: ".count))))</p>"
        out += "<table><tr><th>status</th><th>check</th><th>kind</th><th>summary</th><th>seconds</th></tr>"
        for r in results {
            out += "<tr><td class=\"\(r.status.rawValue)\">\(r.status.rawValue)</td><td>\(esc(r.name))</td><td>\(r.kind)</td><td>\(esc(r.summary))</td><td>\(seconds(r.duration))</td></tr>"
        }
        out += "</table>"
        for r in results where !r.examples.isEmpty {
            out += "<h2>\(esc(r.name))</h2><pre>" + r.examples.map(esc).joined(separator: "\n") + "</pre>"
        }
        return out + "</body></html>\n"
    }

    private func mdCell(_ s: String) -> String { s.replacingOccurrences(of: "|", with: "\\|") }
}
