import CDCCore
import CDCPostgres
import Foundation
import Logging

/// Compares one table between source and target by descending key ranges: each level computes, in
/// both databases at once, the row count and the sum of 64-bit row hashes of every range; equal
/// ranges are done, small differing ranges are compared key by key (hashes only), large ones are
/// split at keys sampled from the side with more rows. Only the rows whose hashes differ are fetched
/// whole, to name the differing columns. Each side reads one REPEATABLE READ snapshot.
public final class TableVerifier {
    let pair: TablePair
    let source: VerifySide
    let target: VerifySide
    let policy: DescentPolicy
    let comparator: RowComparator
    /// Differing keys kept in memory at most; further ones are only counted.
    let maxListed: Int
    /// False: extra target rows are counted, never listed (see `VerifyOptions.listExtra`).
    let listExtra: Bool
    /// A run of one-sided ranges with more rows is reported as a range, not key by key.
    let summarizeRows: Int64
    let progress: (String) -> Void
    let logger: Logger
    /// Rows fetched per statement when comparing whole rows.
    var rowChunk = 5_000
    /// Ranges per statement when fetching keys and hashes.
    var rangesPerFetch = 200
    /// Ranges per checksum statement.
    var rangesPerChecksum = 1_024

    public init(pair: TablePair, source: VerifySide, target: VerifySide, policy: DescentPolicy = DescentPolicy(),
                floatTolerance: Double?, maxListed: Int = VerifyOptions.defaultMaxDifferences, listExtra: Bool = true,
                summarizeRows: Int64 = VerifyOptions.defaultSummarizeRows, logger: Logger = Logger(label: "cdcr.verify"),
                progress: @escaping (String) -> Void = { _ in }) {
        self.logger = logger
        self.maxListed = maxListed
        self.listExtra = listExtra
        self.summarizeRows = summarizeRows
        self.pair = pair
        self.source = source
        self.target = target
        self.policy = policy
        self.comparator = RowComparator(columns: pair.columns, floatTolerance: floatTolerance)
        self.progress = progress
    }

    /// Runs the comparison; `settleSeconds` > 0 re-checks the differing rows after that delay.
    public func run(settleSeconds: Double = 0) throws -> TableDiff {
        let started = ContinuousClock.now
        var diff = TableDiff(source: pair.source.name, target: pair.target.name, keyNames: pair.keyColumns.map(\.name))
        diff.notes = pair.notes
        let (source, target) = (self.source, self.target)
        _ = try concurrently({ try Self.beginSnapshot(source.conn) }, { try Self.beginSnapshot(target.conn) })
        do {
            try descend(into: &diff)
            _ = try concurrently({ try source.conn.execute("COMMIT") }, { try target.conn.execute("COMMIT") })
        } catch {
            _ = try? source.conn.execute("ROLLBACK")
            _ = try? target.conn.execute("ROLLBACK")
            throw error
        }
        if settleSeconds > 0 && diff.listed > 0 {
            progress("\(diff.listed) differing rows; re-checking them in \(settleSeconds) s (--settle)")
            Thread.sleep(forTimeInterval: settleSeconds)
            let before = diff.listed
            diff.spill = try diff.spill.rewritten(batch: rowChunk) { try compareRows($0.map(\.key)) }
            diff.settled = before - diff.listed
        }
        diff.duration = ContinuousClock.now - started
        return diff
    }

    static func beginSnapshot(_ conn: PGConnection) throws {
        try conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
    }

    /// Chooses the descent: key ranges cut arithmetically for a dense integer key (its rows are
    /// usually stored in key order, so range scans read the table sequentially); hash buckets for any
    /// other key when both sides hold similar numbers of rows (one sequential scan per level,
    /// whatever the key type or physical order); key ranges cut at sampled keys otherwise, or when
    /// the buckets find the tables too far apart (ranges summarise one-sided stretches).
    private func descend(into diff: inout TableDiff) throws {
        let (source, target) = (self.source, self.target)
        let (se, te) = try concurrently({ try source.estimatedRows() }, { try target.estimatedRows() })
        let estimate = max(se, te)
        let rootCount = policy.rootRanges(estimatedRows: estimate)
        if rootCount > 1 {
            let (bs, bt) = try concurrently({ try source.integerKeyBounds() }, { try target.integerKeyBounds() })
            if let (lo, hi) = DescentPolicy.union(bs, bt), let cuts = policy.equalWidthBoundaries(lo: lo, hi: hi, ranges: rootCount, estimatedRows: estimate) {
                return try descendByRanges(into: &diff, root: KeyRange.all.split(at: cuts.cuts.map { [String($0)] }), arithmetic: cuts)
            }
            if BucketLevel.suits(sourceRows: se, targetRows: te),
               try descendByBuckets(into: &diff, estimatedRows: estimate) {
                return
            }
        }
        let sampler = se >= te ? source : target
        let root = rootCount > 1 ? try sampler.rootBoundaries(ranges: rootCount, estimatedRows: estimate) : []
        try descendByRanges(into: &diff, root: KeyRange.all.split(at: root))
    }

