import CDCCore
import CDCPostgres
import Foundation
import Logging

/// What verify found for one table.
public struct TableDiff: Sendable {
    public let source: TableName
    public let target: TableName
    public let keyNames: [String]
    public var sourceRows: Int64 = 0
    public var targetRows: Int64 = 0
    /// The differing keys listed, with what differs, in key order of the canonical texts: at most
    /// `VerifyOptions.maxDifferences`; the rest are only counted in `unlisted…`.
    public var differences: [(key: KeyTexts, difference: RowDifference)] = []
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
    /// A sampled verify: how the keys were drawn and the estimated mismatch rate (nil: every key).
    public var sample: SampleSummary?
    /// An incremental verify: the changed keys compared, and where they came from (nil: every key).
    public var incremental: IncrementalSummary?

    public var missing: Int { unlistedMissing + differences.count { if case .missing = $0.difference { true } else { false } } }
    public var extra: Int { unlistedExtra + differences.count { if case .extra = $0.difference { true } else { false } } }
    public var different: Int { unlistedDifferent + differences.count { if case .different = $0.difference { true } else { false } } }
    public var unlisted: Int { unlistedMissing + unlistedExtra + unlistedDifferent }
    public var isConsistent: Bool { differences.isEmpty && unlisted == 0 }

    /// `{"id":"7"}`: the key as a JSON object of canonical texts (reports, the repair log).
    public func keyJSON(_ key: KeyTexts) -> String { keyJSONObject(names: keyNames, key: key) }

    /// `id=7` or `order_id=1, line_no=2`.
    public func describe(_ key: KeyTexts) -> String {
        zip(keyNames, key).map { "\($0)=\($1)" }.joined(separator: ", ")
    }
}

