import ArgumentParser
import CDCCore
import CDCPostgres
import CDCR
import Foundation

/// `cdcr bench verify`: two `orders` tables of N rows differing in 20 missing, 1 extra and 100
/// changed rows; prints the time of `cdcr verify` against the time of `SELECT count(*)` on both
/// tables, measured in the same run (medians of warm runs), checks the result is exact and reports
/// the verify process's peak RSS; then the time of a sampled verify (`--confidence 0.99 --margin
/// 0.01`) of the same tables against the full one; then the key-type comparison against reladiff
/// and the large source against an empty target (`VerifyKeyBench`).
struct VerifyBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Measure cdcr verify against SELECT count(*) on both tables, in one run."
    )

    @Option(help: "Admin libpq URL of a local PostgreSQL; the benchmark creates and drops its own databases.")
    var target: String

    @Option(parsing: .unconditional, help: "Rows per table.")
    var rows = 1_000_000

    @Option(parsing: .unconditional, help: "Measured runs of each side (the median is reported).")
    var runs = 5

    @Option(parsing: .unconditional, help: "Rows per table of the key-type comparison (bigint, text, uuid, composite); 0 skips it.")
    var keyRows = 1_000_000

    @Option(parsing: .unconditional, help: "Measured cdcr runs per key type (the median is reported).")
    var keyRuns = 3

    @Option(help: "The reladiff command to compare against on each key type (scripts/bench-verify.sh installs reladiff 0.6.0); empty skips it.")
    var reladiff = ""

    @Option(parsing: .unconditional, help: "Rows of the source table verified against an empty target (counts, peak RSS); 0 skips it.")
    var emptyTargetRows = 10_000_000

    func run() throws {
        let admin = try PGConnection.connect(target)
        let urls = try BenchSetup.freshDatabases(["cdcr_bench_verify_src", "cdcr_bench_verify_tgt"], admin: admin, target: target)
        let (src, tgt) = (try PGConnection.connect(urls[0]), try PGConnection.connect(urls[1]))
        print("building two \(rows)-row orders tables (the fixture layout) …")
        for c in [src, tgt] { try BenchSetup.ordersTable(c, rows: rows) }
        // The planted differences: 20 missing, 1 extra, 100 changed (in different columns).
        var expected = Set<String>()
        let step = rows / 20
        for k in 0..<20 {
            let id = k * step + 7
            try tgt.query("DELETE FROM public.orders WHERE id = $1", [String(id)])
            expected.insert("public.orders|missing|\(id)")
        }
        try tgt.query("INSERT INTO public.orders (id, status) VALUES ($1, 'extra')", [String(rows + 1)])
        expected.insert("public.orders|extra|\(rows + 1)")
        let columns = ["status", "amount", "note", "attrs", "created_at"]
        let changes = ["status = 'changed'", "amount = amount + 0.01", "note = NULL", "attrs = '{\"k\": -1}'", "created_at = created_at + interval '1 ms'"]
        for k in 0..<100 {
            let id = k * (rows / 100) + 13
            try tgt.query("UPDATE public.orders SET \(changes[k % 5]) WHERE id = $1", [String(id)])
            expected.insert("public.orders|different|\(id)|\(columns[k % 5])")
        }
        for c in [src, tgt] { try c.execute("VACUUM ANALYZE public.orders") }

        // count(*) on both tables, warm.
        var countTimes: [Double] = []
        for i in 0...runs {
            let start = ContinuousClock.now
            _ = try src.query("SELECT count(*) FROM public.orders")
            _ = try tgt.query("SELECT count(*) FROM public.orders")
            if i > 0 { countTimes.append((ContinuousClock.now - start).seconds) }
        }
        // cdcr verify as a user runs it: its own process, both databases.
        let binary = BenchSetup.binary
        var verifyTimes: [Double] = []
        var peakKB = 0
        var exact = true
        for i in 0...runs {
            let start = ContinuousClock.now
            let (status, out, rss, _) = try ApplyBench.runChild([binary, "verify", "--json", "--table", "orders", "--source", urls[0], "--target", urls[1]])
            let took = (ContinuousClock.now - start).seconds
            peakKB = max(peakKB, rss)
            let found = try differences(out)
            if status != 2 || found != expected {
                exact = false
                print("run \(i): exit \(status), \(found.count) differences reported, \(expected.subtracting(found).count) planted ones missed, \(found.subtracting(expected).count) false")
            }
            if i > 0 { verifyTimes.append(took) }
        }
        // The sampled verify of the same tables, a different seed each run.
        var sampleTimes: [Double] = []
        var sampled = 0
        for i in 0...runs {
            let start = ContinuousClock.now
            let (status, out, _, _) = try ApplyBench.runChild([binary, "verify", "--json", "--table", "orders", "--confidence", "0.99", "--margin", "0.01",
                                                               "--seed", String(i + 1), "--source", urls[0], "--target", urls[1]])
            let took = (ContinuousClock.now - start).seconds
            guard status == 0 || status == 2, case let .array(tables)? = try JSONParser.parse(out)["tables"], let sample = tables.first?["sample"] else {
                print("sampled run \(i): exit \(status)")
                throw ExitCode(1)
            }
            sampled = Int(sample["sampled"]?.int64Value ?? 0)
            if i > 0 { sampleTimes.append(took) }
        }
        let count = median(countTimes), verify = median(verifyTimes), sample = median(sampleTimes)
        print(String(format: "count(*) on both tables: %.3f s (median of %d)", count, runs))
        print(String(format: "cdcr verify:             %.3f s (median of %d, whole process)", verify, runs))
        print(String(format: "verify / count = %.1f   target ≤ 10", verify / count))
        print(String(format: "cdcr verify --confidence 0.99 --margin 0.01: %.3f s (median of %d, %d keys sampled)", sample, runs, sampled))
        print(String(format: "full / sampled = %.1f   target ≥ 20", verify / sample))
        print("result exact (20 missing, 1 extra, 100 different): \(exact ? "yes" : "NO")")
        print("peak RSS of verify = \(peakKB / 1024) MB   target ≤ 200 MB")
        let keys = VerifyKeyBench(src: src, tgt: tgt, urls: urls, rows: keyRows, runs: keyRuns, reladiff: reladiff.isEmpty ? nil : reladiff)
        if keyRows > 0 { exact = try keys.runAll() && exact }
        if emptyTargetRows > 0 { exact = try keys.emptyTarget(rows: emptyTargetRows) && exact }
        src.close()
        tgt.close()
        for name in ["cdcr_bench_verify_src", "cdcr_bench_verify_tgt"] { try admin.execute("DROP DATABASE IF EXISTS \(name)") }
        if !exact { throw ExitCode(1) }
    }

    private func median(_ xs: [Double]) -> Double { xs.sorted()[xs.count / 2] }

    /// `table|kind|key[|columns]` of a verify --json report.
    private func differences(_ json: String) throws -> Set<String> {
        var out = Set<String>()
        guard case let .array(tables)? = try JSONParser.parse(json)["tables"] else { return out }
        for t in tables {
            guard case let .array(rows)? = t["rows"] else { continue }
            for r in rows {
                let key = (r["key"]?.objectMembers ?? []).map { $0.1.stringValue ?? "" }.joined(separator: ",")
                var item = "\(t["table"]?.stringValue ?? "?")|\(r["kind"]?.stringValue ?? "?")|\(key)"
                if case let .array(cols)? = r["columns"] { item += "|" + cols.compactMap(\.stringValue).joined(separator: ",") }
                out.insert(item)
            }
        }
        return out
    }
}
