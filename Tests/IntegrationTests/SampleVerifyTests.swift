import CDCCore
import CDCPostgres
import CDCR
import Foundation
import Testing

/// Two 20,000-row tables whose target differs in a known 1.1 % of the keys of either side.
struct SampledPair {
    let pair: PlantedPair
    /// Keys that differ (missing, extra or different), and the keys of either side.
    let differing: Set<Int64>
    let population = 20_020

    init(_ pg: TestPostgres) throws {
        pair = try PlantedPair(pg)
        try pair.both("CREATE TABLE public.accounts (id bigint PRIMARY KEY, owner text, balance numeric(12,2), opened date)")
        try pair.both("""
            INSERT INTO public.accounts SELECT i, 'owner ' || i, (i % 977) * 1.25, DATE '2020-01-01' + i % 1000 FROM generate_series(1, 20000) i
            """)
        // 200 keys spread evenly ((id · 7919) mod 100 = 13 holds for exactly one id in every 100):
        // three quarters changed, a quarter deleted from the target; and 20 extra target rows.
        try pair.tgt.execute("UPDATE public.accounts SET balance = balance + 1 WHERE (id * 7919) % 100 = 13 AND id % 4 <> 0")
        try pair.tgt.execute("DELETE FROM public.accounts WHERE (id * 7919) % 100 = 13 AND id % 4 = 0")
        try pair.tgt.execute("INSERT INTO public.accounts SELECT i, 'extra', 0, NULL FROM generate_series(30001, 30020) i")
        try pair.both("ANALYZE public.accounts")
        var keys = Set((1...20_000).filter { ($0 * 7919) % 100 == 13 }.map(Int64.init))
        keys.formUnion((30_001...30_020).map(Int64.init))
        differing = keys
    }

    var trueRate: Double { Double(differing.count) / Double(population) }

    func settings() -> Settings {
        var s = Settings()
        s.sourceURL = pair.source
        s.targetURL = pair.target
        return s
    }

    func sample(size: Int, seed: UInt64, minDensity: Double = 0.05) throws -> TableDiff {
        var options = VerifyOptions()
        options.tables = [TableName(parsing: "accounts")]
        var sample = SampleOptions()
        sample.size = size
        sample.seed = seed
        sample.minDensity = minDensity
        options.sample = sample
        let run = try VerifyRun(settings: settings(), options: options)
        defer { run.close() }
        return try run.verify(options.tables[0])
    }
}

@Suite("verify --sample / --margin: uniform, reproducible samples and Wilson intervals", .serialized)
struct SampleVerifyTests {
    @Test("a planted 1.1 % mismatch rate lies inside the 95 % interval in at least 18 of 20 seeded runs, for both ways of drawing keys")
    func coverage() throws {
        let p = try SampledPair(try TestPostgres.sharedCluster())
        // Dense integer keys are drawn as random keys; minDensity 2 forces the seeded key hash.
        for (label, minDensity) in [("random keys", 0.05), ("key hash", 2.0)] {
            var covered = 0, estimates: [Double] = []
            for seed in UInt64(1)...20 {
                let diff = try p.sample(size: 2_000, seed: seed, minDensity: minDensity)
                let sample = try #require(diff.sample)
                if minDensity > 1 {
                    guard case .keyHash = sample.method else { Issue.record("\(label): drew \(sample.method)"); continue }
                    // A Bernoulli sample: about 2,000 keys, not exactly.
                    #expect(abs(sample.estimate.sampled - 2_000) < 250, "\(label) seed \(seed): \(sample.estimate.sampled) keys")
                } else {
                    guard case .randomKeys = sample.method else { Issue.record("\(label): drew \(sample.method)"); continue }
                    #expect(sample.estimate.sampled == 2_000)
                }
                let (lo, hi) = sample.estimate.interval
                if lo <= p.trueRate && p.trueRate <= hi { covered += 1 }
                // Not an interval that covers by being wide: ±1 % around ~1 % at n = 2,000 would be far too wide.
                #expect(hi - lo < 0.012, "\(label) seed \(seed): [\(lo), \(hi)]")
                #expect(abs(Double(sample.estimate.population) - Double(p.population)) < Double(p.population) * 0.15,
                        "\(label): population estimate \(sample.estimate.population)")
                estimates.append(sample.estimate.rate)
                // Every difference the sample reports is a planted one, and of the right kind.
                try diff.forEachDifference { key, d in
                    let id = Int64(key[0])!
                    #expect(p.differing.contains(id), "\(label) seed \(seed): \(key) reported as \(d)")
                    if id > 20_000 { #expect(d == .extra) } else if id % 4 == 0 { #expect(d == .missing) } else { #expect(d == .different(columns: ["balance"])) }
                }
                #expect(diff.listed == sample.estimate.differing)
            }
            #expect(covered >= 18, "\(label): the true rate \(p.trueRate) was inside the interval in \(covered) of 20 runs")
            let mean = estimates.reduce(0, +) / Double(max(1, estimates.count))
            #expect(abs(mean - p.trueRate) < 0.003, "\(label): mean estimate \(mean) vs \(p.trueRate)")
        }
    }

