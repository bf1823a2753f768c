import CDCCore
import CDCPostgres
import CDCR
import Foundation
import Testing

/// A source and a target with planted faults for `cdcr check`.
struct CheckPair {
    let source: String
    let target: String
    let src: PGConnection
    let tgt: PGConnection

    init(_ pg: TestPostgres) throws {
        source = try pg.createDatabase("csrc", fixtureSchema: false)
        target = try pg.createDatabase("ctgt", fixtureSchema: false)
        src = try PGConnection.connect(source)
        tgt = try PGConnection.connect(target)
    }

    var common: [String] { ["--source", source, "--target", target] }
    static let tables = ["--table", "customers", "--table", "orders", "--table", "order_items"]

    /// orders: 300 rows over 10 days × 3 statuses (30 groups of 10). In the target: the group
    /// (day 3, new) is gone (ids ≡ 3 mod 30), order 10 (day 0, paid) is 0.02 higher, an extra
    /// 'refunded' order; customer 7 is gone (its 15 orders are orphans the migration made); one
    /// order item points at no order on both sides (inherited). Schema: customer_id int → bigint and
    /// code varchar(20) → text (compatible), qty int → text, price numeric(12,2) → numeric(10,0), note dropped.
    func plant() throws {
        try src.execute("""
            CREATE TABLE customers (id int PRIMARY KEY, name text);
            CREATE TABLE orders (id bigint PRIMARY KEY, customer_id int REFERENCES customers, status text NOT NULL, amount numeric(12,2),
                created_at timestamptz, code varchar(20), qty int, price numeric(12,2), note text, updated_at timestamptz);
            CREATE TABLE order_items (id bigint PRIMARY KEY, order_id bigint, sku text);
            """)
        try tgt.execute("""
            CREATE TABLE customers (id int PRIMARY KEY, name text);
            CREATE TABLE orders (id bigint PRIMARY KEY, customer_id bigint, status text NOT NULL, amount numeric(12,2),
                created_at timestamptz, code text, qty text, price numeric(10,0), updated_at timestamptz);
            CREATE TABLE order_items (id bigint PRIMARY KEY, order_id bigint, sku text);
            """)
        for c in [src, tgt] {
            try c.execute("""
                INSERT INTO customers SELECT i, 'c' || i FROM generate_series(1, 20) i;
                INSERT INTO order_items SELECT i, 2 * i, 's' || i FROM generate_series(1, 100) i;
                INSERT INTO order_items VALUES (101, 9999, 'orphan in the source');
                """)
        }
        try src.execute("""
            INSERT INTO orders SELECT i, 1 + i % 20, (ARRAY['new','paid','shipped'])[1 + i % 3], i * 1.25,
                '2026-01-01 00:00:00+00'::timestamptz + (i % 10) * interval '1 day' + i * interval '1 minute', 'c' || i, i, i * 1.5, 'n' || i,
                '2026-02-01 12:00:00+00'::timestamptz - i * interval '1 second'
            FROM generate_series(1, 300) i
            """)
        try tgt.execute("""
            INSERT INTO orders SELECT i, 1 + i % 20, (ARRAY['new','paid','shipped'])[1 + i % 3], i * 1.25,
                '2026-01-01 00:00:00+00'::timestamptz + (i % 10) * interval '1 day' + i * interval '1 minute', 'c' || i, i::text, round(i * 1.5),
                '2026-02-01 11:00:00+00'::timestamptz - i * interval '1 second'
            FROM generate_series(1, 300) i WHERE i % 30 <> 3;
            UPDATE orders SET amount = amount + 0.02 WHERE id = 10;
            INSERT INTO orders (id, customer_id, status, amount, created_at) VALUES (1000, 1, 'refunded', 5, '2026-01-01 10:00:00+00');
            DELETE FROM customers WHERE id = 7;
            """)
    }

    /// Writes `json` to a temporary rules file and returns its path.
    static func rules(_ json: String) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("cdcr-rules-\(UUID().uuidString).json").path
        try json.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    func storedRuns() throws -> Int {
        guard try tgt.query("SELECT to_regclass('cdcr.check_runs') IS NOT NULL").scalar == "t" else { return 0 }
        return try Expect.count(tgt, "SELECT count(*) FROM cdcr.check_runs")
    }
}

