import CDCCore
import CDCPostgres

/// `references`: child rows whose (non-NULL) reference columns match no parent row — orphans —
/// counted in the target, whether or not the target declares the constraint, and in the source.
/// Each target orphan's values (up to `classifyLimit` distinct ones) are looked up among the
/// source's parents: a parent the source has means the migration lost it (**created** orphans, which
/// fail the check); one the source lacks too means the orphan was **inherited** (reported, not a
/// failure). Names come from both catalogs, quoted; orphan values are bound as typed arrays.
struct ReferencesCheck {
    let name: String
    let rule: ReferencesRule
    let targetChild: TableName
    let targetParent: TableName
    static let classifyLimit = 10_000

    struct Resolved {
        let child: TargetTable, parent: TargetTable
        let childCols: [ColumnInfo], parentCols: [ColumnInfo]
    }

    func resolve(_ session: CheckSession, child: TableName, parent: TableName) throws -> Resolved {
        guard let c = try session.table(child) else { throw CheckError("table \(child) does not exist in the \(session.side) database") }
        guard let p = try session.table(parent) else { throw CheckError("table \(parent) does not exist in the \(session.side) database") }
        return Resolved(child: c, parent: p, childCols: try rule.columns.map { try session.column($0, of: c, for: "columns") },
                        parentCols: try rule.parentColumns.map { try session.column($0, of: p, for: "parent_columns") })
    }

    /// `FROM child c WHERE <all set> AND NOT EXISTS (parent)`.
    func orphanFrom(_ r: Resolved) -> String {
        let set = r.childCols.map { "c.\(quoteIdentifier($0.name)) IS NOT NULL" }.joined(separator: " AND ")
        let match = zip(r.parentCols, r.childCols).map { "p.\(quoteIdentifier($0.name)) = c.\(quoteIdentifier($1.name))" }.joined(separator: " AND ")
        return "FROM \(r.child.name.quoted) c WHERE \(set) AND NOT EXISTS (SELECT 1 FROM \(r.parent.name.quoted) p WHERE \(match))"
    }

    func validate(on source: CheckSession) throws(ConfigError) {
        do {
            let r = try resolve(source, child: rule.child, parent: rule.parent)
            _ = try source.readOnly { try $0.query("EXPLAIN SELECT 1 \(orphanFrom(r))") }
        } catch let e as PGError {
            throw ConfigError("check \"\(name)\"", "not a valid reference on the source: \(e.message)")
        } catch {
            throw ConfigError("check \"\(name)\"", "\(error)")
        }
    }

    /// Target: orphan rows, and up to `classifyLimit` + 1 distinct orphan values.
    func targetOrphans(_ session: CheckSession) throws -> (rows: Int, values: [[String]]) {
        let r = try resolve(session, child: targetChild, parent: targetParent)
        let cols = r.childCols.map { "c.\(quoteIdentifier($0.name))::text" }.joined(separator: ", ")
        return try session.readOnly { c in
            let n = Int(try c.query("SELECT count(*) \(orphanFrom(r))").scalar ?? "0") ?? 0
            let values = n == 0 ? [] : try c.query("SELECT DISTINCT \(cols) \(orphanFrom(r)) ORDER BY 1 LIMIT \(Self.classifyLimit + 1)").rows.map { $0.map { $0 ?? "" } }
            return (n, values)
        }
    }

    /// Source: orphan rows, and which of `values` have no parent there.
    func sourceOrphans(_ session: CheckSession, values: [[String]]) throws -> (rows: Int, withoutParent: Set<[String]>) {
        let r = try resolve(session, child: rule.child, parent: rule.parent)
        return try session.readOnly { c in
            let n = Int(try c.query("SELECT count(*) \(orphanFrom(r))").scalar ?? "0") ?? 0
            guard !values.isEmpty else { return (n, []) }
            let k = r.parentCols.count
            let arrays = r.parentCols.enumerated().map { "$\($0 + 1)::\($1.sqlType)[]" }.joined(separator: ", ")
            let match = r.parentCols.enumerated().map { "p.\(quoteIdentifier($1.name)) = u.k\($0)" }.joined(separator: " AND ")
            let sql = "SELECT \((0..<k).map { "u.k\($0)::text" }.joined(separator: ", ")) FROM unnest(\(arrays)) AS u(\((0..<k).map { "k\($0)" }.joined(separator: ", "))) "
                + "WHERE NOT EXISTS (SELECT 1 FROM \(r.parent.name.quoted) p WHERE \(match))"
            let params: [String?] = (0..<k).map { i in pgArrayLiteral(values.map { $0[i] }) }
            return (n, Set(try c.query(sql, params).rows.map { $0.map { $0 ?? "" } }))
        }
    }

