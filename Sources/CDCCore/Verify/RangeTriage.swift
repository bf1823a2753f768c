/// A key in canonical text form, one entry per primary-key column (see `ComparedColumn.canonicalText`).
public typealias KeyTexts = [String]

/// Orders keys for reports: integers numerically, other texts as strings, column by column; in a
/// column holding both, integers first (so the order is total: the spill's merge relies on it).
public func keyPrecedes(_ a: KeyTexts, _ b: KeyTexts) -> Bool {
    for (x, y) in zip(a, b) where x != y {
        switch (Int64(x), Int64(y)) {
        case let (i?, j?): if i != j { return i < j }
        case (_?, nil): return true
        case (nil, _?): return false
        case (nil, nil): return x < y
        }
        return x < y
    }
    return a.count < b.count
}

/// A range of primary keys in key order: `lo` inclusive, `hi` exclusive, nil = unbounded.
public struct KeyRange: Sendable, Equatable, CustomStringConvertible {
    public var lo: KeyTexts?
    public var hi: KeyTexts?

    public init(lo: KeyTexts?, hi: KeyTexts?) {
        self.lo = lo
        self.hi = hi
    }

    public static let all = KeyRange(lo: nil, hi: nil)

    /// Orders ranges by their start (`keyPrecedes`; the unbounded start first), for reports.
    public func precedes(_ other: KeyRange) -> Bool {
        switch (lo, other.lo) {
        case (nil, _): other.lo != nil
        case (_?, nil): false
        case let (a?, b?): keyPrecedes(a, b)
        }
    }

    public var description: String {
        "[\(lo.map { $0.joined(separator: ",") } ?? "-∞"), \(hi.map { $0.joined(separator: ",") } ?? "+∞"))"
    }

    /// Splits the range at `boundaries` (inside the range, in key order): n boundaries give n + 1 ranges.
    public func split(at boundaries: [KeyTexts]) -> [KeyRange] {
        var out: [KeyRange] = []
        var lower = lo
        for b in boundaries where b != lower {
            out.append(KeyRange(lo: lower, hi: b))
            lower = b
        }
        out.append(KeyRange(lo: lower, hi: hi))
        return out
    }
}

/// Row count and hash sum of one range on one side, as computed inside the database.
public struct RangeChecksum: Sendable, Equatable {
    public var count: Int64
    /// The exact sum of the rows' 64-bit hashes, as decimal text (PostgreSQL `numeric`).
    public var sum: String

    public init(count: Int64, sum: String) {
        self.count = count
        self.sum = sum
    }

    public static let empty = RangeChecksum(count: 0, sum: "0")
}

/// What to do next with a range, given both sides' checksums.
public enum RangeVerdict: Sendable, Equatable {
    /// Same count and hash sum: the rows are equal (up to a 2⁻⁶⁴ collision).
    case equal
    /// Only one side has rows: every one of them is missing (source) or extra (target). No hashes needed.
    case onlyIn(Side)
    /// Small enough to fetch each row's key and hash from both sides and compare them.
    case compareRows
    /// Too large to fetch: split at every n-th key of `side` (the one with more rows) and compare again.
    case split(sampleFrom: Side)
}

/// The tuning of the range descent.
public struct DescentPolicy: Sendable, Equatable {
    /// A differing range with at most this many rows (on the larger side) is compared row by row.
    /// Small, so a lone difference costs a few rows fetched, not a whole root range.
    public var leafRows: Int64
    /// When differences are so dense that most parts of a split would differ too, splitting finds
    /// little equal: differing ranges up to this many rows are then compared row by row at once.
    public var bulkLeafRows: Int64
    /// A differing larger range is split into about this many parts.
    public var fanout: Int
    /// Rows per range aimed at by the first split of a whole table.
    public var rowsPerRootRange: Int64
    /// Most ranges in the first split (each is one group in one query).
    public var maxRootRanges: Int

