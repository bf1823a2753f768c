import CDCCore
import CDCPostgres
import CDCR
import Foundation
import Testing

/// Fills `public.orders` of the fixture schema with `rows` rows of every column type it has
/// (NULLs, tabs, newlines and backslashes in text, jsonb, uuid, timestamps), ids from `from`.
func populateOrders(_ conn: PGConnection, rows: Int, from: Int = 1) throws {
    try conn.query("""
        INSERT INTO public.orders (id, customer_id, status, amount, created_at, shipped_on, note, attrs, ext_id, updated_local)
        SELECT g, g % 97, CASE WHEN g % 5 = 0 THEN NULL ELSE 's' || (g % 7) END, (g % 10000) / 100.0,
               timestamptz '2026-01-01 00:00:00+00' + g * interval '1 minute',
               CASE WHEN g % 3 = 0 THEN date '2026-01-01' + g % 300 END,
               CASE WHEN g % 11 = 0 THEN E'tab\\there\\nnew line \\\\ back' END,
               jsonb_build_object('g', g, 'tags', jsonb_build_array('a', g % 4)), md5(g::text)::uuid,
               timestamp '2026-01-01' + g * interval '1 second'
        FROM generate_series($1::int, $2::int) g
        """, [String(from), String(from + rows - 1)])
}

/// A fresh source and target database of `pg` (the fixture schema), with a connection to each.
func backfillDatabases(_ pg: TestPostgres) throws -> (source: String, target: String, src: PGConnection, tgt: PGConnection) {
    let source = try pg.createDatabase("src"), target = try pg.createDatabase("tgt")
    return (source, target, try PGConnection.connect(source), try PGConnection.connect(target))
}

/// `cdcr backfill` against `source` and `target` with `args`.
func backfill(_ source: String, _ target: String, _ args: [String], timeout: Duration = .seconds(240)) throws -> (status: Int32, stdout: String, stderr: String) {
    try CDCRProcess.run(["backfill", "--source", source, "--target", target] + args, timeout: timeout)
}

/// The JSON summary of `backfill --json`, per target table.
func backfillTables(_ stdout: String) throws -> [String: JSONValue] {
    let report = try JSONParser.parse(stdout.trimmingCharacters(in: .whitespacesAndNewlines))
    var out: [String: JSONValue] = [:]
    if case let .array(items)? = report["tables"] {
        for t in items { out[t["target"]?.stringValue ?? ""] = t }
    }
    return out
}

func sameRows(_ src: PGConnection, _ tgt: PGConnection, _ tables: [String]) throws -> Int {
    try tables.reduce(0) { $0 + (try Expect.differences(tgt, table: $1, expected: try tableRows(src, $1))) }
}

