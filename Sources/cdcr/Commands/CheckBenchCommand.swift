import ArgumentParser
import CDCCore
import CDCPostgres
import CDCR
import Foundation

/// `cdcr bench check`: the verify benchmark's pair of `orders` tables (N rows each, the fixture
/// layout), one order's amount 0.02 higher in the target. Measures, warm, in `runs` rounds that interleave them, the medians of
/// runs of `SELECT count(*)` on both tables and of a whole `cdcr check` process running one
/// aggregate rule by day and status (count and sum per group, tolerance 0.01), in two forms of
/// "day": `date_bin('1 day', created_at, …)` and `date_trunc('day', created_at)`, and the first
/// once more with each side's statement in one piece. Checks the result is exactly the planted group.
struct CheckBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Measure a cdcr check aggregate rule against SELECT count(*) on both tables, in one run."
    )

    @Option(help: "Admin libpq URL of a local PostgreSQL; the benchmark creates and drops its own databases.")
    var target: String

    @Option(parsing: .unconditional, help: "Rows per table.")
    var rows = 1_000_000

    @Option(parsing: .unconditional, help: "Measured runs of each (the median is reported).")
    var runs = 5

    static let databases = ["cdcr_bench_check_src", "cdcr_bench_check_tgt"]

    func run() throws {
        let admin = try PGConnection.connect(target)
        let urls = try BenchSetup.freshDatabases(Self.databases, admin: admin, target: target)
        let (src, tgt) = (try PGConnection.connect(urls[0]), try PGConnection.connect(urls[1]))
        print("building two \(rows)-row orders tables (the verify benchmark's) …")
        for c in [src, tgt] { try BenchSetup.ordersTable(c, rows: rows) }
        let changed = rows / 2 + 1
        try tgt.query("UPDATE public.orders SET amount = amount + 0.02 WHERE id = $1", [String(changed)])
        for c in [src, tgt] { try c.execute("VACUUM ANALYZE public.orders") }
        let groups = Int(try src.query("SELECT count(DISTINCT (date_trunc('day', created_at), status)) FROM public.orders").scalar ?? "0") ?? 0

        let rulesPath = FileManager.default.temporaryDirectory.appendingPathComponent("cdcr-bench-check-\(getpid()).json").path
        try """
            {"defaults": {"schema": false, "references": false}, "checks": [
              {"name": "date_bin", "kind": "aggregate", "table": "public.orders", "group_by": ["date_bin('1 day', created_at, '2000-01-01 00:00:00+00')", "status"],
               "measures": ["count(*)", {"measure": "sum(amount)", "absolute": 0.01}]},
              {"name": "date_trunc", "kind": "aggregate", "table": "public.orders", "group_by": ["date_trunc('day', created_at)", "status"],
               "measures": ["count(*)", {"measure": "sum(amount)", "absolute": 0.01}]}]}
            """.write(toFile: rulesPath, atomically: true, encoding: .utf8)
        let binary = BenchSetup.binary
        // The third variant keeps each side's statement in one piece (no block-range split), to show what the split buys.
        let variants: [(label: String, rule: String, extra: [String])] = [
            ("date_bin", "date_bin", []), ("date_trunc", "date_trunc", []),
            ("date_bin, one piece per side", "date_bin", ["--blocks-per-part", "1000000000000"]),
        ]
        var exact = true
        // Rounds interleave count(*) and every variant, so a load change on the machine hits all of them alike;
        // round 0 warms up. Each ratio is taken against the count(*) of its own round.
        var countTimes: [Double] = []
        var process = [[Double]](repeating: [], count: variants.count), inside = process, ratios = process
        for round in 0...runs {
            let start = ContinuousClock.now
            _ = try src.query("SELECT count(*) FROM public.orders")
            _ = try tgt.query("SELECT count(*) FROM public.orders")
            let count = (ContinuousClock.now - start).seconds
            if round > 0 { countTimes.append(count) }
            for (v, variant) in variants.enumerated() {
                let start = ContinuousClock.now
                let (status, out, _, _) = try ApplyBench.runChild([binary, "check", "--json", "--rules", rulesPath, "--only", variant.rule,
                                                                   "--source", urls[0], "--target", urls[1]] + variant.extra)
                let took = (ContinuousClock.now - start).seconds
                let report = try JSONParser.parse(out)
                guard case let .array(checks)? = report["checks"], let check = checks.first else { throw ValidationError("no report: \(out.prefix(300))") }
                let numbers = check["numbers"]
                if status != 2 || numbers?["out_of_tolerance"]?.int64Value != 1 || numbers?["missing_groups"]?.int64Value != 0
                    || numbers?["extra_groups"]?.int64Value != 0 || numbers?["source_groups"]?.int64Value != Int64(groups) {
                    exact = false
                    print("\(variant.label) round \(round): exit \(status), \(check["summary"]?.stringValue ?? "?")")
                }
                if round > 0 {
                    process[v].append(took)
                    inside[v].append(Double(check["duration_seconds"]?.serialized ?? "0") ?? 0)
                    ratios[v].append(took / count)
                }
            }
        }
        print(String(format: "count(*) on both tables: %.3f s (median of %d)", median(countTimes), runs))
        for (v, variant) in variants.enumerated() {
            print(String(format: "cdcr check, %@ (%d groups): %.3f s whole process, %.3f s the check itself (medians of %d)",
                         variant.label, groups, median(process[v]), median(inside[v]), runs))
            print(String(format: "  check / count(*) of the same round: median %.2f (range %.2f–%.2f)   target ≤ 2",
                         median(ratios[v]), ratios[v].min() ?? 0, ratios[v].max() ?? 0))
        }
        print("result exact (1 group out of tolerance, nothing missing or extra): \(exact ? "yes" : "NO")")
        try? FileManager.default.removeItem(atPath: rulesPath)
        src.close()
        tgt.close()
        for name in Self.databases { try admin.execute("DROP DATABASE IF EXISTS \(name)") }
        if !exact { throw ExitCode(1) }
    }

    private func median(_ xs: [Double]) -> Double { xs.sorted()[xs.count / 2] }
}
