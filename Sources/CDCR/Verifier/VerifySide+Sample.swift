import CDCCore
import CDCPostgres

/// The sampled verify's queries: key → row hash for drawn integer keys (index probes), or for the
/// keys whose seeded hash falls under a threshold (one scan of the table).
extension VerifySide {
    /// Key → row hash of the rows among `keys` (a single-column integer key) that exist here and
    /// match the predicate: one index probe per key.
    func rowHashes(ofIntegerKeys keys: [Int64]) throws -> [KeyTexts: Int64] {
        guard !keys.isEmpty, keyColumns.count == 1 else { return [:] }
        let k = keyColumns[0]
        let sql = """
            SELECT \(canonicalKeys), \(rowHash) FROM unnest($1::int8[]) AS u(k)
            JOIN \(table.name.quoted) t ON \(k.ref) = u.k::\(k.sqlType) WHERE true\(whereClause)
            """
        return try keyHashes(sql, [pgArrayLiteral(keys.map(String.init))])
    }

    /// The seeded hash of a row's key that decides whether it is in a threshold sample. Computed
    /// from the key's canonical text, so the same key gets the same hash on both sides whatever its
    /// type there; PostgreSQL's `hashtextextended` (Jenkins' lookup3, the function hash
    /// partitioning relies on) spreads any set of distinct keys evenly over the 64-bit range.
    var sampleKeyHash: String {
        let text = pair.keyColumns.map { $0.canonicalText(side) }.joined(separator: " || chr(31) || ")
        return "hashtextextended((\(text)) COLLATE \"C\", $1::int8)"
    }

    /// Key → row hash of every row whose key hash under `seed` is below `threshold` (nil: every
    /// row), matching the predicate.
    func rowHashes(sampleSeed seed: Int64, threshold: Int64?) throws -> [KeyTexts: Int64] {
        let condition = threshold == nil ? "$1::int8 IS NOT NULL" : "\(sampleKeyHash) < $2::int8"
        let sql = "SELECT \(canonicalKeys), \(rowHash) FROM \(table.name.quoted) t WHERE \(condition)\(whereClause)"
        return try keyHashes(sql, [String(seed)] + (threshold.map { [String($0)] } ?? []))
    }

    private func keyHashes(_ sql: String, _ params: [String?]) throws -> [KeyTexts: Int64] {
        var out: [KeyTexts: Int64] = [:]
        let n = pair.keyCount
        for r in try conn.query(sql, params).rows {
            out[r[..<n].map { $0 ?? "" }] = Int64(r[n]!)!
        }
        return out
    }
}
