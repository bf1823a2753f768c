import CDCCore
import CDCPostgres

/// `schema`: the source and target catalogs of the compared tables: tables and columns missing in
/// the target or only there, column types (documented widening pairs count as equal:
/// `typeVerdict`), nullability, primary key and unique constraints (unique indexes included).
/// Extra tables are target tables in the compared tables' schemas that the source does not have.
struct SchemaCheck {
    let name: String
    /// Source table → target table.
    let tables: [(TableName, TableName)]

    struct TableShape: Sendable {
        var columns: [(name: String, type: String, notNull: Bool)] = []
        var primaryKey: [String] = []
        /// Column lists (`a,b`, ` WHERE …` for partial ones) of the other unique indexes.
        var unique: Set<String> = []
    }

    static func shape(_ table: TableName, on c: PGConnection) throws -> TableShape? {
        guard let oid = try c.query("SELECT to_regclass($1)::oid::text", [table.quoted]).scalar else { return nil }
        var s = TableShape()
        for r in try c.query("""
            SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull FROM pg_attribute a
            WHERE a.attrelid = $1::oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum
            """, [oid]).rows {
            s.columns.append((r[0]!, r[1]!, r[2] == "t"))
        }
        for r in try c.query("""
            SELECT i.indisprimary, (SELECT string_agg(coalesce(a.attname::text, '(expression)'), ',' ORDER BY k.i)
                                    FROM unnest(i.indkey) WITH ORDINALITY k(n, i) LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.n),
                   pg_get_expr(i.indpred, i.indrelid)
            FROM pg_index i WHERE i.indrelid = $1::oid AND i.indisunique ORDER BY 2
            """, [oid]).rows {
            if r[0] == "t" { s.primaryKey = (r[1] ?? "").split(separator: ",").map(String.init) } else { s.unique.insert((r[1] ?? "") + (r[2].map { " WHERE \($0)" } ?? "")) }
        }
        return s
    }

    static func tablesIn(_ schema: String, on c: PGConnection) throws -> Set<String> {
        Set(try c.query("SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind IN ('r', 'p')",
                        [schema]).rows.map { $0[0]! })
    }

    func run(source: CheckSession, target: CheckSession) -> CheckResult {
        let sourceNames = tables.map(\.0), targetNames = tables.map(\.1)
        let targetSchemas = Set(targetNames.map(\.schema)).sorted()
        let s: [TableShape?], t: [TableShape?], st: [String: Set<String>], tt: [String: Set<String>]
        do {
            ((s, st), (t, tt)) = try concurrently({
                try source.readOnly { c in (try sourceNames.map { try Self.shape($0, on: c) },
                                            Dictionary(uniqueKeysWithValues: try targetSchemas.map { ($0, try Self.tablesIn($0, on: c)) })) }
            }, {
                try target.readOnly { c in (try targetNames.map { try Self.shape($0, on: c) },
                                            Dictionary(uniqueKeysWithValues: try targetSchemas.map { ($0, try Self.tablesIn($0, on: c)) })) }
            })
        } catch {
            return CheckResult(name: name, kind: "schema", status: .error, summary: "\(error)")
        }
        var found: [(category: String, line: String)] = []
        var compatible: [String] = []
        for (i, (sn, tn)) in tables.enumerated() {
            guard let ss = s[i] else { return CheckResult(name: name, kind: "schema", status: .error, summary: "table \(sn) does not exist in the source database") }
            guard let ts = t[i] else {
                found.append(("missing_tables", "missing table \(tn)"))
                continue
            }
            let targetCols = Dictionary(ts.columns.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
            let sourceCols = Set(ss.columns.map(\.name))
            for c in ss.columns {
                guard let tc = targetCols[c.name] else {
                    found.append(("missing_columns", "missing column \(tn).\(c.name) (\(c.type))"))
                    continue
                }
                switch typeVerdict(source: c.type, target: tc.type) {
                case .same: break
                case .compatible: compatible.append("\(tn).\(c.name): \(c.type) → \(tc.type)")
                case .different: found.append(("type_differences", "type of \(tn).\(c.name): \(c.type) in the source, \(tc.type) in the target"))
                }
                if c.notNull != tc.notNull {
                    found.append(("nullability_differences", "\(tn).\(c.name) is \(c.notNull ? "NOT NULL" : "nullable") in the source, \(tc.notNull ? "NOT NULL" : "nullable") in the target"))
                }
            }
            for c in ts.columns where !sourceCols.contains(c.name) {
                found.append(("extra_columns", "extra column \(tn).\(c.name) (\(c.type))"))
            }
            if ss.primaryKey != ts.primaryKey {
                found.append(("primary_key_differences", "primary key of \(tn): (\(ss.primaryKey.joined(separator: ", "))) in the source, "
                              + (ts.primaryKey.isEmpty ? "none" : "(\(ts.primaryKey.joined(separator: ", ")))") + " in the target"))
            }
            for u in ss.unique.subtracting(ts.unique).sorted() { found.append(("unique_differences", "unique (\(u)) of \(sn) missing in the target")) }
            for u in ts.unique.subtracting(ss.unique).sorted() { found.append(("unique_differences", "unique (\(u)) only in the target \(tn)")) }
        }
        let mapped = Set(targetNames)
        for schema in targetSchemas {
            for extra in (tt[schema] ?? []).subtracting(st[schema] ?? []).sorted() where !mapped.contains(TableName(schema: schema, name: extra)) {
                found.append(("extra_tables", "extra table \(schema).\(extra) (not in the source)"))
            }
        }
        var r = CheckResult(name: name, kind: "schema", status: found.isEmpty ? .pass : .fail,
                            summary: "\(tables.count) tables: \(found.count) differences, \(compatible.count) compatible type changes")
        r.add("tables", tables.count)
        for category in ["missing_tables", "extra_tables", "missing_columns", "extra_columns", "type_differences", "nullability_differences",
                         "primary_key_differences", "unique_differences"] {
            r.add(category, found.count { $0.category == category })
        }
        r.add("compatible_type_changes", compatible.count)
        for f in found { r.example(f.line) }
        return r
    }
}
