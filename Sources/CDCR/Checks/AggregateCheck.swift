import CDCCore
import CDCPostgres

/// `aggregate`: the same GROUP BY with the same measures, pushed down into both databases at once
/// (one statement per side), then compared group by group: groups missing from the target, extra
/// groups, and measures out of tolerance.
///
/// The table and measure columns come from each side's catalog and are quoted; the group-by
/// expressions and the filter passed the shape checks (`expressionShapeProblem`,
/// `predicateShapeProblem`) when the rules were read and are planned on the source before anything
/// runs, always inside read-only transactions.
public struct AggregateCheck: Sendable {
    let name: String
    let rule: AggregateRule
    let targetTable: TableName
    /// Table size in 8 KB blocks per part below which a side's statement is not split (see `statement`).
    var blocksPerPart = AggregateCheck.defaultBlocksPerPart

    /// The grouped statement over `table` on one side: `g0…` the keys, `m0…` the measures.
    func groupedSQL(_ table: TargetTable, on session: CheckSession, blocks: String? = nil) throws -> String {
        var select = rule.groupBy.enumerated().map { "(\($1)) AS g\($0)" }
        for (i, m) in rule.measures.enumerated() {
            var col = ""
            if let c = m.column { col = "t." + quoteIdentifier(try session.column(c, of: table, for: "\(m)").name) }
            switch m.function {
            case .count: select.append("count(*) AS m\(i)")
            case .countDistinct: select.append("count(DISTINCT \(col)) AS m\(i)")
            case .sum: select.append("sum(\(col)) AS m\(i)")
            case .min: select.append("min(\(col)) AS m\(i)")
            case .max: select.append("max(\(col)) AS m\(i)")
            }
        }
        var sql = "SELECT \(select.joined(separator: ", ")) FROM \(table.name.quoted) t"
        let conditions = [rule.filter.map { "(\($0))" }, blocks].compactMap { $0 }
        if !conditions.isEmpty { sql += " WHERE " + conditions.joined(separator: " AND ") }
        if !rule.groupBy.isEmpty { sql += " GROUP BY " + (1...rule.groupBy.count).map(String.init).joined(separator: ", ") }
        return sql
    }

    /// The type of every output column of `grouped`, without running it (LIMIT 0: no row is read).
    func outputTypes(_ grouped: String, _ params: [String?] = [], on c: PGConnection) throws -> [String] {
        let n = rule.groupBy.count + rule.measures.count
        let cols = (0..<n).map { i in "pg_typeof(s.\(i < rule.groupBy.count ? "g\(i)" : "m\(i - rule.groupBy.count)"))::text" }
        let r = try c.query("SELECT \(cols.joined(separator: ", ")) FROM (\(grouped) LIMIT 0) s RIGHT JOIN (SELECT 1) d ON true", params)
        return r.rows[0].map { $0 ?? "unknown" }
    }

    /// Refuses the rule before anything runs: the source table, its columns and the expressions
    /// must resolve and plan on the source.
    func validate(on source: CheckSession) throws(ConfigError) {
        do {
            guard let table = try source.table(rule.table) else { throw CheckError("table \(rule.table) does not exist in the source database") }
            let grouped = try groupedSQL(table, on: source)
            _ = try source.readOnly { c in try outputTypes(grouped, on: c) }
        } catch let e as PGError {
            throw ConfigError("check \"\(name)\"", "its expressions are not valid on the source table \(rule.table): \(e.message)")
        } catch {
            throw ConfigError("check \"\(name)\"", "\(error)")
        }
    }

    /// One side's groups: canonical key texts, then measure texts.
    func groups(on session: CheckSession, table name: TableName) throws -> (rows: [[String?]], parts: Int) {
        guard let table = try session.table(name) else { throw CheckError("table \(name) does not exist in the \(session.side) database") }
        return try session.readOnly { c in
            let (sql, params) = try statement(table, on: session)
            let types = try outputTypes(sql, params, on: c)
            let cols = types.enumerated().map { i, type in
                canonicalText("a." + (i < rule.groupBy.count ? "g\(i)" : "m\(i - rule.groupBy.count)"), type: type)
            }
            return (try c.query("SELECT \(cols.joined(separator: ", ")) FROM (\(sql)) a", params).rows, max(1, params.count + 1))
        }
    }

    /// 8 MB per part.
    public static let defaultBlocksPerPart: Int64 = 1_024

