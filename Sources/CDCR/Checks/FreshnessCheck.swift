import CDCCore
import CDCPostgres
import Foundation

/// `freshness`: the newest value of an `updated_at`-style column on each side (or, in the target,
/// the newest row version cdcr applied to the table: `cdcr.row_versions.updated_at`); the target
/// lagging by more than `max_lag_seconds` fails. `max` is one index probe when the column is indexed.
struct FreshnessCheck {
    let name: String
    let rule: FreshnessRule
    let targetTable: TableName

    static let timeKinds: Set<ColumnKind> = [.timestamptz, .timestamp, .date]

    func newestSQL(_ session: CheckSession, table name: TableName) throws -> (String, [String?]) {
        guard let table = try session.table(name) else { throw CheckError("table \(name) does not exist in the \(session.side) database") }
        let col = try session.column(rule.column, of: table, for: "column")
        guard Self.timeKinds.contains(col.kind) else { throw CheckError("column \(rule.column) of \(name) is \(col.sqlType), not a date or timestamp") }
        let v = "max(t.\(quoteIdentifier(col.name)))"
        // timestamp (without zone) and date are read as UTC instants.
        let instant = col.kind == .timestamptz ? v : "(\(v))::timestamp AT TIME ZONE 'UTC'"
        return ("SELECT extract(epoch FROM \(instant))::text, (\(instant) AT TIME ZONE 'UTC')::text FROM \(table.name.quoted) t", [])
    }

    func validate(on source: CheckSession) throws(ConfigError) {
        do {
            _ = try newestSQL(source, table: rule.table)
        } catch {
            throw ConfigError("check \"\(name)\"", "\(error)")
        }
    }

    func newest(_ session: CheckSession, table: TableName, rowVersions: Bool) throws -> (Double?, String?) {
        let (sql, params) = rowVersions
            ? ("SELECT extract(epoch FROM max(updated_at))::text, (max(updated_at) AT TIME ZONE 'UTC')::text FROM cdcr.row_versions WHERE table_name = $1",
               [table.description])
            : try newestSQL(session, table: table)
        if rowVersions, try session.conn.query("SELECT to_regclass('cdcr.row_versions') IS NOT NULL").scalar != "t" {
            throw CheckError("the target has no cdcr.row_versions (cdcr never applied to it)")
        }
        let row = try session.readOnly { try $0.query(sql, params) }.rows[0]
        return (row[0].flatMap(Double.init), row[1])
    }

    func run(source: CheckSession, target: CheckSession) -> CheckResult {
        let s: (Double?, String?), t: (Double?, String?)
        do {
            (s, t) = try concurrently({ try newest(source, table: rule.table, rowVersions: false) },
                                      { try newest(target, table: targetTable, rowVersions: rule.target == .rowVersions) })
        } catch {
            return CheckResult(name: name, kind: "freshness", status: .error, summary: "\(error)")
        }
        let what = rule.target == .rowVersions ? "cdcr.row_versions of \(targetTable)" : "\(targetTable).\(rule.column)"
        var r: CheckResult
        switch (s.0, t.0) {
        case (nil, _):
            r = CheckResult(name: name, kind: "freshness", status: .pass, summary: "\(rule.table).\(rule.column): no value in the source")
        case (_?, nil):
            r = CheckResult(name: name, kind: "freshness", status: .fail, summary: "\(what): no value in the target, newest source value \(s.1 ?? "?")")
        case let (sv?, tv?):
            let lag = max(0, sv - tv)
            r = CheckResult(name: name, kind: "freshness", status: lag > rule.maxLagSeconds ? .fail : .pass,
                            summary: "\(rule.table).\(rule.column) newest \(s.1 ?? "?") in the source, \(what) newest \(t.1 ?? "?") in the target: "
                                + "lag \(formatSeconds(lag)) s (max \(formatSeconds(rule.maxLagSeconds)) s)")
            r.add("lag_seconds", lag)
        }
        r.add("source_newest", s.1)
        r.add("target_newest", t.1)
        r.add("max_lag_seconds", rule.maxLagSeconds)
        return r
    }
}

/// Seconds with up to three decimals and no trailing zeros (`3600`, `0.25`).
func formatSeconds(_ s: Double) -> String {
    var text = String(format: "%.3f", s)
    while text.hasSuffix("0") { text.removeLast() }
    if text.hasSuffix(".") { text.removeLast() }
    return text
}
