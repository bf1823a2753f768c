import CDCCore
import CDCPostgres
import CDCR
import Foundation
import Testing

@Suite("backfill: chunk plans that stay linear in the chunk's size", .serialized)
struct BackfillPlanTests {
    /// The defect: into a target that is empty (or nearly) and VACUUMed, PostgreSQL plans the
    /// chunk's MERGE (and the count before it) as a nested loop over the stage with a sequential
    /// scan of the target inside — cheap on the empty table it planned for, but each rescan reads
    /// every page the statement has written so far, so one chunk of n rows costs O(n²): 96 s for
    /// 50,000 rows. A sequential scan of the target per staged row shows in its `seq_scan` counter
    /// (a rescan counts as a scan), so this asserts on that rather than on time.
    @Test("a chunk into an empty or nearly empty, vacuumed target scans the target a few times, not once per row",
          arguments: [0, 5])
    func noScanPerRow(staleRows: Int) throws {
        let pg = try TestPostgres.sharedCluster()
        let (source, target, src, tgt) = try backfillDatabases(pg)
        defer { src.close(); tgt.close() }
        let rows = 12_000
        try populateOrders(src, rows: rows)
        try src.execute("VACUUM ANALYZE public.orders")
        if staleRows > 0 {
            // A few rows already there (stale): the chunk goes through the guard and the MERGE.
            try populateOrders(tgt, rows: staleRows)
            try tgt.execute("UPDATE public.orders SET status = 'old'")
        }
        try tgt.execute("VACUUM ANALYZE public.orders")  // statistics say: (nearly) empty
        let before = try tableScans(tgt, "public.orders", inserted: staleRows)

        let run = try backfill(source, target, ["--table", "public.orders", "--chunk-rows", "6000", "--no-verify", "--json"])
        #expect(run.status == 0, "\(run.stderr)")
        let total = try #require(try backfillTables(run.stdout)["public.orders"]?["total"])
        #expect(total["inserted"]?.int64Value == Int64(rows - staleRows) && total["updated"]?.int64Value == Int64(staleRows))
        #expect(total["chunks"]?.int64Value == 2)
        #expect(try sameRows(src, tgt, ["public.orders"]) == 0)

        let after = try tableScans(tgt, "public.orders", inserted: rows)
        #expect(after.inserts >= rows, "the backfill's statistics were not reported")
        // Two chunks of 6,000 rows: a per-row scan plan shows as ≥ 6,000 scans; a linear plan as a handful.
        #expect(after.seqScans - before.seqScans <= 20, "sequential scans of the target: \(after.seqScans - before.seqScans)")
    }

    @Test("a chunk whose key range the target lacks goes in as plain INSERTs; a key holding a newer tombstone sends it the guarded way, and that row stays deleted")
    func plainInsertsAndFallback() throws {
        let pg = try TestPostgres.sharedCluster()
        let (source, target, src, tgt) = try backfillDatabases(pg)
        defer { src.close(); tgt.close() }
        try populateOrders(src, rows: 1_000)
        #expect(try CDCRProcess.run(["init", "--target", target]).status == 0)
        // The stream deleted row 250 at a version above any watermark: the copy of it must lose (and the
        // source still has it, so no verify: it would report the difference this test makes up).
        try tgt.execute("INSERT INTO cdcr.row_versions (table_name, row_key, version, deleted) VALUES ('public.orders', '250', 9000000000000000000, true)")

        let run = try backfill(source, target, ["--table", "public.orders", "--chunk-rows", "200", "--writers", "1", "--no-verify", "--json", "--log-level", "debug"])
        #expect(run.status == 0, "\(run.stderr)")
        let total = try #require(try backfillTables(run.stdout)["public.orders"]?["total"])
        #expect(total["inserted"]?.int64Value == 999 && total["skipped"]?.int64Value == 1 && total["chunks"]?.int64Value == 5)
        #expect(try Expect.count(tgt, "SELECT count(*) FROM public.orders") == 999)
        #expect(try Expect.count(tgt, "SELECT count(*) FROM public.orders WHERE id = 250") == 0)
        // Chunk 1 recorded its range's watermark (no entries); chunks 2…5 wrote an entry per row.
        #expect(try Expect.count(tgt, "SELECT count(*) FROM cdcr.row_versions WHERE table_name = 'public.orders' AND NOT deleted") == 799)
        #expect(try backfillRanges(tgt, "public.orders") == 1)
        #expect(try rowsWithKnownVersion(tgt, "public.orders") == 999)
        // Which way each chunk went, from its debug line: chunk 1 COPYed straight into the table, chunk 2
        // (rows 201…400) COPYed, found the tombstone's entry among its keys, rolled back and went the
        // guarded way, chunks 3…5 guarded too (the writer keeps away a while).
        let lines = run.stderr.split(separator: "\n").filter { $0.contains("phases=") }
        #expect(lines.count == 5, "\(run.stderr)")
        #expect(lines.filter { $0.contains("phases=fence=") && $0.contains(" copy_table=") && $0.contains(" range=") && !$0.contains("merge=") }.count == 1, "\(lines)")
        #expect(lines.filter { $0.contains("entries_found=") }.count == 1, "\(lines)")
        #expect(lines.filter { $0.contains("merge=") }.count == 4, "\(lines)")
    }

    @Test("a table with a target-only column: an empty range goes in through the stage, the column NULL as the MERGE leaves it, not its default")
    func plainInsertsKeepTargetOnlyNull() throws {
        let pg = try TestPostgres.sharedCluster()
        let (source, target, src, tgt) = try backfillDatabases(pg)
        defer { src.close(); tgt.close() }
        try populateOrders(src, rows: 300)
        try tgt.execute("ALTER TABLE public.orders ADD COLUMN audit_note text DEFAULT 'from a default'")
        let run = try backfill(source, target, ["--table", "public.orders", "--chunk-rows", "100", "--writers", "1", "--json", "--log-level", "debug"])
        #expect(run.status == 0, "\(run.stderr)")
        #expect(try backfillTables(run.stdout)["public.orders"]?["total"]?["inserted"]?.int64Value == 300)
        #expect(try Expect.count(tgt, "SELECT count(*) FROM public.orders WHERE audit_note IS NULL") == 300)
        #expect(try Expect.count(tgt, "SELECT count(*) FROM cdcr.row_versions WHERE table_name = 'public.orders' AND NOT deleted") == 300)
        let lines = run.stderr.split(separator: "\n").filter { $0.contains("phases=") }
        #expect(lines.count == 3 && lines.allSatisfy { $0.contains(" insert=") && !$0.contains("copy_table=") }, "\(lines)")
    }
}
