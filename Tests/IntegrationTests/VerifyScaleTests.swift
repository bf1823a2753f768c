import CDCCore
import CDCPostgres
import CDCR
import Foundation
import Testing

@Suite("verify at scale: key shapes, the difference spill, ranges summarised")
struct VerifyScaleTests {
    /// Table `public.k` keyed by `columns`/`exprs` (SQL over the integer `i`), 20,000 rows on both
    /// sides; the target lacks 5, has 1 extra and 10 changed. Returns the pair and the expected set.
    func keyed(_ columns: String, _ exprs: String, key: String) throws -> (PlantedPair, Set<String>) {
        let p = try PlantedPair(try TestPostgres.sharedCluster())
        try p.both("CREATE TABLE public.k (\(columns), v text, n numeric, PRIMARY KEY (\(key)))")
        try p.both("INSERT INTO public.k SELECT \(exprs), 'v' || i, i / 3.0 FROM generate_series(1, 20000) i; ANALYZE public.k")
        func ids(_ list: [Int]) -> String { "(SELECT \(exprs) FROM unnest('{\(list.map(String.init).joined(separator: ","))}'::int[]) i)" }
        let missing = [3, 4_001, 9_999, 15_000, 19_998], changed = (0..<10).map { $0 * 1_999 + 11 }
        try p.tgt.execute("DELETE FROM public.k WHERE (\(key)) IN \(ids(missing))")
        try p.tgt.execute("UPDATE public.k SET v = 'changed' WHERE (\(key)) IN \(ids(changed))")
        try p.tgt.execute("INSERT INTO public.k SELECT \(exprs), 'extra', 0 FROM (SELECT 30000 AS i) s; ANALYZE public.k")
        func texts(_ list: [Int]) throws -> [String] {
            try p.src.query("SELECT concat_ws(',', \(exprs)) FROM unnest($1::int[]) i", ["{" + list.map(String.init).joined(separator: ",") + "}"]).rows.map { $0[0]! }
        }
        var expected = Set(try texts(missing).map { "public.k|missing|\($0)" })
        expected.formUnion(try texts(changed).map { "public.k|different|\($0)|v" })
        expected.insert("public.k|extra|" + (try p.tgt.query("SELECT concat_ws(',', \(exprs)) FROM (SELECT 30000 AS i) s").scalar!))
        return (p, expected)
    }

    @Test("text, uuid, composite and skewed keys: exact, with about as few rows fetched as a dense integer key",
          arguments: [("id bigint", "i::bigint", "id", "key ranges"), ("k text", "md5(i::text)", "k", "hash buckets"),
                      ("u uuid", "md5(i::text || 'u')::uuid", "u", "hash buckets"),
                      ("a bigint, b int", "(i / 8)::bigint, (i % 8)::int", "a, b", "hash buckets"),
                      // Skewed: most keys packed near 0, a long sparse tail.
                      ("s bigint", "(CASE WHEN i % 10 = 0 THEN i::bigint * 1000000 ELSE i::bigint END)", "s", "hash buckets")])
    func keyShapes(columns: String, exprs: String, key: String, descent: String) throws {
        let (p, expected) = try keyed(columns, exprs, key: key)
        let r = try CDCRProcess.run(["verify", "--json", "--table", "k", "--root-rows", "500"] + p.common)
        #expect(r.status == 2, "\(r.stderr)")
        #expect(try reportedDifferences(r.stdout) == expected, "\(columns)")
        let t = try #require(firstTable(try JSONParser.parse(r.stdout)))
        // A dense integer key is cut into ranges arithmetically, any other key into hash buckets.
        #expect(t["descent"]?.stringValue == descent, "\(columns)")
        // 16 differing rows: at most 10 × 16 rows fetched plus a fixed overhead, whatever the key.
        let fetched = t["rows_fetched"]?.int64Value ?? .max
        #expect(fetched <= 10 * 16 + 40, "\(columns): \(fetched) rows fetched for 16 differences")
        // A predicate applies in every scan: the row excluded (equal on both sides) changes nothing.
        let filtered = try CDCRProcess.run(["verify", "--json", "--table", "k", "--root-rows", "500", "--where", "v <> 'v8'"] + p.common)
        #expect(try reportedDifferences(filtered.stdout) == expected, "\(columns) --where: \(filtered.stderr)")
        let f = try #require(firstTable(try JSONParser.parse(filtered.stdout)))
        #expect(f["source_rows"]?.int64Value == 19_999, "\(columns) --where")
    }

