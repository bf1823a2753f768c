import ArgumentParser
import CDCCore
import CDCPostgres
import CDCR
import Foundation

/// The key-shape part of `cdcr bench verify`: one pair of N-row tables per key type (bigint, 32-char
/// hex text, uuid, composite (bigint, int)) with 20 missing, 1 extra and 100 changed rows; per type
/// cdcr verify's time, reladiff's time (same tables, same columns, measured in the same run) and the
/// rows verify fetched; then a large source against an empty target, for its counts and peak RSS.
struct VerifyKeyBench {
    /// A key shape: its columns and how row `i` of the fill computes them.
    struct KeyType {
        let name: String
        let columns: [(name: String, type: String)]
        /// SQL expressions over the integer `i`, one per key column.
        let exprs: [String]

        var table: String { "public.k_\(name)" }
        var keyList: String { columns.map(\.name).joined(separator: ", ") }
        var exprList: String { exprs.joined(separator: ", ") }
    }

    static let types = [
        KeyType(name: "bigint", columns: [("id", "bigint")], exprs: ["i::bigint"]),
        KeyType(name: "text", columns: [("k", "text")], exprs: ["md5(i::text)"]),
        KeyType(name: "uuid", columns: [("u", "uuid")], exprs: ["md5(i::text || 'u')::uuid"]),
        KeyType(name: "composite", columns: [("a", "bigint"), ("b", "int")], exprs: ["(i / 8)::bigint", "(i % 8)::int"]),
    ]

    static let payload = ["status", "amount", "note", "attrs", "created_at"]

    let src: PGConnection, tgt: PGConnection
    let urls: [String]
    let rows: Int
    let runs: Int
    let reladiff: String?

    /// Creates and fills `type`'s table on both sides and plants the differences in the target;
    /// returns the expected `kind|key` set.
    func build(_ type: KeyType) throws -> Set<String> {
        let ddl = "CREATE TABLE \(type.table) (" + type.columns.map { "\($0.name) \($0.type)" }.joined(separator: ", ")
            + ", status text, amount numeric(12,2), note text, attrs jsonb, created_at timestamptz)"
        for c in [src, tgt] {
            try c.execute(ddl)
            try c.query("""
                INSERT INTO \(type.table) SELECT \(type.exprList), (ARRAY['new','paid','shipped','cancelled'])[1 + i % 4], (i % 100000) / 100.0,
                    'note ' || i, jsonb_build_object('k', i % 10, 'tag', 'x' || i % 7), '2026-01-01'::timestamptz + i * interval '1 second'
                FROM generate_series(1, $1::int) i
                """, [String(rows)])
            try c.execute("ALTER TABLE \(type.table) ADD PRIMARY KEY (\(type.keyList))")
        }
        let missing = (0..<20).map { $0 * (rows / 20) + 7 }
        let changed = (0..<100).map { $0 * (rows / 100) + 13 }
        func keys(_ ids: [Int]) -> String { "(SELECT \(type.exprList) FROM unnest('{\(ids.map(String.init).joined(separator: ","))}'::int[]) i)" }
        try tgt.execute("DELETE FROM \(type.table) WHERE (\(type.keyList)) IN \(keys(missing))")
        try tgt.execute("INSERT INTO \(type.table) (\(type.keyList), status) SELECT \(type.exprList), 'extra' FROM (SELECT \(rows + 1) AS i) s")
        let changes = ["status = 'changed'", "amount = amount + 0.01", "note = NULL", "attrs = '{\"k\": -1}'", "created_at = created_at + interval '1 ms'"]
        for (n, change) in changes.enumerated() {
            let ids = changed.enumerated().filter { $0.offset % 5 == n }.map(\.element)
            try tgt.execute("UPDATE \(type.table) SET \(change) WHERE (\(type.keyList)) IN \(keys(ids))")
        }
        for c in [src, tgt] { try c.execute("VACUUM ANALYZE \(type.table)") }
        var expected = Set<String>()
        func texts(_ ids: [Int]) throws -> [String] {
            try src.query("SELECT concat_ws(',', \(type.exprList)) FROM unnest($1::int[]) i ORDER BY 1", ["{" + ids.map(String.init).joined(separator: ",") + "}"]).rows.map { $0[0] ?? "" }
        }
        for k in try texts(missing) { expected.insert("missing|\(k)") }
        for k in try texts([rows + 1]) { expected.insert("extra|\(k)") }
        for (n, _) in changes.enumerated() {
            let ids = changed.enumerated().filter { $0.offset % 5 == n }.map(\.element)
            for k in try texts(ids) { expected.insert("different|\(k)|\(Self.payload[n])") }
        }
        return expected
    }