/// The checks of a `cdcr check --json` report by name.
func checksByName(_ stdout: String) throws -> [String: JSONValue] {
    var out: [String: JSONValue] = [:]
    if case let .array(items)? = try JSONParser.parse(stdout)["checks"] {
        for c in items { out[c["name"]?.stringValue ?? "?"] = c }
    }
    return out
}

func number(_ check: JSONValue?, _ key: String) -> Int64? { check?["numbers"]?[key]?.int64Value }

func examples(_ check: JSONValue?) -> [String] {
    if case let .array(items)? = check?["examples"] { return items.compactMap(\.stringValue) }
    return []
}

@Suite("reconciler: cdcr check", .serialized)
struct CheckTests {
    static let aggregates = """
        {"checks": [
          {"name": "by_day_status", "kind": "aggregate", "table": "orders", "group_by": ["date_trunc('day', created_at)", "status"],
           "measures": ["count(*)", {"measure": "sum(amount)", "absolute": 0.01}, "max(created_at)"]},
          {"name": "by_status_tight", "kind": "aggregate", "table": "orders", "filter": "id % 30 <> 3 AND id < 1000", "group_by": ["status"],
           "measures": ["count(*)", {"measure": "sum(amount)", "absolute": 0.01}, "count(distinct customer_id)"]},
          {"name": "by_status_loose", "kind": "aggregate", "table": "orders", "filter": "id % 30 <> 3 AND id < 1000", "group_by": ["status"],
           "measures": ["count(*)", {"measure": "sum(amount)", "absolute": 0.05}]},
          {"name": "items_have_orders", "kind": "references", "child": "order_items", "columns": ["order_id"], "parent": "orders", "parent_columns": ["id"]},
          {"name": "counts_by_status", "kind": "query", "source": "SELECT status, count(*) FROM orders WHERE id % 30 <> 3 GROUP BY status",
           "target": "SELECT status, count(*) FROM orders WHERE status <> 'refunded' GROUP BY status", "key_columns": 1},
          {"name": "amount_by_status", "kind": "query", "source": "SELECT status, sum(amount) FROM orders WHERE id % 30 <> 3 GROUP BY 1",
           "target": "SELECT status, sum(amount) FROM orders GROUP BY 1", "tolerance": {"absolute": 0.01}},
          {"name": "split_mix", "kind": "aggregate", "table": "orders", "filter": "id <> 20", "group_by": ["status", "CASE WHEN id % 7 = 0 THEN NULL ELSE id % 2 END"],
           "measures": ["count(*)", "sum(amount)", "min(amount)", "max(created_at)", "min(code)", "sum(customer_id)"]},
          {"name": "fresh_2h", "kind": "freshness", "table": "orders", "column": "updated_at", "max_lag_seconds": 7200},
          {"name": "fresh_10m", "kind": "freshness", "table": "orders", "column": "updated_at", "max_lag_seconds": 600}
        ]}
        """

