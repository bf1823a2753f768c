import CDCCore
import CDCKafka
import CDCPostgres
import CDCR
import Foundation
import Testing

/// Source and target databases with table pairs holding known planted differences.
struct PlantedPair {
    let source: String
    let target: String
    let src: PGConnection
    let tgt: PGConnection

    /// Every difference planted, as `table|kind|key` (key columns joined with ","), what verify must report.
    var planted: Set<String> = []

    init(_ pg: TestPostgres) throws {
        source = try pg.createDatabase("vsrc", fixtureSchema: false)
        target = try pg.createDatabase("vtgt", fixtureSchema: false)
        src = try PGConnection.connect(source)
        tgt = try PGConnection.connect(target)
    }

    /// Runs `sql` on both sides.
    func both(_ sql: String) throws {
        try src.execute(sql)
        try tgt.execute(sql)
    }

    mutating func plantAll() throws {
        // orders: the fixture layout; the target's columns are of slightly different types that hold
        // the same data (int vs bigint, numeric(14,4) vs numeric(12,2), json vs jsonb).
        try src.execute("""
            CREATE TABLE public.orders (id bigint PRIMARY KEY, customer_id bigint, status text, amount numeric(12,2), created_at timestamptz,
                shipped_on date, note text, attrs jsonb, ext_id uuid, updated_local timestamp, ratio float8);
            """)
        try tgt.execute("""
            CREATE TABLE public.orders (id bigint PRIMARY KEY, customer_id int, status text, amount numeric(14,4), created_at timestamptz,
                shipped_on date, note text, attrs json, ext_id uuid, updated_local timestamp, ratio float8);
            """)
        let fill = """
            INSERT INTO public.orders SELECT i, i % 500, (ARRAY['new','paid','shipped'])[1 + i % 3], (i % 1000) / 4.0,
                '2026-01-01 00:00:00+00'::timestamptz + i * interval '1 minute', DATE '2026-01-01' + i % 90,
                CASE WHEN i % 7 = 0 THEN NULL ELSE 'note ' || i END, jsonb_build_object('k', i % 10, 'tags', jsonb_build_array('a', i % 3)),
                md5(i::text)::uuid, TIMESTAMP '2026-01-01 00:00:00' + i * interval '1 second', i / 10.0
            FROM generate_series(1, 3000) i
            """
        try both(fill)
        // The same instants written from another time zone, JSON with another key order and spacing:
        // not differences.
        try tgt.execute("""
            SET TimeZone = 'America/New_York';
            UPDATE public.orders SET created_at = (created_at AT TIME ZONE 'America/New_York')::text::timestamptz WHERE id % 5 = 0;
            UPDATE public.orders SET attrs = ('{"tags": ' || (attrs->'tags')::text || ',   "k": ' || (attrs->'k')::text || '}')::json WHERE id % 3 = 0;
            RESET TimeZone;
            """)
        try tgt.execute("DELETE FROM public.orders WHERE id IN (17, 1500, 2999)")
        planted.formUnion(["public.orders|missing|17", "public.orders|missing|1500", "public.orders|missing|2999"])
        try tgt.execute("INSERT INTO public.orders (id, status) VALUES (5000, 'extra')")
        planted.insert("public.orders|extra|5000")
        try tgt.execute("UPDATE public.orders SET status = 'cancelled' WHERE id = 20")
        planted.insert("public.orders|different|20|status")
        try tgt.execute("UPDATE public.orders SET note = NULL WHERE id = 30")  // value → NULL
        planted.insert("public.orders|different|30|note")
        try tgt.execute("UPDATE public.orders SET note = 'was null' WHERE id = 49")  // NULL → value (49 % 7 = 0)
        planted.insert("public.orders|different|49|note")
        try tgt.execute("UPDATE public.orders SET amount = amount + 0.0001 WHERE id = 60")  // only visible at the target's scale
        planted.insert("public.orders|different|60|amount")
        try tgt.execute("UPDATE public.orders SET created_at = created_at + interval '1 microsecond', attrs = '{\"k\": 99}' WHERE id = 70")
        planted.insert("public.orders|different|70|created_at,attrs")
        try tgt.execute("UPDATE public.orders SET ratio = ratio + 1e-12 WHERE id = 80")  // within --float-tolerance 1e-9
        planted.insert("public.orders|different|80|ratio")

        // Text keys.
        // Text keys; the target's column sorts by "C", the source's by the database's locale: ranges
        // are then cut and compared byte-wise on both sides.
        try src.execute("CREATE TABLE public.skus (sku text PRIMARY KEY, title text)")
        try tgt.execute("CREATE TABLE public.skus (sku text COLLATE \"C\" PRIMARY KEY, title text)")
        try both("INSERT INTO public.skus SELECT 'SKU-' || lpad(i::text, 5, '0'), 'item ' || i FROM generate_series(1, 1200) i")
        try tgt.execute("DELETE FROM public.skus WHERE sku = 'SKU-00042'; INSERT INTO public.skus VALUES ('sku-lower', 'x'), ('Ω-unicode', 'y'); UPDATE public.skus SET title = 'renamed' WHERE sku = 'SKU-01111'")
        planted.formUnion(["public.skus|missing|SKU-00042", "public.skus|extra|sku-lower", "public.skus|extra|Ω-unicode", "public.skus|different|SKU-01111|title"])

        // uuid keys.
        try both("CREATE TABLE public.devices (id uuid PRIMARY KEY, seen int); INSERT INTO public.devices SELECT md5('d' || i)::uuid, i FROM generate_series(1, 1000) i")
        let u1 = try src.query("SELECT md5('d7')::uuid::text").scalar!, u2 = try src.query("SELECT md5('d900')::uuid::text").scalar!
        try tgt.execute("DELETE FROM public.devices WHERE id = md5('d7')::uuid; UPDATE public.devices SET seen = -1 WHERE id = md5('d900')::uuid")
        planted.formUnion(["public.devices|missing|\(u1)", "public.devices|different|\(u2)|seen"])

        // A composite key.
        try both("""
            CREATE TABLE public.order_items (order_id bigint, line_no int, sku text, qty int, price numeric(10,2), PRIMARY KEY (order_id, line_no));
            INSERT INTO public.order_items SELECT o, l, 'S' || (o * l % 97), l, (o % 50) + 0.5 FROM generate_series(1, 400) o, generate_series(1, 3) l;
            """)
        try tgt.execute("DELETE FROM public.order_items WHERE order_id = 100 AND line_no = 2; INSERT INTO public.order_items VALUES (100, 4, 'new', 1, 1); UPDATE public.order_items SET qty = 99 WHERE order_id = 399 AND line_no = 1")
        planted.formUnion(["public.order_items|missing|100,2", "public.order_items|extra|100,4", "public.order_items|different|399,1|qty"])

        // A sparse, skewed key: a dense cluster and values spread up to 10^15.
        try both("""
            CREATE TABLE public.events (id bigint PRIMARY KEY, v text);
            INSERT INTO public.events SELECT i, 'v' || i FROM generate_series(1, 800) i;
            INSERT INTO public.events SELECT (i::numeric ^ 5)::bigint + 1000, 'far' || i FROM generate_series(2, 1000) i;
            """)
        let far = try src.query("SELECT max(id)::text FROM public.events").scalar!
        try tgt.execute("DELETE FROM public.events WHERE id = \(far); UPDATE public.events SET v = 'changed' WHERE id = 400; INSERT INTO public.events VALUES (123456789012345, 'extra')")
        planted.formUnion(["public.events|missing|\(far)", "public.events|different|400|v", "public.events|extra|123456789012345"])

        for t in ["orders", "skus", "devices", "order_items", "events"] { try both("ANALYZE public.\(t)") }
    }

