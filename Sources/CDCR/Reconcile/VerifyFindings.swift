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

/// The one place reconcile reads and builds verify's `TableDiff.differences` (how a diff holds its
/// differing rows may change; only this file then changes with it).
enum VerifyFindings {
    /// The differing rows verify listed for the table.
    static func rows(of diff: TableDiff) -> [RowFinding] {
        diff.differences.map { RowFinding(key: $0.key, difference: $0.difference) }
    }

    /// A diff holding only `rows`, for `Repairer.execute` to fix (nothing unlisted: the rows to
    /// repair were chosen one by one).
    static func repairDiff(like diff: TableDiff, rows: [RowFinding]) -> TableDiff {
        var out = TableDiff(source: diff.source, target: diff.target, keyNames: diff.keyNames)
        out.sourceRows = diff.sourceRows
        out.targetRows = diff.targetRows
        out.differences = rows.map { (key: $0.key, difference: $0.difference) }
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