    @Test("planted faults: a 0.02 total, a missing and an extra group, orphans, a dropped column, type changes; compatible changes not reported; stored")
    func plantedFaults() throws {
        let p = try CheckPair(try TestPostgres.sharedCluster())
        try p.plant()
        let rules = try CheckPair.rules(Self.aggregates)
        let r = try CDCRProcess.run(["check", "--json", "--rules", rules] + CheckPair.tables + p.common)
        #expect(r.status == 2, "some checks fail → exit 2: \(r.stderr)")
        let c = try checksByName(r.stdout)

        let day = c["by_day_status"]
        #expect(day?["status"]?.stringValue == "FAIL")
        #expect(number(day, "source_groups") == 30 && number(day, "target_groups") == 30)
        #expect(number(day, "missing_groups") == 1 && number(day, "extra_groups") == 1 && number(day, "out_of_tolerance") == 1)
        #expect(examples(day).contains { $0.hasPrefix("- missing group") && $0.contains("2026-01-04 00:00:00") && $0.contains("status = new") })
        #expect(examples(day).contains { $0.hasPrefix("+ extra group") && $0.contains("refunded") })
        #expect(examples(day).contains { $0.contains("sum(amount)") && $0.contains("difference 0.02") })

        #expect(c["by_status_tight"]?["status"]?.stringValue == "FAIL")
        #expect(number(c["by_status_tight"], "out_of_tolerance") == 1 && number(c["by_status_tight"], "missing_groups") == 0)
        #expect(c["by_status_loose"]?["status"]?.stringValue == "PASS", "0.02 is within 0.05")

        let schema = c["schema"]
        #expect(schema?["status"]?.stringValue == "FAIL")
        #expect(number(schema, "missing_columns") == 1 && number(schema, "type_differences") == 2 && number(schema, "compatible_type_changes") == 2)
        #expect(number(schema, "missing_tables") == 0 && number(schema, "extra_columns") == 0 && number(schema, "nullability_differences") == 0)
        let schemaLines = examples(schema).joined(separator: "\n")
        #expect(schemaLines.contains("missing column public.orders.note"))
        #expect(schemaLines.contains("public.orders.qty: integer in the source, text in the target"))
        #expect(schemaLines.contains("public.orders.price: numeric(12,2) in the source, numeric(10,0) in the target"))
        #expect(!schemaLines.contains("customer_id") && !schemaLines.contains(".code"), "compatible changes are not reported: \(schemaLines)")

        // The source's foreign key, checked in a target that lacks it: customer 7's orders.
        let fk = c["fk:public.orders:orders_customer_id_fkey"]
        #expect(fk?["status"]?.stringValue == "FAIL")
        #expect(number(fk, "target_orphan_rows") == 15 && number(fk, "created_orphan_values") == 1 && number(fk, "source_orphan_rows") == 0)
        #expect(examples(fk).first?.contains("customer_id=7") == true)
        let items = c["items_have_orders"]
        #expect(items?["status"]?.stringValue == "PASS", "an orphan the source has too is inherited")
        #expect(number(items, "target_orphan_rows") == 1 && number(items, "inherited_orphan_values") == 1 && number(items, "source_orphan_rows") == 1)

        #expect(c["counts_by_status"]?["status"]?.stringValue == "PASS")
        #expect(c["amount_by_status"]?["status"]?.stringValue == "FAIL")
        #expect(number(c["amount_by_status"], "extra_rows") == 1 && number(c["amount_by_status"], "out_of_tolerance") == 1)
        #expect(c["fresh_2h"]?["status"]?.stringValue == "PASS" && c["fresh_10m"]?["status"]?.stringValue == "FAIL")
        #expect(c["fresh_10m"]?["numbers"]?["lag_seconds"] == .number("3600.0"))

        // Stored: the run and one result per check, with its numbers.
        let runID = try #require(try JSONParser.parse(r.stdout)["run_id"]?.stringValue)
        let run = try p.tgt.query("SELECT status, passed, failed, errors FROM cdcr.check_runs WHERE run_id = $1", [runID])
        #expect(run.rows.first == ["fail", "4", String(c.count - 4), "0"])
        #expect(try Expect.count(p.tgt, "SELECT count(*) FROM cdcr.check_results WHERE run_id = $1", [runID]) == c.count)
        #expect(try p.tgt.query("SELECT numbers->>'missing_groups', status FROM cdcr.check_results WHERE run_id = $1 AND check_name = 'by_day_status'", [runID]).rows.first == ["1", "fail"])

        // Each side's statement split into block ranges, aggregated apart and merged, finds the same.
        #expect(number(day, "source_parts") == 1 && number(c["split_mix"], "target_parts") == 1, "small tables: one piece")
        #expect(c["split_mix"]?["status"]?.stringValue == "FAIL" && number(c["split_mix"], "extra_groups") == 1 && number(c["split_mix"], "missing_groups") == 0)
        let split = try CDCRProcess.run(["check", "--json", "--rules", rules, "--blocks-per-part", "1"] + CheckPair.tables + p.common)
        let cs = try checksByName(split.stdout)
        #expect(number(cs["by_day_status"], "source_parts") == 3 && number(cs["split_mix"], "target_parts") == 3, "\(split.stdout.prefix(400))")
        #expect(number(cs["by_status_tight"], "source_parts") == 1, "count(distinct …) cannot be merged: never split")
        for (name, check) in c {
            var a = check["numbers"]?.objectMembers ?? [], b = cs[name]?["numbers"]?.objectMembers ?? []
            a.removeAll { $0.0.hasSuffix("_parts") }
            b.removeAll { $0.0.hasSuffix("_parts") }
            #expect(JSONValue.object(a) == JSONValue.object(b), "\(name): split \(b) vs whole \(a)")
            #expect(examples(check) == examples(cs[name]), "\(name)")
        }

        // Human output and --report.
        let md = FileManager.default.temporaryDirectory.appendingPathComponent("cdcr-check-\(getpid()).md").path
        let human = try CDCRProcess.run(["check", "--rules", rules, "--only", "by_status_tight", "--only", "by_status_loose", "--report", md] + CheckPair.tables + p.common)
        #expect(human.status == 2)
        #expect(human.stdout.contains("FAIL  by_status_tight") && human.stdout.contains("PASS  by_status_loose"))
        #expect(human.stdout.contains("total: 2 checks, 1 passed, 1 failed, 0 errors"))
        #expect(try String(contentsOfFile: md, encoding: .utf8).contains("| FAIL | by_status_tight | aggregate |"))
        #expect(try p.storedRuns() == 3)
    }

