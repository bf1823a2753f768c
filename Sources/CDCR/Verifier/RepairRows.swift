import CDCCore
import CDCPostgres

/// The statements repair runs for a batch of keys: locks, row images, fresh source rows and the
/// repair log. Keys are bound as arrays typed by each side's key columns.
struct RepairRows {
    let pair: TablePair
    /// Source columns that also exist in the target: what an insert or overwrite writes.
    let writtenColumns: [String]

    init(pair: TablePair) {
        self.pair = pair
        writtenColumns = pair.source.columns.map(\.name).filter { pair.target.columnIndex($0) != nil }
    }

    /// `unnest($1::T0[], …) AS u("k0", …)` for `keys` on `table`, and the bound arrays.
    func keyArrays(_ keys: [KeyTexts], table: TargetTable, firstParam: Int = 1) -> (String, String, [String?]) {
        let cols = pair.keyColumns.map { table.columns[table.columnIndex($0.name)!] }
        let arrays = cols.enumerated().map { "$\(firstParam + $0)::\($1.sqlType)[]" }.joined(separator: ", ")
        let from = "unnest(\(arrays)) AS u(\(cols.map { quoteIdentifier($0.name) }.joined(separator: ", ")))"
        let on = cols.map { "t.\(quoteIdentifier($0.name)) = u.\(quoteIdentifier($0.name))" }.joined(separator: " AND ")
        let params: [String?] = cols.indices.map { k in pgArrayLiteral(keys.map { $0[k] }) }
        return (from, on, params)
    }

    /// Locks the keys' row versions, then their rows (the applier's order), and returns the rows'
    /// before-images.
    func lockImages(_ keys: [KeyTexts], on target: PGConnection) throws -> [KeyTexts: (canonical: [String?], json: String)] {
        let (from, _, params) = keyArrays(keys, table: pair.target, firstParam: 2)
        try target.query("""
            SELECT 1 FROM cdcr.row_versions rv WHERE rv.table_name = $1
              AND rv.row_key IN (SELECT \(StageStatements.rowKey(pair.target, alias: "u")) FROM \(from)) FOR UPDATE OF rv
            """, [pair.target.name.description] + params)
        return try images(keys, on: target, lock: true)
    }

    /// The target rows of `keys`: canonical texts of the compared columns and the whole row as JSON.
    func images(_ keys: [KeyTexts], on target: PGConnection, lock: Bool = false) throws -> [KeyTexts: (canonical: [String?], json: String)] {
        guard !keys.isEmpty else { return [:] }
        let (from, on, params) = keyArrays(keys, table: pair.target)
        let canonical = pair.columns.map { $0.canonicalText(.target) }.joined(separator: ", ")
        let rows = try target.query(
            "SELECT \(canonical), to_jsonb(t)::text FROM \(from) JOIN \(pair.target.name.quoted) t ON \(on)\(lock ? " FOR UPDATE OF t" : "")", params)
        var out: [KeyTexts: (canonical: [String?], json: String)] = [:]
        for r in rows.rows {
            let c = Array(r[..<pair.columns.count])
            out[c[..<pair.keyCount].map { $0 ?? "" }] = (c, r[pair.columns.count] ?? "null")
        }
        return out
    }

    /// The source rows of `keys` as they are now: canonical texts for comparing, raw texts for writing.
    func sourceRows(_ keys: [KeyTexts], on source: PGConnection) throws -> [KeyTexts: (canonical: [String?], raw: [String?])] {
        guard !keys.isEmpty else { return [:] }
        let (from, on, params) = keyArrays(keys, table: pair.source)
        let canonical = pair.columns.map { $0.canonicalText(.source) }.joined(separator: ", ")
        let raw = writtenColumns.map { "t.\(quoteIdentifier($0))::text" }.joined(separator: ", ")
        let rows = try source.query("SELECT \(canonical), \(raw) FROM \(from) JOIN \(pair.source.name.quoted) t ON \(on)", params)
        var out: [KeyTexts: (canonical: [String?], raw: [String?])] = [:]
        let n = pair.columns.count
        for r in rows.rows {
            out[r[..<pair.keyCount].map { $0 ?? "" }] = (Array(r[..<n]), Array(r[n...]))
        }
        return out
    }

    /// One `cdcr.repair_log` row per applied fix, with the before and after images.
    func log(_ fixes: [(key: KeyTexts, action: String, changeID: String)], before: [KeyTexts: (canonical: [String?], json: String)],
             after: [KeyTexts: (canonical: [String?], json: String)], runID: String, on target: PGConnection) throws {
        guard !fixes.isEmpty else { return }
        let names = pair.keyColumns.map(\.name)
        let keyJSON = fixes.map { keyJSONObject(names: names, key: $0.key) }
        try target.query("""
            INSERT INTO cdcr.repair_log (run_id, table_name, row_key, action, before_image, after_image, change_id)
            SELECT $1, $2, k::jsonb, a, b::jsonb, f::jsonb, c FROM unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::text[]) AS x(k, a, b, f, c)
            """, [runID, pair.target.name.description, pgArrayLiteralNullable(keyJSON), pgArrayLiteralNullable(fixes.map(\.action)),
                  pgArrayLiteralNullable(fixes.map { before[$0.key]?.json }), pgArrayLiteralNullable(fixes.map { after[$0.key]?.json }),
                  pgArrayLiteralNullable(fixes.map(\.changeID))])
    }
}

/// A PostgreSQL text-array literal where nil entries are NULL.
func pgArrayLiteralNullable(_ values: [String?]) -> String {
    "{" + values.map { v in
        guard let v else { return "NULL" }
        var out = "\""
        for c in v.unicodeScalars {
            if c == "\"" || c == "\\" { out += "\\" }
            out.unicodeScalars.append(c)
        }
        return out + "\""
    }.joined(separator: ",") + "}"
}
