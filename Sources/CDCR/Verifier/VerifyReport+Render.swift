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
            for r in t.ranges { lines.append("  \(t.describe(r))") }
            for (key, d) in t.firstDifferences(limit) { lines.append("  \(d.symbol) \(t.describe(key))\(d.columnsSuffix)") }
            if t.listed > limit { lines.append("  … and \(t.listed - limit) more (--limit, or --json for all)") }
            if t.unlisted > 0 { lines.append("  … and \(t.unlistedNote)") }
        }
        lines.append("total: \(tables.count) table\(tables.count == 1 ? "" : "s"), \(missing) missing, \(extra) extra, \(different) different"
            + " (\(seconds(duration)) s)" + (isConsistent ? ": consistent" : ""))
        return lines.joined(separator: "\n")
    }

    /// The `--json` report (every differing row), built in memory: for small reports; `writeJSON`
    /// streams it. Throws when the spill file cannot be read back.
    public func json() throws -> String {
        var out = ""
        try writeJSON { out += $0 }
        return out
    }

    /// The `--json` report, written piece by piece: every differing row is read from the spill and
    /// passed to `write` without the whole report being held in memory.
    public func writeJSON(_ write: (String) -> Void) throws {
        write("{\"consistent\":\(isConsistent),\"tables\":[")
        for (n, t) in tables.enumerated() {
            write((n == 0 ? "" : ",") + "{\"table\":\(JSONValue.string(t.source.description).serialized),\"target_table\":\(JSONValue.string(t.target.description).serialized),"
                + "\"source_rows\":\(t.sourceRows),\"target_rows\":\(t.targetRows),\"missing\":\(t.missing),\"extra\":\(t.extra),\"different\":\(t.different),"
                + "\"unlisted\":\(t.unlisted),\"settled\":\(t.settled),\"duration_seconds\":\(seconds(t.duration)),\"consistent\":\(t.isConsistent),"
                + "\"descent\":\(JSONValue.string(t.method.rawValue).serialized),\"ranges_per_level\":[" + t.rangesPerLevel.map(String.init).joined(separator: ",") + "],\"rows_fetched\":\(t.rowsFetched),"
                + "\"notes\":[" + t.notes.map { JSONValue.string($0).serialized }.joined(separator: ",") + "]" + t.modeJSON + ","
                + "\"ranges\":[" + t.ranges.map { t.rangeJSON($0) }.joined(separator: ",") + "],\"rows\":[")
            var first = true
            var chunk = ""
            try t.forEachDifference { key, d in
                var fields = ["\"kind\":\(JSONValue.string(d.kind).serialized)", "\"key\":" + t.keyJSON(key)]
                if case let .different(columns) = d { fields.append("\"columns\":[" + columns.map { JSONValue.string($0).serialized }.joined(separator: ",") + "]") }
                chunk += (first ? "" : ",") + "{" + fields.joined(separator: ",") + "}"
                first = false
                if chunk.utf8.count > 65_536 {
                    write(chunk)
                    chunk = ""
                }
            }
            write(chunk + "]}")
        }
        write("],\"total\":{\"missing\":\(missing),\"extra\":\(extra),\"different\":\(different)},\"duration_seconds\":\(seconds(duration))}")
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
            let fenced = t.listed > 0 || !t.ranges.isEmpty
            if fenced { out += "\n```diff\n" }
            for r in t.ranges { out += t.describe(r) + "\n" }
            for (key, d) in t.firstDifferences(limit) { out += "\(d.symbol) \(t.describe(key))\(d.columnsSuffix)\n" }
            if t.listed > limit { out += "… and \(t.listed - limit) more\n" }
            if t.unlisted > 0 { out += "… and \(t.unlistedNote)\n" }
            if fenced { out += "```\n" }
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
            for r in t.ranges { out += esc(t.describe(r)) + "\n" }
            for (key, d) in t.firstDifferences(limit) { out += esc("\(d.symbol) \(t.describe(key))\(d.columnsSuffix)") + "\n" }
            if t.listed > limit { out += "… and \(t.listed - limit) more\n" }
            if t.unlisted > 0 { out += esc("… and \(t.unlistedNote)") + "\n" }
            out += "</pre>"
        }
        return out + "</body></html>\n"
    }
}

extension TableDiff {
    /// `- 500000 rows from id=1 to id=500001 (excluded): only in the source`.
    func describe(_ r: RangeDifference) -> String {
        let from = r.range.lo.map { "from \(describe($0))" } ?? "from the start"
        let to = r.range.hi.map { "to \(describe($0)) (excluded)" } ?? "to the end"
        let what = switch r.side {
        case .source?: "only in the source"
        case .target?: "only in the target"
        case nil: "nearly all differ (\(r.missing) missing, \(r.extra) extra, \(r.different) different)"
        }
        return "\(r.difference.symbol) \(r.rows) rows \(from) \(to): \(what) (a range, not listed key by key)"
    }