@Suite("backfill: chunked, checkpointed, verified copies", .serialized)
struct BackfillTests {
    @Test("integer, text, uuid and composite keys in chunks: the target equals the source; rerun is a no-op; --restart copies again")
    func keysAndChunks() throws {
        let pg = try TestPostgres.sharedCluster()
        let (source, target, src, tgt) = try backfillDatabases(pg)
        let extra = """
            CREATE TABLE public.by_text (code text PRIMARY KEY, v int);
            CREATE TABLE public.by_uuid (id uuid PRIMARY KEY, v text);
            """
        try src.execute(extra)
        try tgt.execute(extra)
        try populateOrders(src, rows: 2_500)
        try src.execute("""
            INSERT INTO public.order_items SELECT g / 4, g % 4, 'SKU' || g, g % 9, g / 10.0 FROM generate_series(1, 1200) g;
            INSERT INTO public.by_text SELECT CASE g % 4 WHEN 0 THEN 'k' || g WHEN 1 THEN 'Ä' || g WHEN 2 THEN E'tab\\t' || g ELSE 'Z ' || g END, g FROM generate_series(1, 700) g;
            INSERT INTO public.by_uuid SELECT md5('u' || g)::uuid, 'v' || g FROM generate_series(1, 600) g;
            """)
        // The target already holds some rows, stale ones and one the source does not have.
        try populateOrders(tgt, rows: 50)
        try tgt.execute("UPDATE public.orders SET status = 'old'; INSERT INTO public.orders (id, status) VALUES (999999, 'gone at the source')")

        let tables = ["public.orders", "public.order_items", "public.by_text", "public.by_uuid"]
        let args = tables.flatMap { ["--table", $0] } + ["--chunk-rows", "97", "--json"]
        let first = try backfill(source, target, args)
        #expect(first.status == 0, "\(first.stderr)")
        let report = try backfillTables(first.stdout)
        let orders = try #require(report["public.orders"]?["total"])
        #expect(orders["rows_read"]?.int64Value == 2_500)
        #expect(orders["inserted"]?.int64Value == 2_450)
        #expect(orders["updated"]?.int64Value == 50)
        #expect(orders["deleted"]?.int64Value == 1)
        #expect(orders["chunks"]?.int64Value == 26)
        #expect(orders["verified"]?.int64Value == 26)
        #expect(report["public.orders"]?["version_source"]?.stringValue == "lsn", "no change log in the source")
        #expect(report["public.order_items"]?["total"]?["rows_read"]?.int64Value == 1_200)
        #expect(report["public.by_text"]?["total"]?["rows_read"]?.int64Value == 700)
        #expect(report["public.by_uuid"]?["total"]?["rows_read"]?.int64Value == 600)
        #expect(try sameRows(src, tgt, tables) == 0)
        // One ledger entry per chunk, a version (the chunk's watermark) for every row — an entry where the
        // chunk met rows and went the guarded way, its range's watermark where it went into an empty
        // range — and a tombstone for the extra one. A text key gets no ranges: entries for every row.
        #expect(try Expect.count(tgt, "SELECT count(*) FROM cdcr.ledger WHERE change_id LIKE 'backfill:public.orders:%'") == 26)
        #expect(try rowsWithKnownVersion(tgt, "public.orders") == 2_500)
        // The first chunk met the 50 stale rows, the last one the extra row: guarded, 97 + 75 entries.
        #expect(try backfillRanges(tgt, "public.orders") == 24)
        #expect(try Expect.count(tgt, "SELECT count(*) FROM cdcr.row_versions WHERE table_name = 'public.orders' AND NOT deleted") == 172)
        #expect(try backfillRanges(tgt, "public.by_text") == 0)
        #expect(try Expect.count(tgt, "SELECT count(*) FROM cdcr.row_versions WHERE table_name = 'public.by_text' AND version > 0 AND NOT deleted") == 700)
        #expect(try backfillRanges(tgt, "public.by_uuid") > 0 && backfillRanges(tgt, "public.order_items") > 0)
        #expect(try Expect.count(tgt, "SELECT count(*) FROM cdcr.row_versions WHERE table_name = 'public.orders' AND row_key = '999999' AND deleted") == 1)
        #expect(try Expect.count(tgt, "SELECT count(*) FROM cdcr.backfill_state WHERE done") == 4)

        let ledger = ledgerCount(target)
        let again = try backfill(source, target, args)
        #expect(again.status == 0, "\(again.stderr)")
        #expect(try backfillTables(again.stdout)["public.orders"]?["already_done"] == .bool(true))
        #expect(ledgerCount(target) == ledger)

        let restart = try backfill(source, target, ["--table", "public.orders", "--restart", "--json", "--chunk-rows", "1000"])
        #expect(restart.status == 0, "\(restart.stderr)")
        let r = try #require(try backfillTables(restart.stdout)["public.orders"]?["total"])
        #expect(r["updated"]?.int64Value == 2_500 && r["inserted"]?.int64Value == 0 && r["chunks"]?.int64Value == 3)
        // The new run records no ranges of its own (the first run's stay, disjoint): entries for every row.
        #expect(try backfillRanges(tgt, "public.orders") == 24)
        #expect(try Expect.count(tgt, "SELECT count(*) FROM cdcr.row_versions WHERE table_name = 'public.orders' AND NOT deleted") == 2_500)
        #expect(try sameRows(src, tgt, ["public.orders"]) == 0)
    }

