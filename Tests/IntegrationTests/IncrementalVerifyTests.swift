import CDCCore
import CDCPostgres
import CDCR
import Foundation
import Testing

@Suite("verify --since: only the keys changed since then, from the change log, a changed-at column and row versions", .serialized)
struct IncrementalVerifyTests {
    /// The `incremental` object of the first table of a `--json` report.
    func incremental(_ stdout: String) throws -> JSONValue {
        try #require(firstTable(try JSONParser.parse(stdout))?["incremental"], "no incremental object in \(stdout)")
    }

    @Test("examines exactly the union of changed keys, finds the differences among them (deletes included), and --since last picks up where a successful run ended")
    func changedKeysOnly() throws {
        let p = try PlantedPair(try TestPostgres.sharedCluster())
        try p.both("CREATE TABLE public.items (id bigint PRIMARY KEY, v text, updated_at timestamptz NOT NULL)")
        try p.both("INSERT INTO public.items SELECT i, 'v' || i, TIMESTAMPTZ '2026-01-01 00:00:00+00' FROM generate_series(1, 1000) i")
        try SourceChangeLog.install(on: p.src, tables: [TableName(parsing: "items")])
        try BookkeepingSchema.install(on: p.tgt)
        // Old drift, before the window: an incremental run must not look at it.
        try p.tgt.execute("UPDATE public.items SET v = 'old drift' WHERE id = 500")

        let since = try #require(try p.src.query("SELECT (clock_timestamp() - interval '1 minute')::text").scalar)
        let stamp = "'\(since)'::timestamptz + interval '30 seconds'"  // inside the window, before any later run
        // Through the change log (and the changed-at column): 1–5 updated, 5 never reaches the target;
        // 10 deleted on the source only (an extra row); 2000 inserted on both.
        try p.src.execute("UPDATE public.items SET v = 'new', updated_at = \(stamp) WHERE id <= 5")
        try p.tgt.execute("UPDATE public.items SET v = 'new', updated_at = \(stamp) WHERE id <= 4")
        try p.src.execute("DELETE FROM public.items WHERE id = 10")
        try p.both("INSERT INTO public.items VALUES (2000, 'v2000', \(stamp))")
        // Only through the column (a writer the log missed): 40 reaches the target, 41 does not.
        try p.src.execute("ALTER TABLE public.items DISABLE TRIGGER cdcr_capture; UPDATE public.items SET v = 'col', updated_at = \(stamp) WHERE id IN (40, 41); ALTER TABLE public.items ENABLE TRIGGER cdcr_capture")
        try p.tgt.execute("UPDATE public.items SET v = 'col', updated_at = \(stamp) WHERE id = 40")
        // Only through cdcr's row versions: 20 as the source has it, 21 written wrongly; 3 also in the log;
        // 30 too old; one hashed key that cannot be turned back into a key.
        try p.tgt.execute("""
            INSERT INTO cdcr.row_versions (table_name, row_key, version, deleted, updated_at) VALUES
                ('public.items', '20', 1, false, now()), ('public.items', '21', 1, false, now()), ('public.items', '3', 1, false, now()),
                ('public.items', '30', 1, false, now() - interval '1 hour'), ('public.items', 'sha256:' || repeat('0', 64), 1, false, now()),
                ('public.other', '22', 1, false, now());
            UPDATE public.items SET v = 'drift' WHERE id = 21;
            """)

        let args = ["verify", "--json", "--table", "items", "--changed-column", "updated_at"] + p.common
        let first = try CDCRProcess.run(args + ["--since", since])
        #expect(first.status == 2, "\(first.stderr)")
        #expect(try reportedDifferences(first.stdout) == [
            "public.items|different|5|v,updated_at", "public.items|extra|10", "public.items|different|41|v,updated_at", "public.items|different|21|v",
        ])
        let i1 = try incremental(first.stdout)
        #expect(i1["examined"]?.int64Value == 11, "{1–5, 10, 2000} ∪ {1–5, 2000, 40, 41} ∪ {20, 21, 3}: \(i1.serialized)")
        #expect(i1["from_change_log"]?.int64Value == 7)
        #expect(i1["from_changed_column"]?.int64Value == 8)
        #expect(i1["from_row_versions"]?.int64Value == 3)
        #expect(i1["hashed_row_versions"]?.int64Value == 1)
        #expect(try Expect.count(p.tgt, "SELECT count(*) FROM cdcr.check_state") == 0, "a run with differences records no state")
        // Without the column, its two rows are not looked at.
        let noColumn = try CDCRProcess.run(["verify", "--json", "--table", "items", "--since", since] + p.common)
        #expect(try incremental(noColumn.stdout)["examined"]?.int64Value == 9)
        #expect(!(try reportedDifferences(noColumn.stdout)).contains("public.items|different|41|v,updated_at"))

        // --since last without a recorded run: the whole table, and it says so.
        let full = try CDCRProcess.run(args + ["--since", "last"])
        #expect(full.status == 2)
        #expect(try incremental(full.stdout)["full_because_no_state"] == .bool(true))
        #expect(try reportedDifferences(full.stdout).contains("public.items|different|500|v"))
        let human = try CDCRProcess.run(["verify", "--table", "items", "--since", "last"] + p.common)
        #expect(human.stdout.contains("no earlier successful run of public.items in cdcr.check_state: compared in full"))

        // Fixed: a consistent full run records the state.
        try p.tgt.execute("""
            UPDATE public.items SET v = 'new', updated_at = \(stamp) WHERE id = 5; UPDATE public.items SET v = 'col', updated_at = \(stamp) WHERE id = 41;
            UPDATE public.items SET v = 'v21' WHERE id = 21; UPDATE public.items SET v = 'v500' WHERE id = 500; DELETE FROM public.items WHERE id = 10;
            """)
        let clean = try CDCRProcess.run(args + ["--since", "last"])
        #expect(clean.status == 0, "\(clean.stdout)\(clean.stderr)")
        #expect(try p.tgt.query("SELECT mode, keys_examined FROM cdcr.check_state WHERE table_name = 'public.items'").rows == [["full", "1000"]])

        // Two changes since: only they are examined; the delete the target missed is found.
        let now = try #require(try p.src.query("SELECT clock_timestamp()::text").scalar)
        try p.both("UPDATE public.items SET v = 'later', updated_at = '\(now)' WHERE id = 7")
        try p.src.execute("DELETE FROM public.items WHERE id = 8")
        let later = try CDCRProcess.run(args + ["--since", "last"])
        #expect(later.status == 2)
        #expect(try incremental(later.stdout)["examined"]?.int64Value == 2)
        #expect(try reportedDifferences(later.stdout) == ["public.items|extra|8"])
        // Not successful: the state stays, so the next run looks at the same keys again.
        #expect(try p.tgt.query("SELECT mode FROM cdcr.check_state").scalar == "full")
        try p.tgt.execute("DELETE FROM public.items WHERE id = 8")
        let fixed = try CDCRProcess.run(args + ["--since", "last"])
        #expect(fixed.status == 0)
        #expect(try incremental(fixed.stdout)["examined"]?.int64Value == 2)
        #expect(try p.tgt.query("SELECT mode, keys_examined FROM cdcr.check_state").rows == [["incremental", "2"]])
        let quiet = try CDCRProcess.run(args + ["--since", "last"])
        #expect(quiet.status == 0)
        #expect(try incremental(quiet.stdout)["examined"]?.int64Value == 0)
    }

    @Test("wrong input: a time that is not one, a changed column that is not a time, --since without bookkeeping: clear errors, exit 1")
    func wrongInput() throws {
        let p = try PlantedPair(try TestPostgres.sharedCluster())
        try p.both("CREATE TABLE public.plain (id int PRIMARY KEY, v text)")
        let noSchema = try CDCRProcess.run(["verify", "--table", "plain", "--since", "last"] + p.common)
        #expect(noSchema.status == 1 && noSchema.stderr.contains("run cdcr init"), "\(noSchema.stderr)")
        try BookkeepingSchema.install(on: p.tgt)
        let badTime = try CDCRProcess.run(["verify", "--table", "plain", "--since", "yesterday-ish"] + p.common)
        #expect(badTime.status == 1 && badTime.stderr.contains("--since 'yesterday-ish' is not a time"), "\(badTime.stderr)")
        let badColumn = try CDCRProcess.run(["verify", "--table", "plain", "--since", "2026-01-01", "--changed-column", "v"] + p.common)
        #expect(badColumn.status == 1 && badColumn.stderr.contains("not a timestamp or date"), "\(badColumn.stderr)")
        let noSince = try CDCRProcess.run(["verify", "--table", "plain", "--changed-column", "v"] + p.common)
        #expect(noSince.status != 0 && noSince.stderr.contains("--changed-column needs --since"))
    }
}