/// `{"id":"7"}`: key column names to the key's canonical texts, as a JSON object.
func keyJSONObject(names: [String], key: KeyTexts) -> String {
    "{" + zip(names, key).map { "\(JSONValue.string($0).serialized):\(JSONValue.string($1).serialized)" }.joined(separator: ",") + "}"
}

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
    let progress: (String) -> Void
    let logger: Logger
    /// Rows fetched per statement when comparing whole rows.
    var rowChunk = 5_000
    /// Ranges per statement when fetching keys and hashes.
    var rangesPerFetch = 200
    /// Ranges per checksum statement.
    var rangesPerChecksum = 1_024

    public init(pair: TablePair, source: VerifySide, target: VerifySide, policy: DescentPolicy = DescentPolicy(),
                floatTolerance: Double?, maxListed: Int = VerifyOptions.defaultMaxDifferences, listExtra: Bool = true, logger: Logger = Logger(label: "cdcr.verify"),
                progress: @escaping (String) -> Void = { _ in }) {
        self.logger = logger
        self.maxListed = maxListed
        self.listExtra = listExtra
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
        if settleSeconds > 0 && !diff.differences.isEmpty {
            progress("\(diff.differences.count) differing rows; re-checking them in \(settleSeconds) s (--settle)")
            Thread.sleep(forTimeInterval: settleSeconds)
            let before = diff.differences.count
            diff.differences = try compareRows(diff.differences.map(\.key))
            diff.settled = before - diff.differences.count
        }
        diff.differences.sort { keyPrecedes($0.key, $1.key) }
        diff.duration = ContinuousClock.now - started
        return diff
    }

    static func beginSnapshot(_ conn: PGConnection) throws {
        try conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
    }

    private func descend(into diff: inout TableDiff) throws {
        let (source, target) = (self.source, self.target)
        let (se, te) = try concurrently({ try source.estimatedRows() }, { try target.estimatedRows() })
        let estimate = max(se, te)
        let rootCount = policy.rootRanges(estimatedRows: estimate)
        var ranges = KeyRange.all.split(at: try rootBoundaries(count: rootCount, estimate: estimate, sampler: se >= te ? source : target))
        trace("sampled \(ranges.count) ranges")
        var candidates: [KeyTexts] = []
        var missing: [KeyTexts] = [], extra: [KeyTexts] = []
        // Past `maxListed` keys, differences are counted, not kept.
        var listed = 0
        func keep(_ keys: [KeyTexts], of total: Int, in list: inout [KeyTexts], unlisted: inout Int, listing: Bool = true) {
            let n = listing ? min(keys.count, max(0, maxListed - listed)) : 0
            list += keys.prefix(n)
            listed += n
            unlisted += total - n
        }
        var level = 0
        while !ranges.isEmpty {
            // In statements of `rangesPerChecksum` ranges, so a large table shows progress as it goes.
            var cs: [RangeChecksum] = [], ct: [RangeChecksum] = []
            var sourceRows: Int64 = 0, targetRows: Int64 = 0
            for slice in ranges.chunks(of: rangesPerChecksum) {
                let chunk = Array(slice)
                let (s, t) = try concurrently({ try source.checksums(chunk) }, { try target.checksums(chunk) })
                cs += s
                ct += t
                sourceRows += s.reduce(0) { $0 + $1.count }
                targetRows += t.reduce(0) { $0 + $1.count }
                if ranges.count > rangesPerChecksum {
                    progress("level \(level): checksummed \(cs.count) of \(ranges.count) ranges (\(sourceRows) source rows)")
                }
            }
            if level == 0 {
                diff.sourceRows = sourceRows
                diff.targetRows = targetRows
            }
            diff.rangesPerLevel.append(ranges.count)
            var leaves: [KeyRange] = [], onlySource: [(KeyRange, Int64)] = [], onlyTarget: [(KeyRange, Int64)] = []
            var splitSource: [(KeyRange, Int64)] = [], splitTarget: [(KeyRange, Int64)] = []
            for (i, range) in ranges.enumerated() {
                switch policy.verdict(source: cs[i], target: ct[i]) {
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

            // Bounded statements: at most `rangesPerFetch` ranges (≤ 600 rows each, or one-sided) at a time.
            for slice in leaves.chunks(of: rangesPerFetch) {
                let chunk = Array(slice)
                let (hs, ht) = try concurrently({ try source.rowHashes(chunk) }, { try target.rowHashes(chunk) })
                let found = differingKeys(source: hs, target: ht)
                keep(found.missing, of: found.missing.count, in: &missing, unlisted: &diff.unlistedMissing)
                keep(found.extra, of: found.extra.count, in: &extra, unlisted: &diff.unlistedExtra, listing: listExtra)
                keep(found.changed, of: found.changed.count, in: &candidates, unlisted: &diff.unlistedDifferent)
                diff.rowsFetched += hs.count + ht.count
            }
            trace("leaves \(leaves.count)")
            let sourceOnly = onlySource.chunks(of: rangesPerFetch), targetOnly = onlyTarget.chunks(of: rangesPerFetch)
            for i in 0..<max(sourceOnly.count, targetOnly.count) {
                let s = i < sourceOnly.count ? Array(sourceOnly[i]) : [], t = i < targetOnly.count ? Array(targetOnly[i]) : []
                // One-sided ranges can hold a whole table (an empty target): fetch only the keys
                // that still fit the listing; the checksums already counted the rest.
                let room = max(0, maxListed - listed)
                let extraRoom = listExtra ? room : 0
                let (ks, kt) = try concurrently({ try source.keys(s.map(\.0), limit: room) }, { try target.keys(t.map(\.0), limit: extraRoom) })
                keep(ks, of: Int(s.reduce(0) { $0 + $1.1 }), in: &missing, unlisted: &diff.unlistedMissing)
                keep(kt, of: Int(t.reduce(0) { $0 + $1.1 }), in: &extra, unlisted: &diff.unlistedExtra, listing: listExtra)
                diff.rowsFetched += ks.count + kt.count
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
        // A key can look missing in one range and extra in another when the sides order text keys
        // differently; such keys exist on both sides and are compared as rows.
        trace("descent done")
        let extraSet = Set(extra)
        let both = Set(missing.filter { extraSet.contains($0) })
        candidates += both
        var differences = missing.filter { !both.contains($0) }.map { (key: $0, difference: RowDifference.missing) }
        differences += extra.filter { !both.contains($0) }.map { (key: $0, difference: RowDifference.extra) }
        differences += try compareRows(candidates)
        diff.differences = differences
        trace("rows compared")
    }

    private let traceStart = ContinuousClock.now
    /// Phase timings at debug level (`--log-level debug`), for tuning the descent.
    private func trace(_ what: String) {
        logger.debug("verify phase", metadata: ["table": "\(pair.source.name)", "phase": "\(what)", "elapsed": "\(ContinuousClock.now - traceStart)"])
    }

    /// Keys cutting the whole table into about `count` ranges of similar size. A dense integer key
    /// (at least half of its span occupied, so no equal-width range can hold more than about twice the
    /// average) is cut arithmetically from its bounds; any other key at keys sampled from `sampler`.
    func rootBoundaries(count: Int, estimate: Int64, sampler: VerifySide) throws -> [KeyTexts] {
        guard count > 1 else { return [] }
        let (source, target) = (self.source, self.target)
        let (bs, bt) = try concurrently({ try source.integerKeyBounds() }, { try target.integerKeyBounds() })
        if let (lo, hi) = DescentPolicy.union(bs, bt), let cuts = policy.equalWidthBoundaries(lo: lo, hi: hi, ranges: count, estimatedRows: estimate) {
            return cuts.map { [String($0)] }
        }
        return try sampler.rootBoundaries(ranges: count, estimatedRows: estimate)
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