    @Test("verify --since after a backfill that recorded range watermarks compares the table in full: a row lost since the copy is found")
    func incrementalVerifyAfterRanges() throws {
        let pg = try TestPostgres.sharedCluster()
        let (source, target, src, tgt) = try backfillDatabases(pg)
        defer { src.close(); tgt.close() }
        try populateOrders(src, rows: 3_000)
        let since = try #require(try tgt.query("SELECT (clock_timestamp() - interval '1 second')::text").scalar)
        let run = try backfill(source, target, ["--table", "public.orders", "--chunk-rows", "1000"])
        #expect(run.status == 0, "\(run.stderr)")
        #expect(try backfillRanges(tgt, "public.orders") == 3)
        // Lost behind cdcr's back: no row version or change log names the key, only a full comparison finds it.
        try tgt.execute("DELETE FROM public.orders WHERE id = 1234")
        let verify = try CDCRProcess.run(["verify", "--json", "--table", "public.orders", "--source", source, "--target", target, "--since", since])
        #expect(verify.status == 2, "\(verify.stdout) \(verify.stderr)")
        #expect(verify.stdout.contains("a backfill copied rows into public.orders since then"), "\(verify.stdout)")
        #expect(verify.stdout.contains("\"examined\":3000,\"full_because_no_state\":false,\"full_because_backfill\":true"), "\(verify.stdout)")
        #expect(verify.stdout.contains("1234"), "\(verify.stdout)")
    }

    @Test("killed -9 mid-way: every committed chunk is checkpointed with its rows; the rerun continues after the last one")
    func killAndResume() throws {
        let pg = try TestPostgres.sharedCluster()
        let (source, target, src, tgt) = try backfillDatabases(pg)
        try populateOrders(src, rows: 6_000)
        let p = try CDCRProcess.start(["backfill", "--source", source, "--target", target, "--table", "public.orders",
                                       "--chunk-rows", "100", "--max-rows-per-second", "1500"])
        let reached = waitUntil(timeout: .seconds(60)) {
            (try? Expect.count(tgt, "SELECT coalesce(max(chunks), 0) FROM cdcr.backfill_state")) ?? 0 >= 5
        }
        #expect(reached, "\(p.stderr)")
        p.signal(SIGKILL)
        #expect(p.wait() == 128 + SIGKILL)
        let chunks = try Expect.count(tgt, "SELECT chunks FROM cdcr.backfill_state")
        #expect(chunks >= 5 && chunks < 60)
        // Rows and checkpoint commit together: exactly the checkpointed chunks' rows are there.
        #expect(try Expect.count(tgt, "SELECT count(*) FROM public.orders") == chunks * 100)
        #expect(try Expect.count(tgt, "SELECT rows_read FROM cdcr.backfill_state") == chunks * 100)
        #expect(try tgt.query("SELECT next_key::text FROM cdcr.backfill_state").scalar == "[\"\(chunks * 100 + 1)\"]")

        let rest = try backfill(source, target, ["--table", "public.orders", "--chunk-rows", "100", "--json"])
        #expect(rest.status == 0, "\(rest.stderr)")
        let t = try #require(try backfillTables(rest.stdout)["public.orders"])
        #expect(t["resumed"] == .bool(true))
        #expect(t["this_run"]?["rows_read"]?.int64Value == Int64(6_000 - chunks * 100))
        #expect(t["total"]?["rows_read"]?.int64Value == 6_000 && t["total"]?["chunks"]?.int64Value == 60)
        #expect(try Expect.count(tgt, "SELECT count(DISTINCT change_id) FROM cdcr.ledger WHERE change_id LIKE 'backfill:%'") == 60)
        #expect(try sameRows(src, tgt, ["public.orders"]) == 0)
    }

    @Test("SIGTERM finishes the current chunk, records its checkpoint and exits 0; the rate limit holds")
    func sigtermAndRate() throws {
        let pg = try TestPostgres.sharedCluster()
        let (source, target, src, tgt) = try backfillDatabases(pg)
        try populateOrders(src, rows: 3_000)
        let started = ContinuousClock.now
        let p = try CDCRProcess.start(["backfill", "--source", source, "--target", target, "--table", "public.orders",
                                       "--chunk-rows", "50", "--max-rows-per-second", "400", "--json"])
        _ = waitUntil(timeout: .seconds(30)) { (try? Expect.count(tgt, "SELECT coalesce(max(chunks), 0) FROM cdcr.backfill_state")) ?? 0 >= 10 }
        p.signal(SIGTERM)
        #expect(p.wait(timeout: .seconds(30)) == 0, "\(p.stderr)")
        let elapsed = (ContinuousClock.now - started).seconds
        let t = try #require(try backfillTables(p.stdout)["public.orders"])
        #expect(t["stopped"] == .bool(true) && t["done"] == .bool(false))
        let read = try Expect.count(tgt, "SELECT rows_read FROM cdcr.backfill_state")
        #expect(read >= 500 && read < 3_000)
        #expect(Double(read) <= 400 * elapsed + 50, "\(read) rows in \(elapsed) s")
        #expect(try Expect.count(tgt, "SELECT count(*) FROM public.orders") == read)

        let rest = try backfill(source, target, ["--table", "public.orders", "--chunk-rows", "500"])
        #expect(rest.status == 0, "\(rest.stderr)")
        #expect(rest.stdout.contains("done"), "\(rest.stdout)")
        #expect(try sameRows(src, tgt, ["public.orders"]) == 0)
    }

