@testable import CDCCore
import Testing

@Suite("verify: range descent, row comparison, predicate shape")
struct VerifyLogicTests {
    let policy = DescentPolicy(leafRows: 100, fanout: 10, rowsPerRootRange: 50, maxRootRanges: 1_000)

    func c(_ n: Int64, _ sum: String) -> RangeChecksum { RangeChecksum(count: n, sum: sum) }

    @Test("equal checksums are done; one empty side needs no hashes; small ranges compare rows; large ones split at the larger side")
    func verdicts() {
        #expect(policy.verdict(source: c(500, "17"), target: c(500, "17")) == .equal)
        #expect(policy.verdict(source: c(500, "17"), target: c(0, "0")) == .onlyIn(.source))
        #expect(policy.verdict(source: .empty, target: c(3, "9")) == .onlyIn(.target))
        #expect(policy.verdict(source: c(100, "1"), target: c(99, "2")) == .compareRows)
        #expect(policy.verdict(source: c(500, "1"), target: c(501, "1")) == .split(sampleFrom: .target))
        #expect(policy.verdict(source: c(500, "1"), target: c(500, "2")) == .split(sampleFrom: .source))
        // Same count, different sums: a changed row, not an equal range.
        #expect(policy.verdict(source: c(50, "1"), target: c(50, "2")) == .compareRows)
    }

    @Test("splitting keeps the range covered: n boundaries give n + 1 adjacent ranges, duplicates of the bound dropped")
    func split() {
        let r = KeyRange(lo: ["10"], hi: ["90"])
        let parts = r.split(at: [["10"], ["30"], ["60"]])
        #expect(parts == [KeyRange(lo: ["10"], hi: ["30"]), KeyRange(lo: ["30"], hi: ["60"]), KeyRange(lo: ["60"], hi: ["90"])])
        #expect(KeyRange.all.split(at: []) == [.all])
        #expect(KeyRange.all.split(at: [["5"]]) == [KeyRange(lo: nil, hi: ["5"]), KeyRange(lo: ["5"], hi: nil)])
    }

    @Test("root ranges: one for small tables, rows/rowsPerRootRange otherwise, capped")
    func rootRanges() {
        #expect(policy.rootRanges(estimatedRows: 80) == 1)
        #expect(policy.rootRanges(estimatedRows: 5_000) == 100)
        #expect(policy.rootRanges(estimatedRows: 10_000_000) == 1_000)
        #expect(policy.sampleStep(rows: 1_000) == 100)
    }

    @Test("dense integer keys are cut arithmetically; sparse ones are left to sampling")
    func equalWidth() throws {
        let cuts = try #require(policy.equalWidthBoundaries(lo: 1, hi: 1_000, ranges: 4, estimatedRows: 1_000))
        #expect(cuts.cuts == [251, 501, 751] && cuts.width == 250)
        // The computed range index agrees with the cuts: range j is [cut j, cut j+1).
        let ranges = KeyRange.all.split(at: cuts.cuts.map { [String($0)] })
        for key in [Int64(-5), 1, 250, 251, 500, 501, 750, 751, 1_000, 5_000] {
            let j = cuts.index(of: key)
            #expect((ranges[j].lo.map { Int64($0[0])! <= key } ?? true) && (ranges[j].hi.map { key < Int64($0[0])! } ?? true), "key \(key) in range \(j)")
        }
        // A span that does not divide evenly: the last cut stays inside it.
        let uneven = try #require(policy.equalWidthBoundaries(lo: 10, hi: 1_009, ranges: 3, estimatedRows: 1_000))
        #expect(uneven.cuts == [344, 678] && uneven.index(of: 1_009) == 2 && uneven.index(of: 343) == 0)
        #expect(policy.equalWidthBoundaries(lo: 1, hi: 1_000_000_000, ranges: 4, estimatedRows: 1_000) == nil)
        #expect(DescentPolicy.union((5, 9), (1, 7))! == (1, 9))
        #expect(DescentPolicy.union(nil, nil) == nil)
    }