    @Test("the same --seed draws the same sample and gives the same result; another seed another sample; --margin sizes it")
    func reproducible() throws {
        let p = try SampledPair(try TestPostgres.sharedCluster())
        let common = ["verify", "--json", "--table", "accounts"] + p.pair.common
        for extra in [[String](), ["--confidence", "0.99"]] {
            let a = try CDCRProcess.run(common + ["--sample", "700", "--seed", "42"] + extra)
            let b = try CDCRProcess.run(common + ["--sample", "700", "--seed", "42"] + extra)
            let c = try CDCRProcess.run(common + ["--sample", "700", "--seed", "43"] + extra)
            #expect(a.status == 2, "differences in the sample → exit 2: \(a.stderr)")
            let sa = try #require(firstTable(try JSONParser.parse(a.stdout))?["sample"])
            let sb = try #require(firstTable(try JSONParser.parse(b.stdout))?["sample"])
            let sc = try #require(firstTable(try JSONParser.parse(c.stdout))?["sample"])
            #expect(try reportedDifferences(a.stdout) == reportedDifferences(b.stdout))
            #expect(sa["drawn"] == sb["drawn"] && sa["interval"] == sb["interval"] && sa["differing"] == sb["differing"])
            #expect(sa["seed"]?.int64Value == 42 && sa["sampled"]?.int64Value == 700 && sa["method"]?.stringValue == "random_keys")
            #expect(try reportedDifferences(a.stdout) != reportedDifferences(c.stdout) || sa["drawn"] != sc["drawn"], "seed 43 drew the same")
        }
        // --margin: the sample size from the confidence, margin and the table's size.
        let sized = try CDCRProcess.run(common + ["--confidence", "0.99", "--margin", "0.02", "--seed", "5"])
        let s = try #require(firstTable(try JSONParser.parse(sized.stdout))?["sample"])
        // The population it plans for is the planner's estimate of the larger side.
        let planned = try [p.pair.src, p.pair.tgt].map { Int64(try $0.query("SELECT reltuples::int8 FROM pg_class WHERE oid = 'public.accounts'::regclass").scalar ?? "0")! }.max()!
        #expect(abs(planned - 20_000) < 100)
        #expect(s["requested"]?.int64Value == Int64(SamplingMath.sampleSize(confidence: 0.99, margin: 0.02, population: planned)))
        #expect(s["sampled"]?.int64Value == s["requested"]?.int64Value)
        #expect(s["confidence"] == .number("0.99"))
        // Human output names the seed, the method and the interval.
        let human = try CDCRProcess.run(["verify", "--table", "accounts", "--sample", "500", "--seed", "9"] + p.pair.common)
        #expect(human.stdout.contains("sample of 500 keys (seed 9; random keys in [1, 30020]"), "\(human.stdout)")
        #expect(human.stdout.contains("95 % interval"))
        // Wrong combinations are refused before anything runs.
        let bad = try CDCRProcess.run(common + ["--sample", "10", "--margin", "0.01"])
        #expect(bad.status != 0 && bad.stderr.contains("--sample N or --margin E"))
    }
}