    @Test("a one-sided run of ranges is reported as a range with its count; repair copies it page by page, logged, undoable")
    func rangeSummaries() throws {
        let p = try PlantedPair(try TestPostgres.sharedCluster())
        try p.both("CREATE TABLE public.items (id bigint PRIMARY KEY, v text)")
        try p.src.execute("INSERT INTO public.items SELECT i, 'v' || i FROM generate_series(1, 5000) i; ANALYZE public.items")
        // The target holds the first 2,000 rows and 1,500 rows the source never had.
        try p.tgt.execute("""
            INSERT INTO public.items SELECT i, 'v' || i FROM generate_series(1, 2000) i;
            INSERT INTO public.items SELECT i, 'x' FROM generate_series(10001, 11500) i; ANALYZE public.items
            """)
        let common = ["--table", "items"] + p.common
        let v = try CDCRProcess.run(["verify", "--json"] + common)
        #expect(v.status == 2, "\(v.stderr)")
        let t = try #require(firstTable(try JSONParser.parse(v.stdout)))
        #expect(t["missing"]?.int64Value == 3000 && t["extra"]?.int64Value == 1500 && t["unlisted"]?.int64Value == 0, "\(v.stdout.prefix(600))")
        // The sparse key would take hash buckets, but nearly every bucket differs: key ranges summarise.
        #expect(t["descent"]?.stringValue == "key ranges")
        guard case let .array(ranges)? = t["ranges"], case let .array(rows)? = t["rows"] else { Issue.record("no ranges: \(v.stdout.prefix(600))"); return }
        // Most of each one-sided stretch is summarised; its edges, split off deeper, may be listed.
        let rangeMissing = ranges.reduce(0) { $0 + ($1["kind"]?.stringValue == "missing" ? $1["rows"]?.int64Value ?? 0 : 0) }
        let rangeExtra = ranges.reduce(0) { $0 + ($1["kind"]?.stringValue == "extra" ? $1["rows"]?.int64Value ?? 0 : 0) }
        #expect(rangeMissing >= 2000 && rangeExtra >= 1000, "\(ranges)")
        #expect(Int64(rows.count) == 4500 - rangeMissing - rangeExtra, "every difference either listed or in a range")
        #expect((t["rows_fetched"]?.int64Value ?? .max) < 1500, "a summarised range fetches no key")
        let text = try CDCRProcess.run(["verify"] + common)
        #expect(text.stdout.contains("rows from") && text.stdout.contains("only in the source"), "\(text.stdout)")
        // Listed key by key when asked to.
        let listed = try CDCRProcess.run(["verify", "--json", "--summarize-rows", "100000"] + common)
        #expect(try reportedDifferences(listed.stdout).count == 4500)

        let dry = try CDCRProcess.run(["repair"] + common)
        #expect(dry.stdout.contains("would insert 3000, would update 0, would delete 0, 1500 extra rows kept"), "\(dry.stdout)")
        let printed = try CDCRProcess.run(["repair", "--print", "--allow-delete"] + common)
        #expect(printed.stdout.components(separatedBy: "INSERT INTO").count - 1 == 3000)
        #expect(printed.stdout.contains("DELETE FROM \"public\".\"items\" WHERE (\"id\") >= ('"), "\(printed.stdout.suffix(400))")

        // Without --allow-delete: the missing range is copied, the extra one kept.
        let keep = try CDCRProcess.run(["repair", "--execute", "--json"] + common)
        #expect(keep.status == 2, "\(keep.stdout) \(keep.stderr)")
        let k = try #require(firstTable(try JSONParser.parse(keep.stdout)))
        #expect(k["inserted"]?.int64Value == 3000 && k["kept_extra"]?.int64Value == 1500, "\(keep.stdout)")
        #expect(try Expect.count(p.tgt, "SELECT count(*) FROM public.items WHERE id <= 5000") == 5000)
        #expect(try Expect.count(p.tgt, "SELECT count(*) FROM cdcr.repair_log WHERE action = 'insert'") == 3000)

        let full = try CDCRProcess.run(["repair", "--execute", "--allow-delete"] + common)
        #expect(full.status == 0, "\(full.stdout) \(full.stderr)")
        #expect(try CDCRProcess.run(["verify"] + common).status == 0)
        let runID = try #require(full.stdout.split(whereSeparator: { $0 == " " || $0 == "\n" }).first { $0.hasPrefix("repair-") }.map { String($0.dropLast()) })
        // The deleted range comes back from its before-images.
        let undo = try CDCRProcess.run(["repair-undo", runID, "--execute", "--json"] + p.common)
        #expect(undo.status == 0, "\(undo.stdout) \(undo.stderr)")
        #expect(try Expect.count(p.tgt, "SELECT count(*) FROM public.items WHERE id > 10000 AND v = 'x'") == 1500)
    }

