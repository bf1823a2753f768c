import CDCCore
import CDCPostgres

/// What `cdcr verify --sample N` / `--confidence C --margin E [--seed S]` asks for.
public struct SampleOptions: Sendable {
    /// A fixed sample size (`--sample N`); nil derives it from `margin`.
    public var size: Int?
    /// The wanted half-width of the interval (`--margin E`).
    public var margin: Double?
    /// The interval's confidence (`--confidence`, default 0.95); with `margin` it sets the size.
    public var confidence = 0.95
    /// The seed that makes the sample reproducible (`--seed`; random and reported when not given).
    public var seed: UInt64 = 0
    /// A single-column integer key whose keys fill at least this share of [min, max] is sampled by
    /// drawing random keys (index probes); sparser ones, and other keys, by the seeded key hash.
    public var minDensity = 0.05

    public init() {}
}

/// How a sample was drawn, and what it says about the table.
public struct SampleSummary: Sendable {
    public enum Method: Sendable, Equatable {
        /// Uniform random keys in [lo, hi], those on neither side rejected.
        case randomKeys(lo: Int64, hi: Int64, drawn: Int)
        /// Keys whose `hashtextextended(key, seed)` is below the threshold, a share `fraction` of all.
        case keyHash(fraction: Double)
    }
    public let method: Method
    public let seed: UInt64
    /// The size asked for (from `--sample` or the margin).
    public let requested: Int
    public let estimate: SampleEstimate

    public var methodDescription: String {
        switch method {
        case let .randomKeys(lo, hi, drawn): "random keys in [\(lo), \(hi)], \(drawn) drawn"
        case let .keyHash(fraction): "seeded key hash, fraction \(fraction < 1 ? String(fraction) : "1 (every key)")"
        }
    }
}

extension TableVerifier {
    /// Compares a uniform random sample of the table's keys — drawn from the keys of either side, so
    /// missing and extra rows are sampled too — row by row, and estimates the mismatch rate.
    /// Reads one REPEATABLE READ snapshot per side.
    public func runSample(_ options: SampleOptions) throws -> TableDiff {
        let started = ContinuousClock.now
        var diff = TableDiff(source: pair.source.name, target: pair.target.name, keyNames: pair.keyColumns.map(\.name))
        diff.notes = pair.notes
        let (source, target) = (self.source, self.target)
        _ = try concurrently({ try Self.beginSnapshot(source.conn) }, { try Self.beginSnapshot(target.conn) })
        do {
            try drawAndCompare(options, into: &diff)
            _ = try concurrently({ try source.conn.execute("COMMIT") }, { try target.conn.execute("COMMIT") })
        } catch {
            _ = try? source.conn.execute("ROLLBACK")
            _ = try? target.conn.execute("ROLLBACK")
            throw error
        }
        diff.duration = ContinuousClock.now - started
        return diff
    }

