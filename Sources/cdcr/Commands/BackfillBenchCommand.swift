import ArgumentParser
import CDCCore
import CDCPostgres
import CDCR
import Foundation

/// `cdcr bench backfill`: N rows of mixed types (the fixture's `orders`: bigint key, text, numeric,
/// timestamptz, date, jsonb, uuid, timestamp, nullable columns) from a source database into an empty
/// target, measured in one run against the ceiling `psql COPY (SELECT …) TO STDOUT | psql COPY … FROM
/// STDIN`; checks the result is exact and reports the backfill process's peak RSS.
struct BackfillBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "backfill",
        abstract: "Measure cdcr backfill (per-chunk verification on) against a psql COPY pipe, in one run."
    )

    @Option(help: "Admin libpq URL of a local PostgreSQL; the benchmark creates and drops its own databases.")
    var target: String

    @Option(parsing: .unconditional, help: "Rows in the source table.")
    var rows = 5_000_000

    @Option(parsing: .unconditional, help: "--chunk-rows of the backfill.")
    var chunkRows = 10_000

    @Option(parsing: .unconditional, help: "--writers of the backfill.")
    var writers = 2

    @Flag(help: "Run the backfill with --no-verify: what the per-chunk verification costs (not the measured target).")
    var noVerify = false

    func run() throws {
        let admin = try PGConnection.connect(target)
        let urls = try BenchSetup.freshDatabases(["cdcr_bench_backfill_src", "cdcr_bench_backfill_tgt"], admin: admin, target: target)
        let (src, tgt) = (try PGConnection.connect(urls[0]), try PGConnection.connect(urls[1]))
        print("building a \(rows)-row orders table in the source …")
        try src.execute(BenchWorkload.schema)
        try tgt.execute(BenchWorkload.schema)
        try src.query("""
            INSERT INTO public.orders SELECT i, CASE WHEN i % 10 <> 0 THEN i % 5000 END, (ARRAY['new','paid','shipped','cancelled'])[1 + i % 4],
                (i % 100000) / 100.0, '2026-01-01'::timestamptz + i * interval '1 second', CASE WHEN i % 3 = 0 THEN DATE '2026-01-01' + i % 300 END,
                CASE WHEN i % 7 = 0 THEN NULL ELSE 'note ' || i END, jsonb_build_object('k', i % 10, 'tag', 'x' || i % 7), md5(i::text)::uuid,
                TIMESTAMP '2026-01-01' + i * interval '1 second'
            FROM generate_series(1, $1::int) i
            """, [String(rows)])
        try src.execute("VACUUM ANALYZE public.orders")
        try admin.execute("CHECKPOINT")

        // The ceiling: psql's COPY out piped into psql's COPY in.
        let psql = Self.psql()
        let pipe = "\(psql) -X -q -d '\(urls[0])' -c 'COPY (SELECT * FROM public.orders) TO STDOUT' | \(psql) -X -q -d '\(urls[1])' -c 'COPY public.orders FROM STDIN'"
        let ceilingWAL = try walPosition(admin)
        let ceilingStart = ContinuousClock.now
        let (pipeStatus, _, _, _) = try ApplyBench.runChild(["/bin/sh", "-c", pipe])
        let ceiling = (ContinuousClock.now - ceilingStart).seconds
        let ceilingWALBytes = try walPosition(admin) - ceilingWAL
        let ceilingTableBytes = try tableBytes(tgt, "public.orders")
        guard pipeStatus == 0, try count(tgt) == rows else { throw ValidationError("the psql COPY pipe failed (exit \(pipeStatus))") }
        try tgt.execute("TRUNCATE public.orders")
        try tgt.execute("VACUUM public.orders")
        try admin.execute("CHECKPOINT")

        let binary = BenchSetup.binary
        let backfillWAL = try walPosition(admin)
        let start = ContinuousClock.now
        let (status, out, rssKB, cpu) = try ApplyBench.runChild([binary, "backfill", "--json", "--table", "public.orders", "--chunk-rows", String(chunkRows),
                                                                 "--writers", String(writers)] + (noVerify ? ["--no-verify"] : []) + [
                                                                 "--source", urls[0], "--target", urls[1], "--log-level", "warning"])
        let took = (ContinuousClock.now - start).seconds
        let backfillWALBytes = try walPosition(admin) - backfillWAL
        let (tableAfter, versionsAfter) = (try tableBytes(tgt, "public.orders"), try tableBytes(tgt, "cdcr.row_versions"))
        let report = try JSONParser.parse(out.trimmingCharacters(in: .whitespacesAndNewlines))
        let copied = try count(tgt)
        var exact = status == 0 && copied == rows
        if case let .array(tables)? = report["tables"], let t = tables.first?["total"] {
            exact = exact && t["inserted"]?.int64Value == Int64(rows) && (noVerify || t["verified"]?.int64Value == t["chunks"]?.int64Value)
        } else {
            exact = false
        }
        print(String(format: "ceiling (psql COPY | psql COPY): %.2f s, %.0f rows/s", ceiling, Double(rows) / ceiling))
        print(String(format: "cdcr backfill (%@): %.2f s, %.0f rows/s, cdcr CPU %.1f s", noVerify ? "NO verification" : "verified chunks", took, Double(rows) / took, cpu))
        print(String(format: "backfill / ceiling = %.2f   target ≥ 0.7", ceiling / took))
        print("result exact (every row inserted\(noVerify ? "" : ", every chunk verified"), exit 0): \(exact ? "yes" : "NO (exit \(status))")")
        print("peak RSS of backfill = \(rssKB / 1024) MB   target ≤ 300 MB")
        // What each must write: the ceiling writes the table once; the backfill the table, one range
        // watermark and one ledger entry per chunk (row_versions entries only where a chunk met
        // rows of the target), all WAL-logged (the temp stage is not).
        func perRow(_ bytes: Int64) -> String { String(format: "%.0f bytes/row", Double(bytes) / Double(rows)) }
        print("WAL written: ceiling \(ceilingWALBytes >> 20) MB (\(perRow(ceilingWALBytes))), backfill \(backfillWALBytes >> 20) MB (\(perRow(backfillWALBytes)))")
        print("target relations: orders \(ceilingTableBytes >> 20) MB after the ceiling, \(tableAfter >> 20) MB after the backfill; cdcr.row_versions \(versionsAfter >> 20) MB")
        src.close()
        tgt.close()
        for name in ["cdcr_bench_backfill_src", "cdcr_bench_backfill_tgt"] { try admin.execute("DROP DATABASE IF EXISTS \(name)") }
        if !exact { throw ExitCode(1) }
    }

    private func walPosition(_ conn: PGConnection) throws -> Int64 { Int64(try conn.query("SELECT (pg_current_wal_lsn() - '0/0')::bigint").scalar ?? "0") ?? 0 }

    private func tableBytes(_ conn: PGConnection, _ table: String) throws -> Int64 {
        Int64(try conn.query("SELECT pg_total_relation_size($1::regclass)", [table]).scalar ?? "0") ?? 0
    }

    private func count(_ conn: PGConnection) throws -> Int { Int(try conn.query("SELECT count(*) FROM public.orders").scalar ?? "0") ?? 0 }

    /// psql from PATH, else from the server's bin directory.
    static func psql() -> String {
        for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":").map(String.init) + ["/usr/bin"]
        where FileManager.default.isExecutableFile(atPath: dir + "/psql") { return dir + "/psql" }
        let lib = (try? FileManager.default.contentsOfDirectory(atPath: "/usr/lib/postgresql"))?.sorted().last
        return lib.map { "/usr/lib/postgresql/\($0)/bin/psql" } ?? "psql"
    }
}