    @Test("exit codes: 0 when all pass, 1 when a check cannot run (a table missing in the target)")
    func exitCodes() throws {
        let p = try CheckPair(try TestPostgres.sharedCluster())
        try p.plant()
        try p.src.execute("CREATE TABLE only_in_source (id int PRIMARY KEY, v int)")
        let rules = try CheckPair.rules("""
            {"defaults": {"references": false},
             "checks": [{"name": "loose", "kind": "aggregate", "table": "orders", "filter": "id % 30 <> 3 AND id < 1000", "group_by": ["status"],
                         "measures": ["count(*)", {"measure": "sum(amount)", "absolute": 0.05}]},
                        {"name": "gone", "kind": "aggregate", "table": "only_in_source", "measures": ["sum(v)"]}]}
            """)
        let pass = try CDCRProcess.run(["check", "--rules", rules, "--only", "loose"] + p.common)
        #expect(pass.status == 0, "\(pass.stdout) \(pass.stderr)")
        #expect(pass.stdout.contains("PASS  loose"))
        let error = try CDCRProcess.run(["check", "--json", "--rules", rules] + p.common)
        #expect(error.status == 1, "\(error.stdout) \(error.stderr)")
        let gone = try checksByName(error.stdout)["gone"]
        #expect(gone?["status"]?.stringValue == "ERROR")
        #expect(gone?["summary"]?.stringValue?.contains("does not exist in the target") == true)
        #expect(try p.tgt.query("SELECT status, errors FROM cdcr.check_runs ORDER BY started_at DESC LIMIT 1").rows.first == ["error", "1"])
    }

    @Test("schema: missing and extra tables, extra columns, nullability, keys, unique constraints; freshness from cdcr.row_versions")
    func schemaAndRowVersions() throws {
        let p = try CheckPair(try TestPostgres.sharedCluster())
        try p.plant()
        try p.src.execute("CREATE TABLE gone (id int PRIMARY KEY); CREATE TABLE keyed (a int NOT NULL, b int, c text UNIQUE, PRIMARY KEY (a))")
        try p.tgt.execute("CREATE TABLE stray (id int); CREATE TABLE keyed (a int, b int NOT NULL, c text, x int UNIQUE, PRIMARY KEY (b))")
        let r = try CDCRProcess.run(["check", "--json", "--only", "schema", "--table", "gone", "--table", "keyed"] + p.common)
        #expect(r.status == 2, "\(r.stderr)")
        let schema = try checksByName(r.stdout)["schema"]
        #expect(number(schema, "missing_tables") == 1 && (number(schema, "extra_tables") ?? 0) >= 1 && number(schema, "extra_columns") == 1)
        #expect(number(schema, "nullability_differences") == 2 && number(schema, "primary_key_differences") == 1 && number(schema, "unique_differences") == 2)
        let lines = examples(schema).joined(separator: "\n")
        #expect(lines.contains("missing table public.gone") && lines.contains("extra table public.stray"))
        #expect(lines.contains("primary key of public.keyed: (a) in the source, (b) in the target"))
        #expect(lines.contains("unique (c) of public.keyed missing in the target") && lines.contains("unique (x) only in the target public.keyed"))

        // Freshness from the versions cdcr applied: none yet for the table, then one just now.
        let rules = try CheckPair.rules("""
            {"checks": [{"name": "applied", "kind": "freshness", "table": "orders", "column": "updated_at", "target": "row_versions", "max_lag_seconds": 60}]}
            """)
        let none = try CDCRProcess.run(["check", "--json", "--rules", rules, "--only", "applied"] + p.common)
        #expect(none.status == 2, "\(none.stderr)")
        #expect(try checksByName(none.stdout)["applied"]?["summary"]?.stringValue?.contains("no value in the target") == true)
        try p.tgt.execute("INSERT INTO cdcr.row_versions (table_name, row_key, version, deleted, updated_at) VALUES ('public.orders', '1', 1, false, '2026-02-01 11:59:30+00')")
        let fresh = try CDCRProcess.run(["check", "--json", "--rules", rules, "--only", "applied"] + p.common)
        #expect(fresh.status == 0, "\(fresh.stdout)")
        #expect(try checksByName(fresh.stdout)["applied"]?["numbers"]?["lag_seconds"] == .number("29.0"))
    }