    private func drawAndCompare(_ options: SampleOptions, into diff: inout TableDiff) throws {
        let (source, target) = (self.source, self.target)
        let (se, te) = try concurrently({ try source.estimatedRows() }, { try target.estimatedRows() })
        let planned = max(se, te, 1)
        let requested = options.size ?? SamplingMath.sampleSize(confidence: options.confidence, margin: options.margin ?? 0.01, population: planned)
        let seed = Int64(bitPattern: options.seed)
        var s: [KeyTexts: Int64] = [:], t: [KeyTexts: Int64] = [:]
        let method: SampleSummary.Method
        let population: Int64
        let (bs, bt) = try concurrently({ try source.integerKeyBounds() }, { try target.integerKeyBounds() })
        if Int64(requested) < planned, let (lo, hi) = DescentPolicy.union(bs, bt),
           Double(planned) / (Double(hi) - Double(lo) + 1) >= options.minDensity {
            let drawn = try drawIntegerKeys(lo: lo, hi: hi, count: requested, density: Double(planned) / (Double(hi) - Double(lo) + 1),
                                            seed: options.seed, source: &s, target: &t)
            method = .randomKeys(lo: lo, hi: hi, drawn: drawn)
            // Each drawn value is a key of either side with probability |S ∪ T| / span.
            let accepted = Set(s.keys).union(t.keys).count
            population = drawn == 0 ? 0 : Int64((Double(hi) - Double(lo) + 1) * Double(accepted) / Double(drawn))
        } else {
            let fraction = min(1, Double(requested) / Double(planned))
            let threshold = Self.hashThreshold(fraction)
            (s, t) = try concurrently({ try source.rowHashes(sampleSeed: seed, threshold: threshold) },
                                      { try target.rowHashes(sampleSeed: seed, threshold: threshold) })
            method = .keyHash(fraction: fraction)
            let accepted = Set(s.keys).union(t.keys).count
            population = threshold == nil ? Int64(accepted) : Int64(Double(accepted) / fraction)
        }
        diff.sourceRows = Int64(s.count)
        diff.targetRows = Int64(t.count)
        diff.rowsFetched = s.count + t.count
        let found = differingKeys(source: s, target: t)
        var differences: [ListedDifference] = found.missing.map { (key: $0, difference: RowDifference.missing) }
        differences += found.extra.map { (key: $0, difference: RowDifference.extra) }
        differences += try compareRows(found.changed)
        let sampled = Set(s.keys).union(t.keys).count
        diff.sample = SampleSummary(method: method, seed: options.seed, requested: requested,
                                    estimate: SampleEstimate(sampled: sampled, differing: differences.count, population: population,
                                                             confidence: options.confidence))
        // The listing stays within --max-differences like a full verify's; the rest is counted.
        try diff.list(differences, atMost: maxListed)
    }

    /// The threshold under which a uniformly distributed signed 64-bit hash falls with probability
    /// `fraction`: −2⁶³ + fraction·2⁶⁴; nil for the whole table.
    static func hashThreshold(_ fraction: Double) -> Int64? {
        guard fraction < 1 else { return nil }
        let t = -9_223_372_036_854_775_808.0 + fraction * 18_446_744_073_709_551_616.0
        return t >= 9_223_372_036_854_775_807.0 ? nil : Int64(t)
    }

    /// Draws distinct uniform random values in [lo, hi] from `seed` and probes both sides for them,
    /// keeping, in draw order, the first `count` that are a key on either side: a simple random
    /// sample of the union of keys (every key has the same chance: rejection does not favour any).
    /// Returns how many values were drawn to get there.
    private func drawIntegerKeys(lo: Int64, hi: Int64, count: Int, density: Double, seed: UInt64,
                                 source s: inout [KeyTexts: Int64], target t: inout [KeyTexts: Int64]) throws -> Int {
        let (source, target) = (self.source, self.target)
        var rng = SplitMix64(seed: seed)
        let span = UInt64(bitPattern: hi &- lo) &+ 1  // 0 stands for the whole 2⁶⁴ range
        var seen = Set<Int64>()
        var accepted = 0, drawn = 0
        // A bound on the work when the planner's estimate overstated the density.
        let maxDraws = min(span == 0 ? .max : span, UInt64(Double(count) / density * 20) + 10_000)
        while accepted < count && UInt64(seen.count) < maxDraws {
            let want = min(50_000, Int(Double(count - accepted) / density * 1.1) + 64)
            var batch: [Int64] = []
            batch.reserveCapacity(want)
            while batch.count < want && UInt64(seen.count) < maxDraws {
                let r = span == 0 ? rng.next() : rng.next(upperBound: span)
                let k = lo &+ Int64(bitPattern: r)
                if seen.insert(k).inserted { batch.append(k) }
            }
            let (bs, bt) = try concurrently({ [batch] in try source.rowHashes(ofIntegerKeys: batch) }, { [batch] in try target.rowHashes(ofIntegerKeys: batch) })
            for k in batch {
                drawn += 1
                let key = [String(k)]
                let a = bs[key], b = bt[key]
                guard a != nil || b != nil else { continue }
                if let a { s[key] = a }
                if let b { t[key] = b }
                accepted += 1
                if accepted == count { break }
            }
        }
        return drawn
    }
}