    struct Figures {
        var cdcr: [Double] = []
        var reladiff: [Double] = []
        var rowsFetched = 0
        var descent = "?"
        var floor: [Double] = []
        var exact = true
    }

    func measure(_ type: KeyType, expected: Set<String>) throws -> Figures {
        var f = Figures()
        let name = String(type.table.dropFirst("public.".count))
        for i in 0...runs {
            let start = ContinuousClock.now
            let (status, out, _, _) = try ApplyBench.runChild([BenchSetup.binary, "verify", "--json", "--table", name, "--source", urls[0], "--target", urls[1]])
            let took = (ContinuousClock.now - start).seconds
            let (found, fetched, descent) = try Self.differences(out)
            if status != 2 || found != expected {
                f.exact = false
                print("  \(type.name) run \(i): exit \(status), \(found.count) reported, \(expected.subtracting(found).count) missed, \(found.subtracting(expected).count) false")
            }
            f.rowsFetched = fetched
            f.descent = descent
            if i > 0 || runs == 0 { f.cdcr.append(took) }
        }
        for _ in 0..<max(1, runs) { f.floor.append(try hashFloor(type)) }
        if let reladiff {
            let args = [reladiff, urls[0], type.table, urls[1], type.table] + type.columns.flatMap { ["-k", $0.name] } + Self.payload.flatMap { ["-c", $0] }
                // reladiff 0.6 fails sorting its output when a differing row holds NULLs (the extra row, `note = NULL`).
                + ["--skip-sort-results"]
            let start = ContinuousClock.now
            let (status, out, _, _) = try ApplyBench.runChild(args)
            f.reladiff.append((ContinuousClock.now - start).seconds)
            // Each missing row is one "-" line, each extra one "+" line, each changed row one of each.
            let lines = out.split(separator: "\n").filter { $0.hasPrefix("- ") || $0.hasPrefix("+ ") }.count
            if status != 0 || lines != 221 { print("  reladiff on \(type.name): exit \(status), \(lines) difference lines (221 expected)") }
        }
        return f
    }

    /// The hashing floor: both sides' row count and hash sum of the whole table, concurrently, on
    /// verify's own expressions — the work any exact comparison of every row does here, with no descent.
    func hashFloor(_ type: KeyType) throws -> Double {
        let name = TableName(parsing: type.table)
        let pair = try TablePair.resolve(source: name, target: name, only: nil, sourceConn: src, targetConn: tgt)
        let s = VerifySide(.source, conn: src, pair: pair, predicate: nil, floatTolerance: nil)
        let t = VerifySide(.target, conn: tgt, pair: pair, predicate: nil, floatTolerance: nil)
        let start = ContinuousClock.now
        _ = try concurrently({ try s.checksums([.all]) }, { try t.checksums([.all]) })
        return (ContinuousClock.now - start).seconds
    }