    /// The range descent from the `root` ranges down; `arithmetic`: the root ranges are these
    /// equal-width cuts, checksummed in one sequential scan per side instead of a range scan each.
    private func descendByRanges(into diff: inout TableDiff, root: [KeyRange], arithmetic: EqualWidthCuts? = nil) throws {
        diff.method = .keyRanges
        let (source, target) = (self.source, self.target)
        var ranges = root
        trace("sampled \(ranges.count) ranges")
        let found = DifferenceCollector(self, spill: diff.spill)
        var level = 0
        while !ranges.isEmpty {
            let cs: [RangeChecksum], ct: [RangeChecksum]
            if level == 0, let cuts = arithmetic {
                (cs, ct) = try concurrently({ try source.checksums(cuts) }, { try target.checksums(cuts) })
            } else {
                (cs, ct) = try checksums(of: ranges, level: level)
            }
            let sourceRows = cs.reduce(0) { $0 + $1.count }, targetRows = ct.reduce(0) { $0 + $1.count }
            if level == 0 {
                diff.sourceRows = sourceRows
                diff.targetRows = targetRows
            }
            diff.rangesPerLevel.append(ranges.count)
            let density = DescentPolicy.density(differingShare: Double(ranges.indices.count { cs[$0] != ct[$0] }) / Double(ranges.count),
                                                averageRows: Double(max(sourceRows, targetRows)) / Double(ranges.count))
            var leaves: [KeyRange] = [], onlySource: [(KeyRange, Int64)] = [], onlyTarget: [(KeyRange, Int64)] = []
            var splitSource: [(KeyRange, Int64)] = [], splitTarget: [(KeyRange, Int64)] = []
            for (i, range) in ranges.enumerated() {
                switch policy.verdict(source: cs[i], target: ct[i], density: density) {
                case .equal: break
                case .compareRows: leaves.append(range)
                case .onlyIn(.source): onlySource.append((range, cs[i].count))
                case .onlyIn(.target): onlyTarget.append((range, ct[i].count))
                case .split(sampleFrom: .source): splitSource.append((range, cs[i].count))
                case .split(sampleFrom: .target): splitTarget.append((range, ct[i].count))
                }
            }
            trace("level \(level) ranges \(ranges.count)")
            progress("level \(level): \(ranges.count) ranges, \(ranges.count - leaves.count - onlySource.count - onlyTarget.count - splitSource.count - splitTarget.count) equal, \(leaves.count + onlySource.count + onlyTarget.count) compared row by row, \(splitSource.count + splitTarget.count) split further")

            // Runs of one-sided ranges larger than `summarizeRows` are reported as ranges, without a key.
            let (sourceRuns, targetRuns) = (Self.runs(onlySource), Self.runs(onlyTarget))
            diff.ranges += sourceRuns.filter { $0.1 > summarizeRows }.map { RangeDifference(range: $0.0, side: .source, rows: $0.1) }
            diff.ranges += targetRuns.filter { $0.1 > summarizeRows }.map { RangeDifference(range: $0.0, side: .target, rows: $0.1) }
            var smallSource = sourceRuns.filter { $0.1 <= summarizeRows }, smallTarget = targetRuns.filter { $0.1 <= summarizeRows }
            // While the listing has room for all of them, the smaller one-sided runs go with the
            // leaves, in key order: a stretch where nearly every row differs (changed rows between
            // missing ones) is one run.
            var fetched = leaves
            if smallSource.reduce(0, { $0 + $1.1 }) + smallTarget.reduce(0, { $0 + $1.1 }) <= Int64(found.room) {
                fetched += smallSource.map(\.0) + smallTarget.map(\.0)
                (smallSource, smallTarget) = ([], [])
            }
            // Bounded statements: at most `rangesPerFetch` ranges (≤ `bulkLeafRows` rows each, or ≤ `summarizeRows` one-sided) at a time.
            let runs = LeafRuns(found: found, summarizeRows: summarizeRows)
            for slice in fetched.sorted(by: { $0.precedes($1) }).chunks(of: rangesPerFetch) {
                let chunk = Array(slice)
                let (hs, ht) = try concurrently({ try source.rowHashesPerRange(chunk) }, { try target.rowHashesPerRange(chunk) })
                for i in chunk.indices { try runs.add(chunk[i], source: hs[i], target: ht[i]) }
            }
            try runs.finish()
            diff.ranges += runs.ranges
            trace("leaves \(leaves.count)")
            // Otherwise they are listed as far as the listing goes, the rest counted from their checksums.
            let sourceOnly = smallSource.chunks(of: rangesPerFetch), targetOnly = smallTarget.chunks(of: rangesPerFetch)
            for i in 0..<max(sourceOnly.count, targetOnly.count) {
                let s = i < sourceOnly.count ? Array(sourceOnly[i]) : [], t = i < targetOnly.count ? Array(targetOnly[i]) : []
                // Fetch only the keys that still fit the listing; the checksums already counted the rest.
                let room = found.room
                let extraRoom = listExtra ? room : 0
                let (ks, kt) = try concurrently({ try source.keys(s.map(\.0), limit: room) }, { try target.keys(t.map(\.0), limit: extraRoom) })
                try found.keep(ks, of: Int(s.reduce(0) { $0 + $1.1 }), as: .missing)
                try found.keep(kt, of: Int(t.reduce(0) { $0 + $1.1 }), as: .extra, listing: listExtra)
                found.rowsFetched += ks.count + kt.count
            }

            let policy = self.policy
            let (bs, bt) = try concurrently(
                { [splitSource] in try source.boundaries(splitSource.map(\.0), steps: splitSource.map { policy.sampleStep(rows: $0.1) }) },
                { [splitTarget] in try target.boundaries(splitTarget.map(\.0), steps: splitTarget.map { policy.sampleStep(rows: $0.1) }) })
            trace("boundaries for \(splitSource.count + splitTarget.count)")
            ranges = []
            for (i, (range, _)) in splitSource.enumerated() { ranges += range.split(at: bs[i]) }
            for (i, (range, _)) in splitTarget.enumerated() { ranges += range.split(at: bt[i]) }
            level += 1
        }
        try found.finish(into: &diff)
        diff.ranges = Self.merged(diff.ranges.sorted { $0.range.precedes($1.range) })
        // A key can look missing in one range and extra in another when the sides order text keys
        // differently; such keys exist on both sides and are compared as rows.
        if diff.spill.missing > 0 && diff.spill.extra > 0 { try resolveKeysOnBothSides(&diff) }
        trace("rows compared")
    }