    @Test("rows compare column by column; floats within the tolerance are equal")
    func rowComparison() {
        let cols = [
            ComparedColumn(name: "id", sourceKind: .integer, targetKind: .integer, position: 0),
            ComparedColumn(name: "x", sourceKind: .float, targetKind: .float, position: 1),
            ComparedColumn(name: "s", sourceKind: .text, targetKind: .text, position: 2),
        ]
        let exact = RowComparator(columns: cols, floatTolerance: nil)
        let loose = RowComparator(columns: cols, floatTolerance: 1e-9)
        #expect(exact.compare(source: ["1", "0.30000000000000004", "a"], target: ["1", "0.3", "a"]) == .different(columns: ["x"]))
        #expect(loose.compare(source: ["1", "0.30000000000000004", "a"], target: ["1", "0.3", "a"]) == nil)
        #expect(loose.compare(source: ["1", "0.3", nil], target: ["1", "0.3", "a"]) == .different(columns: ["s"]))
        #expect(exact.compare(source: ["1", nil, nil], target: nil) == .missing)
        #expect(exact.compare(source: nil, target: ["1", nil, nil]) == .extra)
    }

    @Test("leaf comparison finds missing, extra and changed keys")
    func leafKeys() {
        let d = differingKeys(source: [["1"]: 10, ["2"]: 20, ["3"]: 30], target: [["2"]: 20, ["3"]: 31, ["4"]: 40])
        #expect(d.missing == [["1"]])
        #expect(d.extra == [["4"]])
        #expect(d.changed == [["3"]])
    }

    @Test("columns of different but compatible types compare in a common type")
    func commonTypes() {
        #expect(CompareType.common(.integer, .numeric) == .numeric)
        #expect(CompareType.common(.numeric, .float) == .float)
        #expect(CompareType.common(.timestamp, .timestamptz) == .timestamptz)
        #expect(CompareType.common(.uuid, .text) == .text)
        #expect(CompareType.common(.json, .json) == .json)
        let ts = ComparedColumn(name: "at", sourceKind: .timestamp, targetKind: .timestamptz, position: 3)
        #expect(ts.canonicalText(.source).contains("AT TIME ZONE 'UTC'"))
        #expect(ts.hash(.target).hasPrefix("coalesce(timestamp_hash_extended("))
    }

    @Test("a --where must be one expression: no statement end, comment, dollar or stray parenthesis outside quotes")
    func predicateShape() {
        #expect(predicateShapeProblem("status = 'paid' AND amount > 10") == nil)
        #expect(predicateShapeProblem("note = 'a;b -- (c'") == nil)
        #expect(predicateShapeProblem("true; DROP TABLE orders") != nil)
        #expect(predicateShapeProblem("true) OR (false") != nil)
        #expect(predicateShapeProblem("true -- comment") != nil)
        #expect(predicateShapeProblem("id = $1") != nil)
        #expect(predicateShapeProblem("note = 'open") != nil)
        #expect(predicateShapeProblem("  ") != nil)
    }

    @Test("chunks keep order and size; the last one holds the rest")
    func chunking() {
        #expect(Array(1...7).chunks(of: 3).map(Array.init) == [[1, 2, 3], [4, 5, 6], [7]])
        #expect([Int]().chunks(of: 3).isEmpty)
    }

    @Test("report order: integer keys numerically")
    func keyOrder() {
        #expect(keyPrecedes(["9"], ["10"]))
        #expect(keyPrecedes(["a"], ["b"]))
        #expect(keyPrecedes(["1", "9"], ["1", "10"]))
    }
}

@Suite("verify descent: leaf size and dense differences")
struct DescentDensityTests {
    let policy = DescentPolicy()