    @Test("a stretch where nearly every row differs is reported as one range with its counts; repair fixes it, keys listed elsewhere too")
    func nearlyAllDiffer() throws {
        let p = try PlantedPair(try TestPostgres.sharedCluster())
        try p.both("CREATE TABLE public.items (id bigint PRIMARY KEY, v text)")
        try p.both("INSERT INTO public.items SELECT i, 'v' || i FROM generate_series(1, 20000) i; ANALYZE public.items")
        // A botched batch: rows 5,001–10,000 hold other values, one in a hundred of them gone, plus 3 scattered changes.
        try p.tgt.execute("""
            UPDATE public.items SET v = 'stale' WHERE id BETWEEN 5001 AND 10000;
            DELETE FROM public.items WHERE id BETWEEN 5001 AND 10000 AND id % 100 = 0;
            UPDATE public.items SET v = 'x' WHERE id IN (17, 12345, 19999); ANALYZE public.items
            """)
        let common = ["--table", "items"] + p.common
        let v = try CDCRProcess.run(["verify", "--json"] + common)
        #expect(v.status == 2, "\(v.stderr)")
        let t = try #require(firstTable(try JSONParser.parse(v.stdout)))
        #expect(t["missing"]?.int64Value == 50 && t["different"]?.int64Value == 4953 && t["extra"]?.int64Value == 0, "\(v.stdout.prefix(800))")
        guard case let .array(ranges)? = t["ranges"], case let .array(rows)? = t["rows"] else { Issue.record("no ranges: \(v.stdout.prefix(600))"); return }
        let summarised = ranges.filter { $0["kind"]?.stringValue == "different" }
        let inRanges = summarised.reduce(0) { $0 + ($1["rows"]?.int64Value ?? 0) }
        // The stretch's edges, split off deeper, may be listed; its bulk is one range, the 3 scattered rows are listed.
        #expect(inRanges >= 4000, "\(ranges)")
        #expect(Int64(rows.count) == 5003 - inRanges, "every difference either listed or in a range")
        #expect(rows.contains { $0["key"]?["id"]?.stringValue == "12345" })
        let text = try CDCRProcess.run(["verify"] + common)
        #expect(text.stdout.contains("nearly all differ"), "\(text.stdout)")

        let printed = try CDCRProcess.run(["repair", "--print"] + common)
        #expect(printed.stdout.components(separatedBy: "UPDATE \"public\".\"items\"").count - 1 == 4953, "\(printed.stdout.prefix(400))")
        #expect(printed.stdout.components(separatedBy: "INSERT INTO").count - 1 == 50)
        let fixed = try CDCRProcess.run(["repair", "--execute", "--json"] + common)
        #expect(fixed.status == 0, "\(fixed.stdout) \(fixed.stderr)")
        let f = try #require(firstTable(try JSONParser.parse(fixed.stdout)))
        #expect(f["inserted"]?.int64Value == 50 && f["updated"]?.int64Value == 4953, "\(fixed.stdout)")
        #expect(try CDCRProcess.run(["verify"] + common).status == 0)
    }