    public init(leafRows: Int64 = 4, bulkLeafRows: Int64 = 600, fanout: Int = 32,
                rowsPerRootRange: Int64 = 500, maxRootRanges: Int = 8_192) {
        self.leafRows = leafRows
        self.bulkLeafRows = max(leafRows, bulkLeafRows)
        self.fanout = fanout
        self.rowsPerRootRange = rowsPerRootRange
        self.maxRootRanges = maxRootRanges
    }

    /// `density`: the estimated share of differing rows (`density(differingShare:averageRows:)`).
    public func verdict(source: RangeChecksum, target: RangeChecksum, density: Double = 0) -> RangeVerdict {
        if source == target { return .equal }
        if target.count == 0 { return .onlyIn(.source) }
        if source.count == 0 { return .onlyIn(.target) }
        let rows = max(source.count, target.count)
        if rows <= leafRows { return .compareRows }
        // A part of rows/fanout rows holds no difference with probability (1 − density)^(rows/fanout);
        // below ½, most parts of a split would differ again: compare the rows now.
        if rows <= bulkLeafRows && density * Double(rows) / Double(fanout) > 0.693_147_180_559_945 { return .compareRows }
        return .split(sampleFrom: source.count >= target.count ? .source : .target)
    }

    /// The share of differing rows estimated from one level: `differingShare` of its ranges of
    /// `averageRows` rows differ, as if each row differed independently: 1 − (1 − d)^n = share.
    public static func density(differingShare: Double, averageRows: Double) -> Double {
        guard differingShare > 0, averageRows > 0 else { return 0 }
        return -SamplingMath.naturalLog(1 - min(differingShare, 0.999)) / averageRows
    }

    /// How many ranges to cut a table of about `estimatedRows` into first.
    public func rootRanges(estimatedRows: Int64) -> Int {
        guard estimatedRows > max(leafRows, rowsPerRootRange) else { return 1 }
        return Int(min(Int64(maxRootRanges), max(2, estimatedRows / rowsPerRootRange)))
    }

    /// Equal-width cuts of the integer key span [lo, hi] into at most `ranges`, when the key is dense
    /// enough (`estimatedRows` fill at least half of the span); nil means "sample boundaries instead".
    public func equalWidthBoundaries(lo: Int64, hi: Int64, ranges: Int, estimatedRows: Int64) -> EqualWidthCuts? {
        guard hi > lo, ranges > 1 else { return nil }
        let span = Double(hi) - Double(lo) + 1
        guard Double(estimatedRows) >= span / 2, span >= Double(ranges) else { return nil }
        // Dense, so the span is at most twice the row count and fits in an Int64.
        let width = (hi - lo + 1 + Int64(ranges) - 1) / Int64(ranges)
        let cuts = (1..<ranges).map { lo + Int64($0) * width }.filter { $0 <= hi }
        return EqualWidthCuts(lo: lo, width: width, cuts: cuts)
    }

    /// The union of two optional closed spans.
    public static func union(_ a: (Int64, Int64)?, _ b: (Int64, Int64)?) -> (Int64, Int64)? {
        switch (a, b) {
        case let (x?, y?): (min(x.0, y.0), max(x.1, y.1))
        case let (x?, nil): x
        case let (nil, y?): y
        case (nil, nil): nil
        }
    }

    /// Every how many keys of a range of `rows` rows to take a boundary so it splits into ~`fanout`.
    public func sampleStep(rows: Int64) -> Int64 { max(1, (rows + Int64(fanout) - 1) / Int64(fanout)) }
}

/// Cuts of an integer key span every `width` keys from `lo`: range 0 is (−∞, lo + width), range j
/// [lo + j·width, lo + (j+1)·width), the last one open above. A key's range is computed, not
/// searched, so the root level can group a sequential scan by it.
public struct EqualWidthCuts: Sendable, Equatable {
    public let lo: Int64
    public let width: Int64
    public let cuts: [Int64]

    /// The index of the range holding `key` (how many cuts are ≤ key): what the root statement's
    /// `least(greatest((k - lo) / width, 0), cuts)` computes.
    public func index(of key: Int64) -> Int {
        key < lo ? 0 : Int(min(Int64(cuts.count), (key - lo) / width))
    }
}