    /// `{"kind":"missing","from":{"id":"1"},"to":null,"rows":500000}`; a range where nearly all rows
    /// differ is kind `different` with its `missing`, `extra` and `different` counts.
    func rangeJSON(_ r: RangeDifference) -> String {
        "{\"kind\":\(JSONValue.string(r.difference.kind).serialized),\"from\":\(r.range.lo.map(keyJSON) ?? "null"),"
            + "\"to\":\(r.range.hi.map(keyJSON) ?? "null"),\"rows\":\(r.rows)"
            + (r.side == nil ? ",\"missing\":\(r.missing),\"extra\":\(r.extra),\"different\":\(r.different)}" : "}")
    }

    var unlistedNote: String {
        "\(unlisted) more not listed (\(unlistedMissing) missing, \(unlistedExtra) extra, \(unlistedDifferent) different by row hash; "
            + "beyond --max-differences: repair --execute fixes them in rounds)"
    }

    var headline: String {
        let name = "\(source)\(target == source ? "" : " → \(target)")"
        let counts = "\(missing) missing, \(extra) extra, \(different) different" + (settled > 0 ? ", \(settled) settled in flight" : "")
        if let sample {
            return "\(name): \(sample.headline): \(counts) (\(seconds(duration)) s)"
        }
        if let incremental, incremental.fullBecause == nil {
            return "\(name): \(incremental.examined) changed keys examined (\(incremental.sources)): \(counts) (\(seconds(duration)) s)"
        }
        return "\(name): source \(sourceRows) rows, target \(targetRows) rows, \(counts) (\(seconds(duration)) s)"
    }

    /// The `sample` / `incremental` members of a table's `--json` object (empty for a full verify).
    var modeJSON: String {
        var out = ""
        if let sample {
            let e = sample.estimate, (lo, hi) = e.interval, rows = e.differingRows
            var method = ""
            switch sample.method {
            case let .randomKeys(l, h, drawn): method = "\"method\":\"random_keys\",\"key_min\":\(l),\"key_max\":\(h),\"drawn\":\(drawn)"
            case let .keyHash(fraction): method = "\"method\":\"key_hash\",\"fraction\":\(fraction)"
            }
            out += ",\"sample\":{\(method),\"seed\":\(sample.seed),\"requested\":\(sample.requested),\"sampled\":\(e.sampled),"
                + "\"differing\":\(e.differing),\"population\":\(e.population),\"rate\":\(e.rate),\"confidence\":\(e.confidence),"
                + "\"interval\":[\(lo),\(hi)],\"differing_rows\":[\(rows.low),\(rows.high)]}"
        }
        if let i = incremental {
            func count(_ n: Int?) -> String { n.map(String.init) ?? "null" }
            func time(_ t: String?) -> String { t.map { JSONValue.string($0).serialized } ?? "null" }
            out += ",\"incremental\":{\"examined\":\(i.examined),\"full_because_no_state\":\(i.fullBecause == .noState),"
                + "\"full_because_backfill\":\(i.fullBecause == .backfill),"
                + "\"since_source\":\(time(i.since?.source)),\"since_target\":\(time(i.since?.target)),"
                + "\"from_change_log\":\(count(i.fromChangeLog)),\"from_changed_column\":\(count(i.fromChangedColumn)),"
                + "\"from_row_versions\":\(count(i.fromRowVersions)),\"hashed_row_versions\":\(i.hashedRowVersions)}"
        }
        return out
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

extension SampleSummary {
    /// `sample of 16560 keys (seed 7; random keys in [1, 10000000], 16581 drawn) of ~10000000: mismatch rate 1.02 %
    /// (99 % interval 0.84–1.24 %), ≈ 84000–124000 differing rows`
    var headline: String {
        let e = estimate, (lo, hi) = e.interval, rows = e.differingRows
        func pct(_ x: Double) -> String { String(format: "%.3g %%", x * 100) }
        return "sample of \(e.sampled) keys (seed \(seed); \(methodDescription)) of ~\(e.population): mismatch rate \(pct(e.rate)) "
            + "(\(String(format: "%g", e.confidence * 100)) % interval \(pct(lo))–\(pct(hi))), ≈ \(rows.low)–\(rows.high) differing rows"
    }
}

extension IncrementalSummary {
    /// `change log 12, updated_at 3, row versions 9` and the bound.
    var sources: String {
        var parts: [String] = []
        if let n = fromChangeLog { parts.append("change log \(n)") }
        if let n = fromChangedColumn { parts.append("changed column \(n)") }
        if let n = fromRowVersions { parts.append("row versions \(n)") }
        if let since { parts.append("since \(since.source)" + (since.target == since.source ? "" : " / target \(since.target)")) }
        return parts.joined(separator: ", ")
    }
}
