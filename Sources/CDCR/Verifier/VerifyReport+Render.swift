import CDCCore
import Foundation

extension VerifyReport {
    /// The terminal report: per table the counts, then up to `limit` rows as `-` (only in source),
    /// `+` (only in target), `~` (different, with the columns); then a total line.
    public func text(limit: Int) -> String {
        var lines: [String] = []
        for t in tables {
            lines.append("\(t.headline)")
            for note in t.notes { lines.append("  note: \(note)") }
            for (key, d) in t.differences.prefix(limit) { lines.append("  \(d.symbol) \(t.describe(key))\(d.columnsSuffix)") }
            if t.differences.count > limit { lines.append("  … and \(t.differences.count - limit) more (--limit, or --json for all)") }
            if t.unlisted > 0 { lines.append("  … and \(t.unlistedNote)") }
        }
        lines.append("total: \(tables.count) table\(tables.count == 1 ? "" : "s"), \(missing) missing, \(extra) extra, \(different) different"
            + " (\(seconds(duration)) s)" + (isConsistent ? ": consistent" : ""))
        return lines.joined(separator: "\n")
    }

    /// The `--json` report (every differing row).
    public var json: String {
        let items = tables.map { t -> String in
            let rows = t.differences.map { key, d -> String in
                var fields = ["\"kind\":\(JSONValue.string(d.kind).serialized)",
                              "\"key\":" + t.keyJSON(key)]
                if case let .different(columns) = d { fields.append("\"columns\":[" + columns.map { JSONValue.string($0).serialized }.joined(separator: ",") + "]") }
                return "{" + fields.joined(separator: ",") + "}"
            }
            return "{\"table\":\(JSONValue.string(t.source.description).serialized),\"target_table\":\(JSONValue.string(t.target.description).serialized),"
                + "\"source_rows\":\(t.sourceRows),\"target_rows\":\(t.targetRows),\"missing\":\(t.missing),\"extra\":\(t.extra),\"different\":\(t.different),"
                + "\"unlisted\":\(t.unlisted),\"settled\":\(t.settled),\"duration_seconds\":\(seconds(t.duration)),\"consistent\":\(t.isConsistent),"
                + "\"ranges_per_level\":[" + t.rangesPerLevel.map(String.init).joined(separator: ",") + "],\"rows_fetched\":\(t.rowsFetched),"
                + "\"notes\":[" + t.notes.map { JSONValue.string($0).serialized }.joined(separator: ",") + "],"
                + "\"rows\":[" + rows.joined(separator: ",") + "]}"
        }
        return "{\"consistent\":\(isConsistent),\"tables\":[" + items.joined(separator: ",") + "],"
            + "\"total\":{\"missing\":\(missing),\"extra\":\(extra),\"different\":\(different)},\"duration_seconds\":\(seconds(duration))}"
    }

    /// A Markdown report (`--report FILE.md`).
    public func markdown(limit: Int) -> String {
        var out = "# cdcr verify report\n\n"
        out += isConsistent ? "**Consistent**: no differences.\n\n" : "**\(missing) missing, \(extra) extra, \(different) different rows.**\n\n"
        out += "| table | source rows | target rows | missing | extra | different | seconds |\n|---|---:|---:|---:|---:|---:|---:|\n"
        for t in tables {
            out += "| \(t.source) | \(t.sourceRows) | \(t.targetRows) | \(t.missing) | \(t.extra) | \(t.different) | \(seconds(t.duration)) |\n"
        }
        for t in tables where !t.isConsistent || !t.notes.isEmpty {
            out += "\n## \(t.source)\n\n"
            for note in t.notes { out += "- note: \(note)\n" }
            if !t.differences.isEmpty { out += "\n```diff\n" }
            for (key, d) in t.differences.prefix(limit) { out += "\(d.symbol) \(t.describe(key))\(d.columnsSuffix)\n" }
            if t.differences.count > limit { out += "… and \(t.differences.count - limit) more\n" }
            if t.unlisted > 0 { out += "… and \(t.unlistedNote)\n" }
            if !t.differences.isEmpty { out += "```\n" }
        }
        return out
    }

    /// A standalone HTML report (`--report FILE.html`).
    public func html(limit: Int) -> String {
        func esc(_ s: String) -> String {
            s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
        }
        var out = """
            <!doctype html><html><head><meta charset="utf-8"><title>cdcr verify report</title><style>
            body{font-family:system-ui,sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}
            td:first-child,th:first-child{text-align:left}.ok{color:#070}.bad{color:#a00}pre{background:#f6f6f6;padding:1em}
            </style></head><body><h1>cdcr verify report</h1>
            """
        out += isConsistent ? "<p class=\"ok\">Consistent: no differences.</p>" : "<p class=\"bad\">\(missing) missing, \(extra) extra, \(different) different rows.</p>"
        out += "<table><tr><th>table</th><th>source rows</th><th>target rows</th><th>missing</th><th>extra</th><th>different</th><th>seconds</th></tr>"
        for t in tables {
            out += "<tr><td>\(esc(t.source.description))</td><td>\(t.sourceRows)</td><td>\(t.targetRows)</td><td>\(t.missing)</td><td>\(t.extra)</td><td>\(t.different)</td><td>\(seconds(t.duration))</td></tr>"
        }
        out += "</table>"
        for t in tables where !t.isConsistent {
            out += "<h2>\(esc(t.source.description))</h2><pre>"
            for (key, d) in t.differences.prefix(limit) { out += esc("\(d.symbol) \(t.describe(key))\(d.columnsSuffix)") + "\n" }
            if t.differences.count > limit { out += "… and \(t.differences.count - limit) more\n" }
            if t.unlisted > 0 { out += esc("… and \(t.unlistedNote)") + "\n" }
            out += "</pre>"
        }
        return out + "</body></html>\n"
    }
}

extension TableDiff {
    var unlistedNote: String {
        "\(unlisted) more not listed (\(unlistedMissing) missing, \(unlistedExtra) extra, \(unlistedDifferent) different by row hash; "
            + "beyond --max-differences: repair --execute fixes them in rounds)"
    }

    var headline: String {
        "\(source)\(target == source ? "" : " → \(target)"): source \(sourceRows) rows, target \(targetRows) rows, "
            + "\(missing) missing, \(extra) extra, \(different) different"
            + (settled > 0 ? ", \(settled) settled in flight" : "") + " (\(seconds(duration)) s)"
    }
}

extension RowDifference {
    var kind: String {
        switch self {
        case .missing: "missing"
        case .extra: "extra"
        case .different: "different"
        }
    }

    var columnsSuffix: String {
        if case let .different(columns) = self { return ": " + columns.joined(separator: ", ") }
        return ""
    }
}

/// A duration in seconds with millisecond precision, for reports.
func seconds(_ d: Duration) -> String { String(format: "%.3f", d.seconds) }