    /// Both sides' checksums of `ranges`, in statements of `rangesPerChecksum` ranges so a large
    /// table shows progress as it goes.
    private func checksums(of ranges: [KeyRange], level: Int) throws -> ([RangeChecksum], [RangeChecksum]) {
        let (source, target) = (self.source, self.target)
        var cs: [RangeChecksum] = [], ct: [RangeChecksum] = []
        var sourceRows: Int64 = 0
        for slice in ranges.chunks(of: rangesPerChecksum) {
            let chunk = Array(slice)
            let (s, t) = try concurrently({ try source.checksums(chunk) }, { try target.checksums(chunk) })
            cs += s
            ct += t
            sourceRows += s.reduce(0) { $0 + $1.count }
            if ranges.count > rangesPerChecksum {
                progress("level \(level): checksummed \(cs.count) of \(ranges.count) ranges (\(sourceRows) source rows)")
            }
        }
        return (cs, ct)
    }

    /// Consecutive ranges (one's end is the next one's start) merged, with their row counts added.
    static func runs(_ list: [(KeyRange, Int64)]) -> [(KeyRange, Int64)] {
        var out: [(KeyRange, Int64)] = []
        for (range, rows) in list {
            if let last = out.last, let hi = last.0.hi, hi == range.lo {
                out[out.count - 1] = (KeyRange(lo: last.0.lo, hi: range.hi), last.1 + rows)
            } else {
                out.append((range, rows))
            }
        }
        return out
    }

    /// Summarised ranges of one side that meet (found at different levels) as one range.
    static func merged(_ sorted: [RangeDifference]) -> [RangeDifference] {
        var out: [RangeDifference] = []
        for r in sorted {
            if let last = out.last, let both = last.joined(r) { out[out.count - 1] = both } else { out.append(r) }
        }
        return out
    }

    /// Keys listed both as missing and as extra (adjacent in key order) are compared as rows instead.
    private func resolveKeysOnBothSides(_ diff: inout TableDiff) throws {
        var both: [KeyTexts] = []
        var previous: ListedDifference?
        try diff.spill.forEach { item in
            if let p = previous, p.key == item.key, case .missing = p.difference, case .extra = item.difference { both.append(item.key) }
            previous = item
        }
        guard !both.isEmpty else { return }
        let twice = Set(both)
        let out = DifferenceSpill(keyCount: pair.keyCount)
        try diff.spill.forEach { if !twice.contains($0.key) { try out.append($0.key, $0.difference) } }
        try out.append(contentsOf: compareRows(both))
        try out.finish()
        diff.spill = out
    }

    let traceStart = ContinuousClock.now
    /// Phase timings at debug level (`--log-level debug`), for tuning the descent.
    func trace(_ what: String) {
        logger.debug("verify phase", metadata: ["table": "\(pair.source.name)", "phase": "\(what)", "elapsed": "\(ContinuousClock.now - traceStart)"])
    }

    /// Fetches the rows of `keys` from both sides and compares them column by column.
    func compareRows(_ keys: [KeyTexts]) throws -> [(key: KeyTexts, difference: RowDifference)] {
        var out: [(key: KeyTexts, difference: RowDifference)] = []
        let (source, target) = (self.source, self.target)
        for slice in keys.chunks(of: rowChunk) {
            let chunk = Array(slice)
            let (rs, rt) = try concurrently({ try source.rows(chunk) }, { try target.rows(chunk) })
            for key in chunk {
                if let d = comparator.compare(source: rs[key], target: rt[key]) { out.append((key, d)) }
            }
        }
        return out
    }
}