    @Test("--dry-run reads and counts, and writes nothing")
    func dryRun() throws {
        let pg = try TestPostgres.sharedCluster()
        let (source, target, src, tgt) = try backfillDatabases(pg)
        try populateOrders(src, rows: 1_000)
        try populateOrders(tgt, rows: 10)
        #expect(try CDCRProcess.run(["init", "--target", target]).status == 0)
        let dry = try backfill(source, target, ["--table", "public.orders", "--dry-run", "--json", "--chunk-rows", "300"])
        #expect(dry.status == 0, "\(dry.stderr)")
        let t = try #require(try backfillTables(dry.stdout)["public.orders"])
        #expect(t["dry_run"] == .bool(true))
        #expect(t["total"]?["rows_read"]?.int64Value == 1_000 && t["total"]?["inserted"]?.int64Value == 990 && t["total"]?["updated"]?.int64Value == 10)
        #expect(try Expect.count(tgt, "SELECT count(*) FROM public.orders") == 10)
        #expect(try Expect.count(tgt, "SELECT count(*) FROM cdcr.backfill_state") == 0)
        #expect(try Expect.count(tgt, "SELECT count(*) FROM cdcr.ledger") + Expect.count(tgt, "SELECT count(*) FROM cdcr.row_versions") == 0)
    }

    @Test("refused rows are counted failed and the rest apply; rows that still differ after settling: exit 2")
    func failedAndDiffering() throws {
        let pg = try TestPostgres.sharedCluster()
        let (source, target, src, tgt) = try backfillDatabases(pg)
        try populateOrders(src, rows: 300)
        try tgt.execute("ALTER TABLE public.orders ADD CONSTRAINT no13 CHECK (customer_id <> 13)")
        try tgt.execute("""
            CREATE FUNCTION public.meddle() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN IF NEW.order_id = 5 THEN NEW.sku := 'meddled'; END IF; RETURN NEW; END $$;
            CREATE TRIGGER meddle BEFORE INSERT OR UPDATE ON public.order_items FOR EACH ROW EXECUTE FUNCTION public.meddle();
            """)
        try src.execute("INSERT INTO public.order_items SELECT g / 4, g % 4, 'SKU' || g, 1, 1 FROM generate_series(1, 200) g")
        let run = try backfill(source, target, ["--table", "public.orders", "--table", "public.order_items", "--chunk-rows", "64", "--settle", "0.2", "--json"])
        #expect(run.status == 2, "\(run.stderr)")
        let report = try backfillTables(run.stdout)
        let orders = try #require(report["public.orders"])
        #expect(orders["total"]?["failed"]?.int64Value == 3, "ids 13, 110 and 207 break the check")
        #expect(orders["total"]?["inserted"]?.int64Value == 297)
        #expect(try Expect.count(tgt, "SELECT count(*) FROM public.orders") == 297)
        let items = try #require(report["public.order_items"])
        #expect(items["differing"]?.int64Value == 4, "the trigger changes order 5's four lines")
        #expect(try Expect.count(tgt, "SELECT count(*) FROM public.order_items") == 200)
    }