    /// The side's statement: the grouped statement as it is, or — for a table large enough, when
    /// every measure can be merged (not `count(distinct …)`) and the server can scan block ranges
    /// (PostgreSQL 14+) — cut into one part per parallel process (`max_parallel_workers_per_gather`
    /// + 1) of consecutive blocks, each grouped on its own, merged by a second GROUP BY. PostgreSQL
    /// runs such parts in parallel (Parallel Append of TID range scans); the plain GROUP BY it runs
    /// in one process whenever it cannot estimate the number of groups of an expression (it then
    /// assumes one per row, so partial aggregation looks useless), which is the usual case here.
    /// The merge happens in the database, in the measures' own types and collations.
    func statement(_ table: TargetTable, on session: CheckSession) throws -> (String, [String?]) {
        let whole = try groupedSQL(table, on: session)
        guard !rule.measures.contains(where: { $0.function == .countDistinct }) else { return (whole, []) }
        let r = try session.conn.query("""
            SELECT pg_relation_size($1::regclass) / current_setting('block_size')::int8, current_setting('max_parallel_workers_per_gather')::int8,
                   current_setting('server_version_num')::int8
            """, [table.name.quoted]).rows[0].map { Int64($0 ?? "0") ?? 0 }
        let parts = min(r[1] + 1, r[0] / max(1, blocksPerPart))
        guard r[2] >= 140_000, parts >= 2 else { return (whole, []) }
        let bounds = (1..<parts).map { "(\(r[0] * $0 / parts),0)" }
        var pieces: [String] = []
        for i in 0..<Int(parts) {
            var range: [String] = []
            if i > 0 { range.append("t.ctid >= $\(i)::tid") }
            if i < bounds.count { range.append("t.ctid < $\(i + 1)::tid") }
            pieces.append("(\(try groupedSQL(table, on: session, blocks: range.joined(separator: " AND "))))")
        }
        let keys = (0..<rule.groupBy.count).map { "p.g\($0)" }
        let merged = rule.measures.enumerated().map { i, m in
            switch m.function {
            case .count: "sum(p.m\(i))::int8 AS m\(i)"
            case .sum, .countDistinct: "sum(p.m\(i)) AS m\(i)"
            case .min: "min(p.m\(i)) AS m\(i)"
            case .max: "max(p.m\(i)) AS m\(i)"
            }
        }
        var sql = "SELECT \((keys.enumerated().map { "\($1) AS g\($0)" } + merged).joined(separator: ", ")) FROM (\(pieces.joined(separator: " UNION ALL "))) p"
        if !keys.isEmpty { sql += " GROUP BY " + (1...keys.count).map(String.init).joined(separator: ", ") }
        return (sql, bounds)
    }

    func run(source: CheckSession, target: CheckSession) -> CheckResult {
        let (sg, tg): ((rows: [[String?]], parts: Int), (rows: [[String?]], parts: Int))
        do {
            (sg, tg) = try concurrently({ try groups(on: source, table: rule.table) }, { try groups(on: target, table: targetTable) })
        } catch {
            return CheckResult(name: name, kind: "aggregate", status: .error, summary: "\(error)")
        }
        let (s, t) = (sg.rows, tg.rows)
        let keys = rule.groupBy.count
        let cmp = GroupComparison.compare(source: s, target: t, keyCount: keys, tolerances: rule.tolerances)
        var r = CheckResult(name: name, kind: "aggregate", status: cmp.passes ? .pass : .fail,
                            summary: "\(rule.table): \(cmp.sourceGroups) groups in the source, \(cmp.targetGroups) in the target, "
                                + "\(cmp.missing.count) missing, \(cmp.extra.count) extra, \(cmp.outOfTolerance.count) out of tolerance")
        r.add("source_groups", cmp.sourceGroups)
        r.add("target_groups", cmp.targetGroups)
        r.add("missing_groups", cmp.missing.count)
        r.add("extra_groups", cmp.extra.count)
        r.add("out_of_tolerance", cmp.outOfTolerance.count)
        // How each side's statement ran: in one piece (1) or split into block ranges.
        r.add("source_parts", sg.parts)
        r.add("target_parts", tg.parts)
        let sourceByKey = Dictionary(s.map { (Array($0[..<keys]), Array($0[keys...])) }, uniquingKeysWith: { $1 })
        let targetByKey = Dictionary(t.map { (Array($0[..<keys]), Array($0[keys...])) }, uniquingKeysWith: { $1 })
        func measures(_ values: [String?]?) -> String {
            zip(rule.measures, values ?? []).map { "\($0)=\($1 ?? "NULL")" }.joined(separator: " ")
        }
        for k in cmp.missing { r.example("- missing group \(describe(k)): source \(measures(sourceByKey[k]))") }
        for k in cmp.extra { r.example("+ extra group \(describe(k)): target \(measures(targetByKey[k]))") }
        for m in cmp.outOfTolerance {
            var line = "~ group \(describe(m.key)): \(rule.measures[m.measure]) source \(m.source ?? "NULL"), target \(m.target ?? "NULL")"
            if let a = m.source.flatMap(ExactDecimal.init), let b = m.target.flatMap(ExactDecimal.init), let d = ExactDecimal.absoluteDifference(a, b) {
                line += " (difference \(d))"
            }
            r.example(line)
        }
        return r
    }

    func describe(_ key: [String?]) -> String {
        key.isEmpty ? "(all rows)" : "(" + zip(rule.groupBy, key).map { "\($0) = \($1 ?? "NULL")" }.joined(separator: ", ") + ")"
    }
}