    @Test("sparse differences split down to tiny leaves; dense ones are compared row by row at once")
    func bulkLeaves() {
        let s = RangeChecksum(count: 500, sum: "1"), t = RangeChecksum(count: 500, sum: "2")
        // 121 differing rows in 1,000,000: 6 % of 2,000 root ranges differ → split.
        let sparse = DescentPolicy.density(differingShare: 121.0 / 2000, averageRows: 500)
        #expect(abs(sparse - 121.0 / 1_000_000) < 0.2 * 121.0 / 1_000_000)
        #expect(policy.verdict(source: s, target: t, density: sparse) == .split(sampleFrom: .source))
        // 1 % of rows differ: nearly every 500-row range differs, but only ~15 % of its 16-row parts.
        let onePercent = DescentPolicy.density(differingShare: 0.993, averageRows: 500)
        #expect(policy.verdict(source: s, target: t, density: onePercent) == .split(sampleFrom: .source))
        // 10 % of rows differ: a 16-row part differs with probability ~0.8 → compare now.
        let dense = DescentPolicy.density(differingShare: 0.999, averageRows: 50)
        #expect(policy.verdict(source: s, target: t, density: dense) == .compareRows)
        // Small ranges are leaves; larger than bulkLeafRows always split.
        #expect(policy.verdict(source: RangeChecksum(count: 4, sum: "1"), target: RangeChecksum(count: 3, sum: "1")) == .compareRows)
        #expect(policy.verdict(source: RangeChecksum(count: 5000, sum: "1"), target: t, density: 1) == .split(sampleFrom: .source))
        #expect(DescentPolicy.density(differingShare: 0, averageRows: 500) == 0)
    }

    @Test("keys order integers numerically and before other texts, so the order is total")
    func totalKeyOrder() {
        #expect(keyPrecedes(["9"], ["10"]))
        #expect(keyPrecedes(["10"], ["1a"]))
        #expect(!keyPrecedes(["1a"], ["9"]))
        #expect(keyPrecedes(["b", "2"], ["b", "10"]))
        #expect(!keyPrecedes(["7"], ["7"]))
    }
}

@Suite("verify descent: hash buckets")
struct BucketLevelTests {
    @Test("masks and root bits: the smallest power of two of at least the wanted buckets")
    func rootBits() {
        #expect(BucketLevel.mask(0) == 0 && BucketLevel.mask(11) == 2047 && BucketLevel.mask(62) == Int64.max >> 1)
        #expect(BucketLevel.rootBits(estimatedRows: 10) == 1)
        #expect(BucketLevel.rootBits(estimatedRows: 1_000_000) == 14)  // 16,384 buckets of 61 rows
        #expect(BucketLevel.rootBits(estimatedRows: 65_536) == 10)
        #expect(BucketLevel.rootBits(estimatedRows: 65_537) == 11)
        #expect(BucketLevel.rootBits(estimatedRows: 10_000_000_000) == BucketLevel.maxRootBits)
    }

    @Test("children of about two rows, at least one more bit, at most maxChildren of them")
    func childBits() {
        // 488-row buckets: 8 more bits give 1.9 rows per child.
        #expect(BucketLevel.childBits(bits: 11, parents: 118, averageRows: 488) == 19)
        #expect(BucketLevel.childBits(bits: 11, parents: 118, averageRows: 3) == 12)
        // 10,000 parents of 10,000 rows: 13 bits would make 82 million children; capped.
        let capped = BucketLevel.childBits(bits: 13, parents: 10_000, averageRows: 10_000)
        #expect(capped - 13 >= 1 && 10_000 << (capped - 13) <= BucketLevel.maxChildren)
        #expect(BucketLevel.childBits(bits: 61, parents: 1, averageRows: 1_000_000) == BucketLevel.maxBits)
    }

    @Test("buckets suit tables of similar size; many differing root buckets give the descent up")
    func suitsAndGivesUp() {
        #expect(BucketLevel.suits(sourceRows: 1_000_000, targetRows: 999_980))
        #expect(BucketLevel.suits(sourceRows: 5_000, targetRows: 3_500))
        #expect(!BucketLevel.suits(sourceRows: 10_000_000, targetRows: 0))
        #expect(!BucketLevel.suits(sourceRows: 10_000, targetRows: 4_000))
        #expect(!BucketLevel.givesUp(differing: 121, buckets: 16_384, sourceRows: 1_000_000, targetRows: 999_981, summarizeRows: 1000))
        #expect(BucketLevel.givesUp(differing: 2_000, buckets: 16_384, sourceRows: 1_000_000, targetRows: 1_000_000, summarizeRows: 1000))
        // A stretch of 1,500 keys on one side may be summarised as a range.
        #expect(BucketLevel.givesUp(differing: 20, buckets: 16_384, sourceRows: 1_000_000, targetRows: 998_500, summarizeRows: 1000))
    }
}