    @Test("bad input is refused with a message naming it, before anything is written")
    func badInput() throws {
        let pg = try TestPostgres.sharedCluster()
        let (source, target, src, tgt) = try backfillDatabases(pg)
        try populateOrders(src, rows: 100)
        try src.execute("""
            CREATE TABLE public.only_src (id int PRIMARY KEY);
            CREATE TABLE public.nopk (a int); CREATE TABLE public.lacks (id int PRIMARY KEY, a int, b text);
            CREATE TABLE public.types (id int PRIMARY KEY, ts timestamptz);
            """)
        try tgt.execute("""
            CREATE TABLE public.nopk (a int); CREATE TABLE public.lacks (id int PRIMARY KEY, a int);
            CREATE TABLE public.types (id int PRIMARY KEY, ts timestamp);
            """)
        let cases: [([String], String)] = [
            (["--table", "public.nope"], "public.nope does not exist in the source"),
            (["--table", "public.only_src"], "public.only_src does not exist in the target"),
            (["--table", "public.nopk"], "no primary key"),
            (["--table", "public.lacks"], "missing in the target public.lacks: b"),
            (["--table", "public.types"], "ts (timestamp with time zone in the source, timestamp without time zone in the target)"),
            (["--table", "public.orders", "--where", "status = "], "--where"),
            (["--table", "public.orders", "--where", "1=1; DROP TABLE public.orders"], "not a single predicate"),
            (["--table", "public.orders", "--version-source", "change-log"], "no cdcr.change_log"),
        ]
        for (args, message) in cases {
            let r = try backfill(source, target, args)
            #expect(r.status == 1, "\(args): \(r.stderr)")
            #expect(r.stderr.contains(message), "\(args): \(r.stderr)")
        }
        #expect(try Expect.count(tgt, "SELECT count(*) FROM public.orders") == 0)
        #expect(try Expect.count(tgt, "SELECT count(*) FROM cdcr.backfill_state") == 0)
        for (flag, value) in [("--writers", "0"), ("--writers", "9"), ("--outage-timeout", "-1"), ("--outage-timeout", "1e300"), ("--settle", "1e300")] {
            let r = try backfill(source, target, ["--table", "public.orders", flag, value])
            #expect(r.status == 64 && r.stderr.contains(flag), "\(flag) \(value): \(r.stderr)")
        }

        // Two backfills of one table at once: the second is refused.
        let holder = try PGConnection.connect(target)
        try holder.query("SELECT pg_advisory_lock(hashtext('cdcr.backfill'), hashtext('public.orders'))")
        let second = try backfill(source, target, ["--table", "public.orders"])
        #expect(second.status == 1 && second.stderr.contains("another backfill of public.orders is running"), "\(second.stderr)")
        holder.close()
        #expect(try Expect.count(tgt, "SELECT count(*) FROM public.orders") == 0)
        let ok = try backfill(source, target, ["--table", "public.orders", "--where", "id <= 40"])
        #expect(ok.status == 0, "\(ok.stderr)")
        #expect(try Expect.count(tgt, "SELECT count(*) FROM public.orders") == 40)
    }

    @Test("--where is evaluated read-only on both sides: a predicate whose function writes in the target fails (exit 1) and writes nothing there")
    func predicateReadOnly() throws {
        let pg = try TestPostgres.sharedCluster()
        let (source, target, src, tgt) = try backfillDatabases(pg)
        try populateOrders(src, rows: 50)
        try src.execute("CREATE FUNCTION public.keep(id bigint) RETURNS bool LANGUAGE sql AS 'SELECT true'")
        try tgt.execute("CREATE TABLE public.calls (id bigint)")
        try tgt.execute("CREATE FUNCTION public.keep(id bigint) RETURNS bool LANGUAGE sql AS 'INSERT INTO public.calls VALUES (id) RETURNING true'")
        let r = try backfill(source, target, ["--table", "public.orders", "--where", "public.keep(id)"])
        #expect(r.status == 1, "\(r.stderr)")
        #expect(r.stderr.contains("read-only"), "\(r.stderr)")
        #expect(try Expect.count(tgt, "SELECT count(*) FROM public.calls") == 0)
    }

    @Test("progress on a terminal: a bar, rows/s and an ETA in seconds, minutes or hours")
    func progressLine() {
        let table = TableName(schema: "public", name: "orders")
        let p = BackfillProgress(table: table, rowsDone: 250, estimatedRows: 1_000, rowsPerSecond: 0.1)
        #expect(p.barLine(width: 8) == "[##......] public.orders: 250 of ~1000 rows (25 %), 0 rows/s ETA 2:05:00")
        let q = BackfillProgress(table: table, rowsDone: 1_000, estimatedRows: 1_000, rowsPerSecond: 50)
        #expect(q.barLine(width: 4) == "[####] public.orders: 1000 of ~1000 rows (100 %), 50 rows/s")
        #expect(BackfillProgress(table: table, rowsDone: 0, estimatedRows: 100, rowsPerSecond: 2).line.hasSuffix("ETA 50 s"))
        #expect(BackfillProgress(table: table, rowsDone: 0, estimatedRows: 1_000, rowsPerSecond: 5).line.hasSuffix("ETA 3:20"))
    }
}