    /// `kind|key[|columns]` of a verify --json report's first table, its rows_fetched and descent.
    static func differences(_ json: String) throws -> (Set<String>, Int, String) {
        var out = Set<String>()
        guard case let .array(tables)? = try JSONParser.parse(json)["tables"], let t = tables.first else { return (out, 0, "?") }
        if case let .array(rows)? = t["rows"] {
            for r in rows {
                let key = (r["key"]?.objectMembers ?? []).map { $0.1.stringValue ?? "" }.joined(separator: ",")
                var item = "\(r["kind"]?.stringValue ?? "?")|\(key)"
                if case let .array(cols)? = r["columns"] { item += "|" + cols.compactMap(\.stringValue).joined(separator: ",") }
                out.insert(item)
            }
        }
        return (out, Int(t["rows_fetched"]?.int64Value ?? -1), t["descent"]?.stringValue ?? "?")
    }

    /// Runs every key type; false when a result was not exact.
    func runAll() throws -> Bool {
        var exact = true
        var table: [(String, Figures)] = []
        for type in Self.types {
            print("building two \(rows)-row tables keyed by \(type.name) …")
            let expected = try build(type)
            let f = try measure(type, expected: expected)
            exact = exact && f.exact
            table.append((type.name, f))
        }
        func median(_ xs: [Double]) -> Double { xs.isEmpty ? .nan : xs.sorted()[xs.count / 2] }
        let bigint = median(table[0].1.cdcr)
        print("key type    cdcr verify (median, range)   reladiff   speed-up   rows fetched   / bigint time   hash floor   reladiff / floor   descent")
        for (name, f) in table {
            let c = median(f.cdcr), r = median(f.reladiff)
            print(name.padding(toLength: 10, withPad: " ", startingAt: 0)
                + String(format: "  %6.3f s (%.3f–%.3f)        %7.2f s   %6.1f×    %8d       %.2f          %6.3f s     %6.1f×          ", c, f.cdcr.min() ?? .nan,
                         f.cdcr.max() ?? .nan, r, r / c, f.rowsFetched, c / bigint, median(f.floor), r / median(f.floor)) + f.descent)
        }
        print("hash floor: both sides' count and row-hash sum of the whole table at once (no descent): the least any exact full compare costs here")
        print("targets: ≥ 25× reladiff on bigint, ≥ 15× on the others; no key type above 1.5 × the bigint time; rows fetched ≤ 10 × 121 + overhead")
        print("results exact (20 missing, 1 extra, 100 different) on every key type: \(exact ? "yes" : "NO")")
        return exact
    }

    /// A `rows`-row source against an empty target: the counts and the peak RSS of verify.
    func emptyTarget(rows big: Int) throws -> Bool {
        print("building a \(big)-row source table and an empty target …")
        let ddl = "CREATE TABLE public.big (id bigint, status text, amount numeric(12,2), created_at timestamptz)"
        for c in [src, tgt] { try c.execute(ddl) }
        try src.query("""
            INSERT INTO public.big SELECT i, (ARRAY['new','paid','shipped','cancelled'])[1 + i % 4], (i % 100000) / 100.0,
                '2026-01-01'::timestamptz + i * interval '1 second' FROM generate_series(1, $1::int) i
            """, [String(big)])
        for c in [src, tgt] {
            try c.execute("ALTER TABLE public.big ADD PRIMARY KEY (id)")
            try c.execute("VACUUM ANALYZE public.big")
        }
        let start = ContinuousClock.now
        let (status, out, rss, _) = try ApplyBench.runChild([BenchSetup.binary, "verify", "--json", "--table", "big", "--source", urls[0], "--target", urls[1]])
        let took = (ContinuousClock.now - start).seconds
        guard case let .array(tables)? = try JSONParser.parse(out)["tables"], let t = tables.first else {
            print("verify of the empty target: exit \(status), no report")
            return false
        }
        let missing = t["missing"]?.int64Value ?? -1
        var ranges = 0
        if case let .array(rs)? = t["ranges"] { ranges = rs.count }
        print(String(format: "%d-row source vs empty target: %.2f s, %lld missing reported in %d range(s), %d rows fetched; peak RSS %d MB   target ≤ 300 MB",
                     big, took, missing, ranges, Int(t["rows_fetched"]?.int64Value ?? -1), rss / 1024))
        return status == 2 && missing == Int64(big)
    }
}