    func run(source: CheckSession, target: CheckSession) -> CheckResult {
        do {
            let t = try targetOrphans(target)
            let classified = Array(t.values.prefix(Self.classifyLimit))
            let s = try sourceOrphans(source, values: classified)
            let inherited = classified.filter { s.withoutParent.contains($0) }
            let created = classified.filter { !s.withoutParent.contains($0) }
            let unclassified = t.values.count > Self.classifyLimit
            let link = "\(targetChild)(\(rule.columns.joined(separator: ", "))) → \(targetParent)(\(rule.parentColumns.joined(separator: ", ")))"
            var r = CheckResult(name: name, kind: "references", status: created.isEmpty && !unclassified ? .pass : .fail,
                                summary: "\(link): \(t.rows) orphan rows in the target (\(created.count) values whose parent the source has, "
                                    + "\(inherited.count) inherited), \(s.rows) in the source"
                                    + (unclassified ? "; over \(Self.classifyLimit) distinct orphan values, the rest not classified" : ""))
            if let constraint = rule.constraint { r.add("constraint", constraint) }
            r.add("target_orphan_rows", t.rows)
            r.add("source_orphan_rows", s.rows)
            r.add("created_orphan_values", created.count)
            r.add("inherited_orphan_values", inherited.count)
            r.add("unclassified", unclassified ? 1 : 0)
            for v in created { r.example("orphan \(describe(v)): no parent in the target, the source has it") }
            for v in inherited { r.example("orphan \(describe(v)): inherited, no parent in the source either") }
            return r
        } catch {
            return CheckResult(name: name, kind: "references", status: .error, summary: "\(error)")
        }
    }

    func describe(_ values: [String]) -> String {
        "\(targetChild)(" + zip(rule.columns, values).map { "\($0)=\($1)" }.joined(separator: ", ") + ")"
    }

    /// Every foreign key the source declares from one of `tables` to one of `tables`, as a check
    /// named `fk:<child>:<constraint>`.
    static func declared(on conn: PGConnection, tables: [TableName]) throws -> [CheckRule] {
        guard !tables.isEmpty else { return [] }
        let rows = try conn.query("""
            SELECT con.conname, cn.nspname, cc.relname, pn.nspname, pc.relname,
                   (SELECT array_agg(a.attname::text ORDER BY k.i) FROM unnest(con.conkey) WITH ORDINALITY k(n, i) JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.n),
                   (SELECT array_agg(a.attname::text ORDER BY k.i) FROM unnest(con.confkey) WITH ORDINALITY k(n, i) JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.n)
            FROM pg_constraint con
            JOIN pg_class cc ON cc.oid = con.conrelid JOIN pg_namespace cn ON cn.oid = cc.relnamespace
            JOIN pg_class pc ON pc.oid = con.confrelid JOIN pg_namespace pn ON pn.oid = pc.relnamespace
            WHERE con.contype = 'f' ORDER BY cn.nspname, cc.relname, con.conname
            """)
        let wanted = Set(tables)
        var out: [CheckRule] = []
        for r in rows.rows {
            let child = TableName(schema: r[1]!, name: r[2]!), parent = TableName(schema: r[3]!, name: r[4]!)
            guard wanted.contains(child), wanted.contains(parent) else { continue }
            let rule = ReferencesRule(child: child, columns: parsePGArray(r[5] ?? "{}"), parent: parent, parentColumns: parsePGArray(r[6] ?? "{}"), constraint: r[0]!)
            out.append(CheckRule(name: "fk:\(child):\(r[0]!)", kind: .references(rule)))
        }
        return out
    }
}

/// The elements of a one-dimensional text array literal as PostgreSQL prints it (`{a,"b c"}`).
func parsePGArray(_ text: String) -> [String] {
    var out: [String] = []
    var current = ""
    var quoted = false, escaped = false, inQuotes = false
    for c in text.dropFirst().dropLast() {
        if escaped { current.append(c); escaped = false; continue }
        switch c {
        case "\\" where inQuotes: escaped = true
        case "\"": inQuotes.toggle(); quoted = true
        case "," where !inQuotes:
            out.append(current)
            current = ""
            quoted = false
        default: current.append(c)
        }
    }
    if !current.isEmpty || quoted { out.append(current) }
    return out
}