    var common: [String] { ["--source", source, "--target", target] }
    static let tables = ["--table", "orders", "--table", "skus", "--table", "devices", "--table", "order_items", "--table", "events"]
}

/// The first table of a `cdcr verify --json` report.
func firstTable(_ report: JSONValue) -> JSONValue? {
    if case let .array(tables)? = report["tables"] { return tables.first }
    return nil
}

/// The differences of a `cdcr verify --json` report as `table|kind|key[|columns]`.
func reportedDifferences(_ json: String) throws -> Set<String> {
    let report = try JSONParser.parse(json)
    var out = Set<String>()
    for case let .array(tables) in [report["tables"] ?? .null] {
        for t in tables {
            let name = t["table"]?.stringValue ?? "?"
            for case let .array(rows) in [t["rows"] ?? .null] {
                for r in rows {
                    let key = (r["key"]?.objectMembers ?? []).map { $0.1.stringValue ?? "" }.joined(separator: ",")
                    var item = "\(name)|\(r["kind"]?.stringValue ?? "?")|\(key)"
                    if case let .array(cols)? = r["columns"] { item += "|" + cols.compactMap(\.stringValue).joined(separator: ",") }
                    out.insert(item)
                }
            }
        }
    }
    return out
}

@Suite("reconciler: verify, repair, audit", .serialized)
struct VerifyTests {
    @Test("verify reports exactly the planted differences, for several key types, at any descent depth")
    func exactDifferences() throws {
        var p = try PlantedPair(try TestPostgres.sharedCluster())
        try p.plantAll()
        // Default tuning (these tables fit in one range) and a tiny one that forces a deep descent.
        for tuning in [[String](), ["--leaf-rows", "4", "--root-rows", "16"]] {
            let r = try CDCRProcess.run(["verify", "--json"] + PlantedPair.tables + p.common + tuning)
            #expect(r.status == 2, "differences found → exit 2: \(r.stderr)")
            #expect(try reportedDifferences(r.stdout) == p.planted, "tuning \(tuning)")
            let report = try JSONParser.parse(r.stdout)
            let orders = firstTable(report)
            #expect(orders?["source_rows"]?.int64Value == 3000)
            #expect(orders?["target_rows"]?.int64Value == 2998)
            if !tuning.isEmpty, case let .array(tables)? = report["tables"], let events = tables.last {
                // The sparse, skewed key: a deep descent, but only a few rows ever leave the databases.
                #expect(events["table"]?.stringValue == "public.events")
                #expect((events["rows_fetched"]?.int64Value ?? .max) <= 60, "fetched \(events["rows_fetched"]?.int64Value ?? -1) of 1,800 rows")
                if case let .array(levels)? = events["ranges_per_level"] { #expect(levels.count >= 2, "differing ranges were split again") }
            }
        }
        // Human output: -, +, ~ lines and a total.
        let human = try CDCRProcess.run(["verify", "--table", "orders"] + p.common)
        #expect(human.status == 2)
        #expect(human.stdout.contains("  - id=17"))
        #expect(human.stdout.contains("  + id=5000"))
        #expect(human.stdout.contains("  ~ id=20: status"))
        #expect(human.stdout.contains("total: 1 table, 3 missing, 1 extra, 6 different"))
        // The float tolerance hides the 1e-12 change; --columns and --where narrow the comparison.
        let tolerant = try CDCRProcess.run(["verify", "--json", "--table", "orders", "--float-tolerance", "1e-9"] + p.common)
        #expect(try reportedDifferences(tolerant.stdout) == p.planted.filter { $0.hasPrefix("public.orders|") && !$0.hasSuffix("|80|ratio") })
        let narrow = try CDCRProcess.run(["verify", "--json", "--table", "orders", "--columns", "status", "--where", "id < 1000"] + p.common)
        #expect(try reportedDifferences(narrow.stdout) == ["public.orders|missing|17", "public.orders|different|20|status"])
        // Reports to files.
        let dir = FileManager.default.temporaryDirectory.path
        let md = "\(dir)/cdcr-verify-\(getpid()).md", html = "\(dir)/cdcr-verify-\(getpid()).html"
        _ = try CDCRProcess.run(["verify", "--table", "orders", "--report", md] + p.common)
        _ = try CDCRProcess.run(["verify", "--table", "orders", "--report", html] + p.common)
        #expect(try String(contentsOfFile: md, encoding: .utf8).contains("- id=17"))
        #expect(try String(contentsOfFile: html, encoding: .utf8).contains("<table>"))
    }

    @Test("repair: dry run changes nothing; --execute fixes all but extras; --allow-delete removes them; logged once per fix; a second run changes nothing")
    func repairConverges() throws {
        var p = try PlantedPair(try TestPostgres.sharedCluster())
        try p.plantAll()
        let before = try tableRows(p.tgt, "public.orders")
        let dry = try CDCRProcess.run(["repair"] + PlantedPair.tables + p.common)
        #expect(dry.status == 0, "\(dry.stderr)")
        #expect(dry.stdout.contains("public.orders: would insert 3, would update 6, would delete 0, 1 extra rows kept"))
        #expect(try tableRows(p.tgt, "public.orders") == before, "a dry run changes nothing")

        let printed = try CDCRProcess.run(["repair", "--print", "--allow-delete", "--table", "orders"] + p.common)
        #expect(printed.stdout.contains("INSERT INTO \"public\".\"orders\""))
        #expect(printed.stdout.contains("DELETE FROM \"public\".\"orders\" WHERE \"id\" = '5000'::bigint;"))
        #expect(try tableRows(p.tgt, "public.orders") == before, "--print changes nothing")

        let keep = try CDCRProcess.run(["repair", "--execute", "--json"] + PlantedPair.tables + p.common)
        #expect(keep.status == 2, "extra rows kept → the target still differs: \(keep.stderr)")
        let afterKeep = try CDCRProcess.run(["verify", "--json"] + PlantedPair.tables + p.common)
        #expect(try reportedDifferences(afterKeep.stdout) == p.planted.filter { $0.contains("|extra|") })

        let full = try CDCRProcess.run(["repair", "--execute", "--allow-delete"] + PlantedPair.tables + p.common)
        #expect(full.status == 0, "\(full.stdout) \(full.stderr)")
        let clean = try CDCRProcess.run(["verify"] + PlantedPair.tables + p.common)
        #expect(clean.status == 0, "\(clean.stdout)")
        #expect(clean.stdout.contains("0 missing, 0 extra, 0 different"))

        // One log row per fix, each with its images: inserts have no before, deletes no after.
        let log = try p.tgt.query("SELECT table_name, action, row_key::text, before_image IS NULL, after_image IS NULL FROM cdcr.repair_log ORDER BY id")
        #expect(log.count == p.planted.count)
        for r in log.rows {
            #expect((r[1] == "insert") == (r[3] == "t"))
            #expect((r[1] == "delete") == (r[4] == "t"))
        }
        let fix20 = try p.tgt.query("SELECT before_image->>'status', after_image->>'status' FROM cdcr.repair_log WHERE table_name = 'public.orders' AND row_key = '{\"id\": \"20\"}'")
        #expect(fix20.rows.first == ["cancelled", "shipped"])
        // Through the applier: every fix has its ledger entry.
        #expect(try Expect.count(p.tgt, "SELECT count(*) FROM cdcr.ledger l JOIN cdcr.repair_log r USING (change_id)") == p.planted.count)

        let again = try CDCRProcess.run(["repair", "--execute", "--allow-delete"] + PlantedPair.tables + p.common)
        #expect(again.status == 0)
        #expect(try Expect.count(p.tgt, "SELECT count(*) FROM cdcr.repair_log") == p.planted.count, "a second repair changes nothing")
    }

    @Test("drift beyond --max-differences: counted, not listed; an empty target costs no key fetch; repair goes in rounds")
    func boundedListing() throws {
        let p = try PlantedPair(try TestPostgres.sharedCluster())
        try p.both("CREATE TABLE public.items (id bigint PRIMARY KEY, v text)")
        try p.src.execute("INSERT INTO public.items SELECT i, 'v' || i FROM generate_series(1, 3000) i")
        let common = ["--table", "items", "--max-differences", "40"] + p.common

        // An empty target: 3,000 missing rows, reported as one range without fetching a key.
        let summarised = try CDCRProcess.run(["verify", "--json"] + common)
        let s = try #require(firstTable(try JSONParser.parse(summarised.stdout)))
        #expect(s["missing"]?.int64Value == 3000 && s["unlisted"]?.int64Value == 0 && s["rows_fetched"]?.int64Value == 0, "\(summarised.stdout.prefix(400))")
        if case let .array(ranges)? = s["ranges"] { #expect(ranges.count == 1 && ranges.first?["rows"]?.int64Value == 3000) } else { Issue.record("no ranges") }
        // Listed key by key (no summary): 40 are listed, the rest never leave the source.
        let empty = try CDCRProcess.run(["verify", "--json", "--summarize-rows", "100000"] + common)
        #expect(empty.status == 2, "\(empty.stderr)")
        let e = try #require(firstTable(try JSONParser.parse(empty.stdout)))
        #expect(e["missing"]?.int64Value == 3000 && e["unlisted"]?.int64Value == 2960)
        if case let .array(rows)? = e["rows"] { #expect(rows.count == 40) } else { Issue.record("no rows in \(empty.stdout.prefix(300))") }
        #expect((e["rows_fetched"]?.int64Value ?? .max) <= 40, "keys fetched beyond the listing")

        // Partial drift: 200 missing, 94 different (every 30th id from 210), 30 extra.
        try p.tgt.execute("""
            INSERT INTO public.items SELECT i, 'v' || i FROM generate_series(201, 3000) i;
            UPDATE public.items SET v = 'changed' WHERE id % 30 = 0;
            INSERT INTO public.items SELECT i, 'extra' FROM generate_series(5001, 5030) i;
            """)
        let text = try CDCRProcess.run(["verify"] + common)
        #expect(text.status == 2)
        #expect(text.stdout.contains("200 missing, 30 extra, 94 different"), "\(text.stdout)")
        #expect(text.stdout.contains("more not listed"), "\(text.stdout)")
        let dry = try CDCRProcess.run(["repair"] + common)
        #expect(dry.stdout.contains("would insert 200, would update 94, would delete 0, 30 extra rows kept"), "\(dry.stdout)")

        // --execute repairs all of it, 40 rows a round, and logs each fix once.
        let fixed = try CDCRProcess.run(["repair", "--execute", "--allow-delete", "--json"] + common)
        #expect(fixed.status == 0, "\(fixed.stdout) \(fixed.stderr)")
        let t = try #require(firstTable(try JSONParser.parse(fixed.stdout)))
        #expect(t["inserted"]?.int64Value == 200 && t["updated"]?.int64Value == 94 && t["deleted"]?.int64Value == 30, "\(fixed.stdout)")
        #expect(try Expect.count(p.tgt, "SELECT count(*) FROM cdcr.repair_log") == 324)
        #expect(try CDCRProcess.run(["verify"] + common).status == 0)
    }

    @Test("repair without --allow-delete: kept extra rows, more than --max-differences, never crowd out the rows it fixes")
    func keptExtrasTakeNoListingRoom() throws {
        let p = try PlantedPair(try TestPostgres.sharedCluster())
        try p.both("CREATE TABLE public.items (id bigint PRIMARY KEY, v text)")
        // Even ids in the source; the target lacks 20 of the last ones and adds 100 odd extras among
        // the first. Ranges of ~10 rows are all compared row by row, 200 ranges a statement, so the
        // extras are met (and, before, listed) before any missing row.
        try p.src.execute("INSERT INTO public.items SELECT i, 'v' || i FROM generate_series(2, 12000, 2) i; ANALYZE public.items")
        try p.tgt.execute("""
            INSERT INTO public.items SELECT i, 'v' || i FROM generate_series(2, 12000, 2) i WHERE i NOT BETWEEN 11802 AND 11840;
            INSERT INTO public.items SELECT i, 'extra' FROM generate_series(1, 199, 2) i;
            ANALYZE public.items;
            """)
        let common = ["--table", "items", "--max-differences", "40", "--root-rows", "10", "--leaf-rows", "100"] + p.common
        let fixed = try CDCRProcess.run(["repair", "--execute", "--json"] + common)
        #expect(fixed.status == 2, "extra rows stay, so the tables still differ: \(fixed.stdout) \(fixed.stderr)")
        let t = try #require(firstTable(try JSONParser.parse(fixed.stdout)))
        #expect(t["inserted"]?.int64Value == 20 && t["kept_extra"]?.int64Value == 100 && t["not_reached"]?.int64Value == 0, "\(fixed.stdout)")
        #expect(try Expect.count(p.tgt, "SELECT count(*) FROM public.items WHERE id % 2 = 0") == 6000)
        #expect(try Expect.count(p.tgt, "SELECT count(*) FROM cdcr.repair_log") == 20)
    }

    @Test("repair-undo puts back what a repair changed, newest fix first, but never a row changed since; once")
    func repairUndo() throws {
        let p = try PlantedPair(try TestPostgres.sharedCluster())
        try p.both("CREATE TABLE public.items (id bigint PRIMARY KEY, v text, n numeric(8,2), doc jsonb)")
        try p.src.execute("INSERT INTO public.items SELECT i, 'v' || i, i / 4.0, jsonb_build_object('i', i) FROM generate_series(1, 100) i")
        try p.tgt.execute("""
            INSERT INTO public.items SELECT i, 'v' || i, i / 4.0, jsonb_build_object('i', i) FROM generate_series(11, 100) i;
            UPDATE public.items SET v = 'drift', n = 0 WHERE id IN (20, 30);
            INSERT INTO public.items VALUES (500, 'extra', 1.5, '{"x": [1, 2.50]}');
            """)
        func rows() throws -> String? { try p.tgt.query("SELECT jsonb_agg(t ORDER BY id)::text FROM public.items t").scalar }
        let drifted = try rows()
        let common = ["--table", "items"] + p.common
        let repair = try CDCRProcess.run(["repair", "--execute", "--allow-delete"] + common)
        #expect(repair.status == 0, "\(repair.stdout)\(repair.stderr)")
        let runID = try #require(repair.stdout.split(whereSeparator: { $0 == " " || $0 == "\n" }).first { $0.hasPrefix("repair-") }.map { String($0.dropLast()) })
        #expect(try CDCRProcess.run(["verify"] + common).status == 0)

        // A repaired row changed afterwards (the stream, a person): the undo must leave it alone.
        try p.tgt.execute("UPDATE public.items SET v = 'newer' WHERE id = 30")
        let repaired = try rows()
        let dry = try CDCRProcess.run(["repair-undo", runID] + p.common)
        #expect(dry.status == 2 && dry.stdout.contains("would undo 10 inserts, 1 updates, 1 deletes; 1 rows changed since the repair"), "\(dry.stdout)\(dry.stderr)")
        #expect(try rows() == repaired, "a dry run changes nothing")

        let undo = try CDCRProcess.run(["repair-undo", runID, "--execute", "--json"] + p.common)
        #expect(undo.status == 2, "\(undo.stdout)\(undo.stderr)")
        let report = try JSONParser.parse(undo.stdout)
        #expect(report["undone"]?["inserts"]?.int64Value == 10 && report["undone"]?["deletes"]?.int64Value == 1)
        // Everything is as it was before the repair, but for the row changed since.
        try p.tgt.execute("UPDATE public.items SET v = 'drift', n = 0 WHERE id = 30")
        #expect(try rows() == drifted)
        #expect(try Expect.count(p.tgt, "SELECT count(*) FROM cdcr.ledger WHERE change_id LIKE 'undo:%'") == 12)
        #expect(try Expect.count(p.tgt, "SELECT count(*) FROM cdcr.repair_log WHERE run_id = 'undo-' || $1", [runID]) == 12)

        let again = try CDCRProcess.run(["repair-undo", runID, "--execute"] + p.common)
        #expect(again.status == 1 && again.stderr.contains("already undone"), "\(again.stderr)")
        let unknown = try CDCRProcess.run(["repair-undo", "repair-nope"] + p.common)
        #expect(unknown.status == 1 && unknown.stderr.contains("no repair run repair-nope"), "\(unknown.stderr)")
    }

    @Test("repair-undo of a row one run fixed twice, the fixes in different batches: the dry run says what --execute does")
    func repairUndoRowFixedTwice() throws {
        let url = try TestPostgres.sharedCluster().createDatabase()
        let conn = try PGConnection.connect(url)
        defer { conn.close() }
        try conn.execute("CREATE TABLE public.items (id bigint PRIMARY KEY, v text); INSERT INTO public.items VALUES (1, 'c'), (2, 'y')")
        _ = try BookkeepingSchema.install(on: conn)
        // Two rounds of one run: row 1 went a → b, then b → c; row 2 was inserted as x, then went
        // x → z, and was changed since (to y).
        try conn.execute("""
            INSERT INTO cdcr.repair_log (run_id, table_name, row_key, action, before_image, after_image, change_id) VALUES
              ('repair-twice', 'public.items', '{"id": 1}', 'update', '{"id": 1, "v": "a"}', '{"id": 1, "v": "b"}', 'repair-twice:1'),
              ('repair-twice', 'public.items', '{"id": 2}', 'insert', NULL, '{"id": 2, "v": "x"}', 'repair-twice:2'),
              ('repair-twice', 'public.items', '{"id": 1}', 'update', '{"id": 1, "v": "b"}', '{"id": 1, "v": "c"}', 'repair-twice:3'),
              ('repair-twice', 'public.items', '{"id": 2}', 'update', '{"id": 2, "v": "x"}', '{"id": 2, "v": "z"}', 'repair-twice:4');
            """)
        // One fix per batch, so each dry-run batch is rolled back before the next.
        let dry = try RepairUndo.undo(runID: "repair-twice", on: conn, execute: false, batchSize: 1)
        #expect(dry.undoneUpdates == 2 && dry.undoneInserts == 0, "\(dry)")
        #expect(dry.conflicts.map(\.key) == [#"{"id": 2}"#, #"{"id": 2}"#], "\(dry.conflicts)")
        #expect(try conn.query("SELECT string_agg(v, ',' ORDER BY id) FROM public.items").scalar == "c,y", "a dry run changes nothing")

        let done = try RepairUndo.undo(runID: "repair-twice", on: conn, execute: true, batchSize: 1)
        #expect(done.undoneUpdates == dry.undoneUpdates && done.conflicts.count == dry.conflicts.count, "\(done)")
        #expect(try conn.query("SELECT string_agg(v, ',' ORDER BY id) FROM public.items").scalar == "a,y")
    }

    @Test("a repaired row keeps its version: a late older change stays stale")
    func repairKeepsVersionGuard() throws {
        let pg = try TestPostgres.sharedCluster()
        let kafka = try TestKafka()
        let source = try pg.createDatabase("vsrc")
        let target = try pg.createDatabase("vtgt")
        try kafka.createTopic("orders", partitions: 1)
        func event(_ id: Int, version: Int, status: String) -> String {
            "{\"change_id\":\"c\(version)\",\"table\":\"orders\",\"operation\":\"UPDATE\",\"key\":{\"id\":\(id)},\"data\":{\"id\":\(id),\"status\":\"\(status)\"},\"version\":\(version)}"
        }
        try kafka.send([OutgoingMessage(topic: "orders", key: nil, value: Array(event(1, version: 10, status: "v10").utf8))])
        #expect(try CDCRProcess.run(runArgs(brokers: kafka.brokers, topic: "orders", group: "g", target: target)).status == 0)
        let src = try PGConnection.connect(source)
        try src.execute("INSERT INTO public.orders (id, status) VALUES (1, 'source-truth')")
        let repair = try CDCRProcess.run(["repair", "--execute", "--table", "orders", "--source", source, "--target", target])
        #expect(repair.status == 0, "\(repair.stderr)")
        let tgt = try PGConnection.connect(target)
        #expect(try tgt.query("SELECT status FROM public.orders WHERE id = 1").scalar == "source-truth")
        #expect(try tgt.query("SELECT version FROM cdcr.row_versions WHERE row_key = '1'").scalar == "10")
        try kafka.send([OutgoingMessage(topic: "orders", key: nil, value: Array(event(1, version: 5, status: "late-old").utf8))])
        // A new group re-reads the topic from the start: c10 is a duplicate, c5 is older than the stored version.
        let late = try CDCRProcess.run(runArgs(brokers: kafka.brokers, topic: "orders", group: "g2", target: target))
        #expect(late.status == 0)
        #expect(try tgt.query("SELECT status FROM public.orders WHERE id = 1").scalar == "source-truth", "the late older change must stay stale")
    }

    @Test("--settle re-checks differing rows later: a change in flight is not reported as drift")
    func settle() throws {
        var p = try PlantedPair(try TestPostgres.sharedCluster())
        try p.plantAll()
        let verify = try CDCRProcess.start(["verify", "--json", "--table", "skus", "--settle", "3"] + p.common)
        Thread.sleep(forTimeInterval: 1.5)
        // The "applier" catches up on one of the differences meanwhile.
        try p.tgt.execute("UPDATE public.skus SET title = 'item 1111' WHERE sku = 'SKU-01111'")
        #expect(verify.wait() == 2)
        #expect(try reportedDifferences(verify.stdout) == p.planted.filter { $0.hasPrefix("public.skus|") && !$0.contains("SKU-01111") })
        #expect(firstTable(try JSONParser.parse(verify.stdout))?["settled"]?.int64Value == 1)
    }

    @Test("audit: counts and statuses ok / partial / overload / reject, refreshed idempotently")
    func audit() throws {
        let p = try PlantedPair(try TestPostgres.sharedCluster())
        try p.both("CREATE TABLE a (id int PRIMARY KEY); CREATE TABLE b (id int PRIMARY KEY); CREATE TABLE c (id int PRIMARY KEY); CREATE TABLE d (id int PRIMARY KEY)")
        try p.src.execute("INSERT INTO a SELECT generate_series(1, 10); INSERT INTO b SELECT generate_series(1, 10); INSERT INTO c SELECT generate_series(1, 10); INSERT INTO d SELECT generate_series(1, 10)")
        try p.tgt.execute("INSERT INTO a SELECT generate_series(1, 10); INSERT INTO b SELECT generate_series(1, 4); INSERT INTO c SELECT generate_series(1, 12)")
        let args = ["audit", "--table", "a", "--table", "b", "--table", "c", "--table", "d"] + p.common
        for _ in 0..<2 {
            let r = try CDCRProcess.run(args + ["--json"])
            #expect(r.status == 0, "\(r.stderr)")
        }
        let rows = try p.tgt.query("SELECT table_name, src_row_count, tgt_row_count, status FROM cdcr.audit ORDER BY table_name").rows
        #expect(rows == [["a", "10", "10", "ok"], ["b", "10", "4", "partial"], ["c", "10", "12", "overload"], ["d", "10", "0", "reject"]])
    }

    @Test("wrong input: a missing table, a table without primary key, a bad --where: clear errors, exit 1, nothing compared")
    func wrongInput() throws {
        let p = try PlantedPair(try TestPostgres.sharedCluster())
        try p.both("CREATE TABLE public.keyed (id int PRIMARY KEY, v text); CREATE TABLE public.heap (id int, v text)")
        try p.both("INSERT INTO public.keyed SELECT i, 'x' FROM generate_series(1, 100) i")
        let missing = try CDCRProcess.run(["verify", "--table", "nope"] + p.common)
        #expect(missing.status == 1)
        #expect(missing.stderr.contains("table public.nope does not exist in the source database"))
        let noKey = try CDCRProcess.run(["verify", "--table", "heap"] + p.common)
        #expect(noKey.status == 1)
        #expect(noKey.stderr.contains("has no primary key"))

        try p.tgt.query("SELECT pg_stat_reset()")
        let badWhere = try CDCRProcess.run(["verify", "--table", "keyed", "--where", "no_such_column > 3"] + p.common)
        #expect(badWhere.status == 1)
        #expect(badWhere.stderr.contains("--where 'no_such_column > 3' is not a valid predicate on the source table"))
        let injected = try CDCRProcess.run(["repair", "--execute", "--table", "keyed", "--where", "true; DROP TABLE public.keyed"] + p.common)
        #expect(injected.status == 1)
        #expect(injected.stderr.contains("is not a single predicate"))
        #expect(try Expect.count(p.src, "SELECT count(*) FROM public.keyed") == 100)
        Thread.sleep(forTimeInterval: 1)
        #expect(try Expect.count(p.tgt, "SELECT coalesce(sum(seq_scan + coalesce(idx_scan, 0)), 0) FROM pg_stat_user_tables WHERE relname = 'keyed'") == 0,
                "nothing ran against the target table")
        let badFlag = try CDCRProcess.run(["verify", "--table", "keyed", "--float-tolerance", "-1"] + p.common)
        #expect(badFlag.status != 0)
        #expect(badFlag.stderr.contains("--float-tolerance"))
    }
}
