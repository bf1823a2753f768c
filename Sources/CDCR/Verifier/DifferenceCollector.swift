import CDCCore

/// What a descent found, on its way into the table's spill: missing and extra keys go in as they
/// are, keys whose hashes differ are compared as whole rows `rowChunk` at a time (to name the
/// differing columns). Past `maxListed` listed keys, differences are counted, not kept.
final class DifferenceCollector {
    private let verifier: TableVerifier
    let spill: DifferenceSpill
    private var candidates: [KeyTexts] = []
    private(set) var listed = 0
    var unlistedMissing = 0, unlistedExtra = 0, unlistedDifferent = 0
    /// Key/hash rows that left the databases.
    var rowsFetched = 0

    init(_ verifier: TableVerifier, spill: DifferenceSpill) {
        self.verifier = verifier
        self.spill = spill
    }

    /// Keys that still fit the listing.
    var room: Int { max(0, verifier.maxListed - listed) }

    /// `keys` of `total` differences of one kind; `listing` false counts them only.
    func keep(_ keys: [KeyTexts], of total: Int, as kind: RowDifference, listing: Bool = true) throws {
        let n = listing ? min(keys.count, room) : 0
        if case .different = kind { candidates += keys.prefix(n) } else { for key in keys.prefix(n) { try spill.append(key, kind) } }
        listed += n
        switch kind {
        case .missing: unlistedMissing += total - n
        case .extra: unlistedExtra += total - n
        case .different: unlistedDifferent += total - n
        }
        if candidates.count >= verifier.rowChunk { try compareCandidates() }
    }

    /// Both sides' key → row hash of the same rows: the keys on one side only and those whose hashes differ.
    func keepDiffering(source: [KeyTexts: Int64], target: [KeyTexts: Int64]) throws {
        try keep(differingKeys(source: source, target: target), fetched: source.count + target.count)
    }

    /// What `differingKeys` found in `fetched` key/hash rows.
    func keep(_ found: (missing: [KeyTexts], extra: [KeyTexts], changed: [KeyTexts]), fetched: Int) throws {
        try keep(found.missing, of: found.missing.count, as: .missing)
        try keep(found.extra, of: found.extra.count, as: .extra, listing: verifier.listExtra)
        try keep(found.changed, of: found.changed.count, as: .different(columns: []))
        rowsFetched += fetched
    }

    private func compareCandidates() throws {
        try spill.append(contentsOf: verifier.compareRows(candidates))
        candidates.removeAll(keepingCapacity: true)
    }

    /// Compares the keys still waiting, closes the spill and adds the counts to `diff`.
    func finish(into diff: inout TableDiff) throws {
        try compareCandidates()
        try spill.finish()
        diff.unlistedMissing += unlistedMissing
        diff.unlistedExtra += unlistedExtra
        diff.unlistedDifferent += unlistedDifferent
        diff.rowsFetched += rowsFetched
    }
}