    @Test("a stretch nearly all missing where the target keeps a few equal rows is 'nearly all differ', not 'only in the source'; --print inserts only the missing rows")
    func nearlyAllMissingWithEqualRows() throws {
        let p = try PlantedPair(try TestPostgres.sharedCluster())
        try p.both("CREATE TABLE public.items (id bigint PRIMARY KEY, v text)")
        try p.both("INSERT INTO public.items SELECT i, 'v' || i FROM generate_series(1, 20000) i; ANALYZE public.items")
        // Of rows 5,001–10,000 the target kept every 20th (…010, …030), unchanged: 4,750 missing between
        // 250 equal rows, none of them in the 5-row leaves the 500-row root ranges end with.
        try p.tgt.execute("DELETE FROM public.items WHERE id BETWEEN 5001 AND 10000 AND id % 20 <> 10; ANALYZE public.items")
        // Leaves of up to 32 rows: a 16-row leaf holding one equal row is 94 % missing, "nearly all".
        let common = ["--table", "items", "--leaf-rows", "32"] + p.common
        let v = try CDCRProcess.run(["verify", "--json"] + common)
        #expect(v.status == 2, "\(v.stderr)")
        let t = try #require(firstTable(try JSONParser.parse(v.stdout)))
        #expect(t["missing"]?.int64Value == 4750 && t["different"]?.int64Value == 0 && t["extra"]?.int64Value == 0, "\(v.stdout.prefix(800))")
        guard case let .array(ranges)? = t["ranges"] else { Issue.record("no ranges: \(v.stdout.prefix(600))"); return }
        let summarised = ranges.reduce(0) { $0 + ($1["rows"]?.int64Value ?? 0) }
        #expect(summarised >= 4000, "\(ranges)")
        // The target holds rows throughout the stretch: no range may claim it holds none.
        #expect(ranges.allSatisfy { $0["kind"]?.stringValue == "different" && $0["missing"]?.int64Value == $0["rows"]?.int64Value }, "\(ranges)")
        let printed = try CDCRProcess.run(["repair", "--print", "--allow-delete"] + common)
        #expect(printed.stdout.components(separatedBy: "INSERT INTO").count - 1 == 4750, "\(printed.stdout.prefix(400))")
        #expect(!printed.stdout.contains("DELETE FROM"), "\(printed.stdout.suffix(400))")
        let fixed = try CDCRProcess.run(["repair", "--execute", "--allow-delete"] + common)
        #expect(fixed.status == 0, "\(fixed.stdout) \(fixed.stderr)")
        #expect(try CDCRProcess.run(["verify"] + common).status == 0)
    }

    @Test("the spill: differences beyond one run go to disk as sorted runs and come back merged in key order")
    func spillOrder() throws {
        let spill = DifferenceSpill(keyCount: 2, runSize: 7)
        var expected: [ListedDifference] = []
        var rng = SystemRandomNumberGenerator()
        for i in 0..<200 {
            let key = [String(Int.random(in: 0..<50, using: &rng)), "k\t\(i)\n\\x"]
            let d: RowDifference = [.missing, .extra, .different(columns: ["a", "b\tc"])][i % 3]
            try spill.append(key, d)
            expected.append((key, d))
        }
        try spill.finish()
        var read: [ListedDifference] = []
        try spill.forEach { read.append($0) }
        let sorted = expected.sorted { DifferenceSpill.precedes($0, $1) }
        #expect(read.map(\.key) == sorted.map(\.key))
        #expect(read.map(\.difference) == sorted.map(\.difference))
        #expect(spill.missing == 67 && spill.extra == 67 && spill.different == 66)
        #expect(spill.prefix(5).map { $0.key } == sorted.prefix(5).map { $0.key })
        let onlyMissing = try spill.rewritten(batch: 9) { $0.filter { if case .missing = $0.difference { true } else { false } } }
        #expect(onlyMissing.count == 67 && onlyMissing.missing == 67)
    }

    @Test("peak memory stays flat as listed differences grow: 60,000 differences through the spill")
    func manyDifferences() throws {
        let p = try PlantedPair(try TestPostgres.sharedCluster())
        try p.both("CREATE TABLE public.items (id bigint PRIMARY KEY, v text)")
        try p.src.execute("INSERT INTO public.items SELECT i, 'v' || i FROM generate_series(1, 120000) i; ANALYZE public.items")
        try p.tgt.execute("INSERT INTO public.items SELECT i, CASE WHEN i % 2 = 0 THEN 'changed' ELSE 'v' || i END FROM generate_series(1, 120000) i; ANALYZE public.items")
        let r = try CDCRProcess.run(["verify", "--json", "--table", "items"] + p.common)
        #expect(r.status == 2)
        let t = try #require(firstTable(try JSONParser.parse(r.stdout)))
        #expect(t["different"]?.int64Value == 60000 && t["unlisted"]?.int64Value == 0)
        guard case let .array(rows)? = t["rows"] else { Issue.record("no rows"); return }
        #expect(rows.count == 60000)
        let ids = rows.compactMap { $0["key"]?["id"]?.stringValue.flatMap { Int($0) } }
        #expect(ids == Array(stride(from: 2, through: 120000, by: 2)), "read back in key order from the merged runs")
    }
}
