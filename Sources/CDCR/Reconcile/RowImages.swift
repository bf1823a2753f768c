import CDCCore
import CDCPostgres

/// The short read a reconcile run makes of the rows verify found different: each side's whole
/// row as JSON (kept with the discrepancy, for the review queue's side-by-side view) and, for
/// `newest-wins`, the text of the compared column.
struct RowImages {
    /// The row as `to_jsonb` text, and the `newest-wins` column's text (nil: NULL or not asked).
    struct Image { var json: String; var column: String? }

    /// Keys per statement.
    static let chunk = 1_000

    let pair: TablePair
    /// The `newest-wins` column, resolved on both sides; nil reads no column.
    let column: String?

    /// The images of `keys` on one side (absent keys have no row there).
    func read(_ keys: [KeyTexts], side: Side, on conn: PGConnection) throws -> [KeyTexts: Image] {
        let table = side == .source ? pair.source : pair.target
        let rows = RepairRows(pair: pair)
        var out: [KeyTexts: Image] = [:]
        for start in stride(from: 0, to: keys.count, by: Self.chunk) {
            let slice = Array(keys[start..<min(keys.count, start + Self.chunk)])
            let (from, on, params) = rows.keyArrays(slice, table: table)
            let keySelect = pair.keyColumns.map { $0.canonicalText(side) }.joined(separator: ", ")
            let columnSelect = column.map { ", t.\(quoteIdentifier($0))::text" } ?? ""
            let result = try conn.query("SELECT \(keySelect), to_jsonb(t)::text\(columnSelect) FROM \(from) JOIN \(table.name.quoted) t ON \(on)", params)
            let k = pair.keyCount
            for r in result.rows {
                out[r[..<k].map { $0 ?? "" }] = Image(json: r[k] ?? "null", column: column == nil ? nil : r[k + 1])
            }
        }
        return out
    }

    /// Per pair of (source, target) column texts: is the target's strictly newer? Compared in the
    /// target database as the target column's type (a NULL is older than any value).
    static func targetNewer(_ pairs: [(source: String?, target: String?)], column: ColumnInfo, on target: PGConnection) throws -> [Bool] {
        guard !pairs.isEmpty else { return [] }
        var out: [Bool] = []
        for start in stride(from: 0, to: pairs.count, by: chunk) {
            let slice = pairs[start..<min(pairs.count, start + chunk)]
            let type = column.sqlType
            let rows = try target.query("""
                SELECT CASE WHEN t IS NULL THEN false WHEN s IS NULL THEN true ELSE t::\(type) > s::\(type) END
                FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS u(s, t, i) ORDER BY i
                """, [pgArrayLiteralNullable(slice.map(\.source)), pgArrayLiteralNullable(slice.map(\.target))])
            out += rows.rows.map { $0[0] == "t" }
        }
        return out
    }
}
