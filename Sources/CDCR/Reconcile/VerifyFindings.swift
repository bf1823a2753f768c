import CDCCore

/// A differing row as reconcile handles it: its key texts and what differs.
struct RowFinding: Sendable {
    let key: KeyTexts
    let difference: RowDifference

    var kind: DiscrepancyKind {
        switch difference {
        case .missing: .missing
        case .extra: .extra
        case .different: .different
        }
    }

    var columns: [String] {
        if case let .different(columns) = difference { return columns }
        return []
    }
}

/// The one place reconcile reads and builds verify's differences (a diff keeps its listed rows in
/// a `DifferenceSpill` and one-sided stretches as `ranges`; only this file knows).
enum VerifyFindings {
    /// The differing rows verify listed for the table, in key order. Bounded by verify's
    /// `maxDifferences`; the rest are counted in `unlisted` or summarised in `ranges`.
    static func rows(of diff: TableDiff) throws -> [RowFinding] {
        var out: [RowFinding] = []
        out.reserveCapacity(diff.listed)
        try diff.forEachDifference { key, difference in out.append(RowFinding(key: key, difference: difference)) }
        return out
    }

    /// Verify's summarised ranges (one-sided, or nearly all differing) as findings: one per range, keyed by its bounds (so the same
    /// stretch is followed across runs), its row count in the digest. Never repaired row by row:
    /// they are mass drift by nature, for a person and `cdcr repair` (which copies ranges page by page).
    static func ranges(of diff: TableDiff) -> [Finding] {
        diff.ranges.map { r in
            let bounds = JSONValue.array([r.range.lo.map { .array($0.map(JSONValue.string)) } ?? .null,
                                          r.range.hi.map { .array($0.map(JSONValue.string)) } ?? .null])
            var f = Finding(table: diff.source, targetTable: diff.target, rowKeyJSON: nil, keyText: "range:" + bounds.serialized,
                            kind: r.side == .source ? .missing : r.side == .target ? .extra : .different)
            f.digest = diff.describe(r)
            f.sourceValuesJSON = diff.rangeJSON(r)
            return f
        }
    }

    /// A diff holding only `rows`, for `Repairer.execute` to fix (nothing unlisted: the rows to
    /// repair were chosen one by one).
    static func repairDiff(like diff: TableDiff, rows: [RowFinding]) throws -> TableDiff {
        var out = TableDiff(source: diff.source, target: diff.target, keyNames: diff.keyNames)
        out.sourceRows = diff.sourceRows
        out.targetRows = diff.targetRows
        try out.list(rows.map { (key: $0.key, difference: $0.difference) }, atMost: rows.count)
        return out
    }
}

extension RowFinding {
    /// The identity of the row across runs (`cdcr.discrepancies.key_text`): the key's text for a
    /// one-column key, else a JSON array of the key texts.
    var keyText: String {
        key.count == 1 ? key[0] : JSONValue.array(key.map(JSONValue.string)).serialized
    }
}
