import CDCCore

/// What verify found for one table.
///
/// The differing keys are not held in memory: read them with `forEachDifference`,
/// `differenceBatches(of:)` or `firstDifferences(_:)` (key order) from a spill that keeps at most
/// one sorted run in memory. Ranges present on one side only, too large to list, are in `ranges`.
public struct TableDiff: Sendable {
    public let source: TableName
    public let target: TableName
    public let keyNames: [String]
    public var sourceRows: Int64 = 0
    public var targetRows: Int64 = 0
    /// The differing keys listed, with what differs: at most `VerifyOptions.maxDifferences`; the
    /// rest are only counted in `unlisted…`.
    public internal(set) var spill: DifferenceSpill
    /// Key ranges reported by their counts instead of key by key (more than
    /// `VerifyOptions.summarizeRows` differing rows): all on one side, or nearly all differing;
    /// `repair` copies or deletes them range by range.
    public internal(set) var ranges: [RangeDifference] = []
    /// Differences beyond the listing cap, counted but not kept (memory stays bounded however far
    /// the tables drifted). Different rows among them are counted by row hash.
    public var unlistedMissing = 0, unlistedExtra = 0, unlistedDifferent = 0
    /// Differences that went away when re-checked after `--settle` (changes in flight).
    public var settled = 0
    public var duration: Duration = .zero
    public var notes: [String] = []
    /// How the descent went: ranges checksummed per level, rows compared row by row.
    public var rangesPerLevel: [Int] = []
    public var rowsFetched = 0
    /// How the table was descended (sampled and incremental runs compare listed keys instead).
    public var method: DescentMethod = .keyRanges
    /// A sampled verify: how the keys were drawn and the estimated mismatch rate (nil: every key).
    public var sample: SampleSummary?
    /// An incremental verify: the changed keys compared, and where they came from (nil: every key).
    public var incremental: IncrementalSummary?

    public init(source: TableName, target: TableName, keyNames: [String]) {
        self.source = source
        self.target = target
        self.keyNames = keyNames
        spill = DifferenceSpill(keyCount: keyNames.count)
    }

    /// Rows in summarised ranges only in the source / only in the target / differing in both.
    public var rangeMissing: Int { Int(ranges.reduce(Int64(0)) { $0 + $1.missing }) }
    public var rangeExtra: Int { Int(ranges.reduce(Int64(0)) { $0 + $1.extra }) }
    public var rangeDifferent: Int { Int(ranges.reduce(Int64(0)) { $0 + $1.different }) }
    public var rangeRows: Int { rangeMissing + rangeExtra + rangeDifferent }

    public var missing: Int { unlistedMissing + spill.missing + rangeMissing }
    public var extra: Int { unlistedExtra + spill.extra + rangeExtra }
    public var different: Int { unlistedDifferent + spill.different + rangeDifferent }
    public var unlisted: Int { unlistedMissing + unlistedExtra + unlistedDifferent }
    /// Differing keys listed one by one (not counting `ranges` and `unlisted`).
    public var listed: Int { spill.count }
    public var isConsistent: Bool { spill.count == 0 && unlisted == 0 && ranges.isEmpty }

    /// Every listed difference, in key order.
    public func forEachDifference(_ body: (_ key: KeyTexts, _ difference: RowDifference) throws -> Void) throws {
        try spill.forEach { try body($0.key, $0.difference) }
    }

    /// The listed differences in key order, `size` at a time.
    public func differenceBatches(of size: Int, _ body: ([ListedDifference]) throws -> Void) throws {
        try spill.forEachBatch(of: size, body)
    }

    /// The first `n` listed differences in key order.
    public func firstDifferences(_ n: Int) -> [ListedDifference] { spill.prefix(n) }

    /// `{"id":"7"}`: the key as a JSON object of canonical texts (reports, the repair log).
    public func keyJSON(_ key: KeyTexts) -> String { keyJSONObject(names: keyNames, key: key) }

    /// `id=7` or `order_id=1, line_no=2`.
    public func describe(_ key: KeyTexts) -> String {
        zip(keyNames, key).map { "\($0)=\($1)" }.joined(separator: ", ")
    }
}

/// How a full verify cut the tables into parts to compare (docs/RECONCILER.md).
public enum DescentMethod: String, Sendable {
    /// Key ranges: cut arithmetically (dense integer keys) or at sampled keys, split at their quantiles.
    case keyRanges = "key ranges"
    /// Buckets of the key's hash, split by more hash bits at each level: one sequential scan per level.
    case hashBuckets = "hash buckets"
}

/// A key range reported by its counts instead of key by key: its rows are all on one side (every
/// one missing or extra), or both sides have rows and nearly all of them differ.
public struct RangeDifference: Sendable, Equatable {
    public let range: KeyRange
    /// The side that has the rows; nil when both have rows, nearly all differing.
    public let side: Side?
    /// The range's differences: in the source only, in the target only, in both with other values.
    public let missing: Int64, extra: Int64, different: Int64

    /// A one-sided range of `rows` rows.
    public init(range: KeyRange, side: Side, rows: Int64) {
        self.range = range
        self.side = side
        (missing, extra, different) = side == .source ? (rows, 0, 0) : (0, rows, 0)
    }

    /// A range where both sides have rows and nearly all differ, with the counts found.
    public init(range: KeyRange, missing: Int64, extra: Int64, different: Int64) {
        self.range = range
        side = nil
        (self.missing, self.extra, self.different) = (missing, extra, different)
    }

    /// Rows that differ in the range.
    public var rows: Int64 { missing + extra + different }

    public var difference: RowDifference {
        switch side {
        case .source: .missing
        case .target: .extra
        case nil: .different(columns: [])
        }
    }

    /// Two ranges that meet, of the same kind, as one.
    func joined(_ next: RangeDifference) -> RangeDifference? {
        guard side == next.side, let hi = range.hi, hi == next.range.lo else { return nil }
        let range = KeyRange(lo: self.range.lo, hi: next.range.hi)
        if let side { return RangeDifference(range: range, side: side, rows: rows + next.rows) }
        return RangeDifference(range: range, missing: missing + next.missing, extra: extra + next.extra, different: different + next.different)
    }
}

/// `{"id":"7"}`: key column names to the key's canonical texts, as a JSON object.
func keyJSONObject(names: [String], key: KeyTexts) -> String {
    "{" + zip(names, key).map { "\(JSONValue.string($0).serialized):\(JSONValue.string($1).serialized)" }.joined(separator: ",") + "}"
}