    @Test("query checks run read-only and under the statement timeout: a write or a slow query is an ERROR, nothing changes")
    func readOnlyAndTimeout() throws {
        let p = try CheckPair(try TestPostgres.sharedCluster())
        try p.plant()
        for conn in [p.src, p.tgt] { try conn.execute("CREATE SEQUENCE s") }
        let rules = try CheckPair.rules("""
            {"statement_timeout_ms": 200, "defaults": {"schema": false, "references": false}, "checks": [
              {"name": "writes", "kind": "query", "source": "SELECT 1 AS k, nextval('s')", "target": "SELECT 1 AS k, nextval('s')"},
              {"name": "slow", "kind": "query", "source": "SELECT 1 AS k, (SELECT 1 FROM pg_sleep(2)) AS v", "target": "SELECT 1 AS k, 1"}]}
            """)
        let r = try CDCRProcess.run(["check", "--json", "--rules", rules] + p.common)
        #expect(r.status == 1, "\(r.stdout) \(r.stderr)")
        let c = try checksByName(r.stdout)
        #expect(c["writes"]?["status"]?.stringValue == "ERROR" && c["writes"]?["summary"]?.stringValue?.contains("read-only transaction") == true)
        #expect(c["slow"]?["status"]?.stringValue == "ERROR" && c["slow"]?["summary"]?.stringValue?.contains("statement timeout") == true)
        for conn in [p.src, p.tgt] {
            #expect(try conn.query("SELECT is_called FROM s").scalar == "f", "the sequence never moved")
        }
    }

