import CDCCore
import CDCPostgres

/// `query`: an operator's pair of read-only queries, one per side, each returning `keyColumns`
/// key columns and then numeric measures; rows are matched by key and their measures compared
/// with the tolerance. Each query runs as `SELECT * FROM (query) q` (so it can only be a query
/// expression: no second statement, no data-modifying WITH) in a READ ONLY transaction with the
/// statement timeout.
struct QueryCheck {
    let name: String
    let rule: QueryRule

    static func wrapped(_ query: String) -> String { "SELECT * FROM (\(query)\n) q" }

    func validate(on source: CheckSession) throws(ConfigError) {
        do {
            let cols = try source.readOnly { c in try c.query("SELECT * FROM (\(Self.wrapped(rule.source))) v LIMIT 0").columns.count }
            guard cols > rule.keyColumns else {
                throw CheckError("the source query returns \(cols) columns: it must return \(rule.keyColumns) key columns and at least one measure")
            }
        } catch let e as PGError {
            throw ConfigError("check \"\(name)\".source", "not a valid query on the source: \(e.message)")
        } catch {
            throw ConfigError("check \"\(name)\"", "\(error)")
        }
    }

    func run(source: CheckSession, target: CheckSession) -> CheckResult {
        let s: PGRows, t: PGRows
        do {
            (s, t) = try concurrently({ try source.readOnly { try $0.query(Self.wrapped(rule.source)) } },
                                      { try target.readOnly { try $0.query(Self.wrapped(rule.target)) } })
        } catch {
            return CheckResult(name: name, kind: "query", status: .error, summary: "\(error)")
        }
        guard s.columns.count == t.columns.count, t.columns.count > rule.keyColumns else {
            return CheckResult(name: name, kind: "query", status: .error,
                               summary: "the queries return \(s.columns.count) (source) and \(t.columns.count) (target) columns; both must return \(rule.keyColumns) keys and the same measures")
        }
        let measureNames = Array(s.columns[rule.keyColumns...])
        let keyNames = Array(s.columns[..<rule.keyColumns])
        let cmp = GroupComparison.compare(source: s.rows, target: t.rows, keyCount: rule.keyColumns,
                                          tolerances: Array(repeating: rule.tolerance, count: measureNames.count))
        var r = CheckResult(name: name, kind: "query", status: cmp.passes ? .pass : .fail,
                            summary: "\(cmp.sourceGroups) rows in the source, \(cmp.targetGroups) in the target, \(cmp.missing.count) missing, "
                                + "\(cmp.extra.count) extra, \(cmp.outOfTolerance.count) out of tolerance")
        r.add("source_rows", cmp.sourceGroups)
        r.add("target_rows", cmp.targetGroups)
        r.add("missing_rows", cmp.missing.count)
        r.add("extra_rows", cmp.extra.count)
        r.add("out_of_tolerance", cmp.outOfTolerance.count)
        func describe(_ key: [String?]) -> String {
            key.isEmpty ? "(the row)" : "(" + zip(keyNames, key).map { "\($0)=\($1 ?? "NULL")" }.joined(separator: ", ") + ")"
        }
        for k in cmp.missing { r.example("- missing \(describe(k))") }
        for k in cmp.extra { r.example("+ extra \(describe(k))") }
        for m in cmp.outOfTolerance {
            r.example("~ \(describe(m.key)): \(measureNames[m.measure]) source \(m.source ?? "NULL"), target \(m.target ?? "NULL")")
        }
        return r
    }
}