    @Test("hostile or wrong rules are refused with exit 64, naming the member, before anything runs or is stored")
    func hostileRules() throws {
        let p = try CheckPair(try TestPostgres.sharedCluster())
        try p.plant()
        // One good run first, so "nothing stored" is a count that could have grown.
        let good = try CDCRProcess.run(["check", "--only", "schema"] + CheckPair.tables + p.common)
        #expect(good.status == 2, "\(good.stderr)")
        #expect(try p.storedRuns() == 1)
        func agg(_ fields: String) -> String { "{\"checks\": [{\"name\": \"a\", \"kind\": \"aggregate\", \(fields)}]}" }
        let cases: [(String, String)] = [
            (agg("\"table\": \"orders; DROP TABLE customers\", \"measures\": [\"count(*)\"]"), "checks[0] \"a\".table"),
            (agg("\"table\": \"\\\"orders\\\"\\\"; DROP TABLE customers; --\\\"\", \"measures\": [\"count(*)\"]"), "does not exist in the source"),
            (agg("\"table\": \"orders\", \"group_by\": [\"status); DROP TABLE customers; --\"], \"measures\": [\"count(*)\"]"), "checks[0] \"a\".group_by[0]"),
            (agg("\"table\": \"orders\", \"group_by\": [\"(SELECT pg_sleep(5))\"], \"measures\": [\"count(*)\"]"), "a subquery"),
            (agg("\"table\": \"orders\", \"filter\": \"true) OR (1=1\", \"measures\": [\"count(*)\"]"), "checks[0] \"a\".filter"),
            (agg("\"table\": \"orders\", \"measures\": [\"sum(amount); DELETE FROM customers\"]"), "checks[0] \"a\".measures[0]"),
            (agg("\"table\": \"orders\", \"measures\": [\"sum(\\\"amount\\\"\\\"); DELETE FROM customers; --\\\")\"]"), "does not exist in the source"),
            (agg("\"table\": \"orders\", \"group_by\": [\"no_such_column\"], \"measures\": [\"count(*)\"]"), "not valid on the source"),
            (agg("\"table\": \"orders\", \"measures\": [\"count(*)\"], \"tolerence\": 1"), "checks[0] \"a\".tolerence"),
            (agg("\"table\": \"orders\", \"measures\": [{\"measure\": \"sum(amount)\", \"absolute\": -1}]"), "absolute"),
            ("{\"checks\": [{\"name\": \"x\", \"kind\": \"schema\"}, {\"name\": \"x\", \"kind\": \"schema\"}]}", "duplicate check name \"x\""),
            ("{\"checks\": [{\"name\": \"x\", \"name\": \"y\", \"kind\": \"schema\"}]}", "duplicate member name"),
            ("{\"chekcs\": []}", "chekcs"),
            ("{\"checks\": [{\"name\": \"q\", \"kind\": \"query\", \"source\": \"SELECT 1, 2; DELETE FROM customers\", \"target\": \"SELECT 1, 2\"}]}", "checks[0] \"q\".source"),
            ("{\"checks\": [{\"name\": \"q\", \"kind\": \"query\", \"source\": \"SELECT 1, 2\", \"target\": \"DELETE FROM customers RETURNING id, 1\"}]}", "checks[0] \"q\".target"),
            ("{\"checks\": [{\"name\": \"q\", \"kind\": \"query\", \"source\": \"WITH d AS (DELETE FROM customers RETURNING id) SELECT id, 1 FROM d\", \"target\": \"SELECT 1, 2\"}]}", "not a valid query on the source"),
            ("{\"checks\": [{\"name\": \"f\", \"kind\": \"freshness\", \"table\": \"orders\", \"column\": \"status\", \"max_lag_seconds\": 5}]}", "not a date or timestamp"),
            ("{\"checks\": [{\"name\": \"r\", \"kind\": \"references\", \"child\": \"orders\", \"columns\": [\"customer_id\", \"id\"], \"parent\": \"customers\", \"parent_columns\": [\"id\"]}]}", "as many columns"),
        ]
        for (json, named) in cases {
            let r = try CDCRProcess.run(["check", "--rules", try CheckPair.rules(json)] + CheckPair.tables + p.common)
            #expect(r.status == 64, "\(json) → \(r.status): \(r.stdout) \(r.stderr)")
            #expect(r.stderr.contains(named), "\(json): the message names \(named): \(r.stderr)")
        }
        let unknown = try CDCRProcess.run(["check", "--only", "nope"] + CheckPair.tables + p.common)
        #expect(unknown.status == 64 && unknown.stderr.contains("no check named \"nope\""))
        #expect(try p.storedRuns() == 1, "no refused run was stored")
        for c in [p.src, p.tgt] { #expect(try Expect.count(c, "SELECT count(*) FROM customers") >= 19, "nothing was deleted") }
        #expect(try Expect.count(p.src, "SELECT count(*) FROM customers") == 20)
    }
}

@Suite("check rules file")
struct CheckRulesFileTests {
    @Test("the example rules file parses into its four checks, with their tolerances")
    func example() throws {
        let path = Fixtures.projectRoot + "/config/checks.example.json"
        let rules = try CheckRules.parse(try String(contentsOfFile: path, encoding: .utf8), file: path)
        #expect(rules.checks.map(\.name) == ["orders_by_day_and_status", "revenue_by_customer", "items_have_orders", "orders_fresh"])
        #expect(rules.checks.map(\.kind.label) == ["aggregate", "query", "references", "freshness"])
        guard case let .aggregate(a) = rules.checks[0].kind else { Issue.record("not an aggregate"); return }
        #expect(a.measures.map(\.description) == ["count(*)", "sum(amount)", "count(distinct customer_id)", "max(created_at)"])
        #expect(a.tolerances[1].absolute == ExactDecimal("0.01") && a.tolerances[2].relative == 0.001 && a.tolerances[0] == .exact)
        #expect(rules.statementTimeoutMs == 300_000 && rules.defaultSchema && rules.defaultReferences)
    }
}
