import CDCCore
import CDCPostgres

/// The hash-bucket descent's queries (see `TableVerifier.descendByBuckets`): rows are grouped by the
/// low bits of a 64-bit hash of their key, computed by meaning (so an equal key lands in the same
/// bucket on both sides), in one sequential scan per statement and per side, whatever the key type
/// or the physical order of the rows. Masks and bucket numbers are computed here and bound as
/// `int8` arrays; no text from the tables reaches the SQL.
extension VerifySide {
    /// The key's hash: its columns' hashes by meaning, seeded by position, combined with XOR.
    var keyHash: String {
        pair.keyColumns.map { $0.hash(side) }.joined(separator: " # ")
    }

    /// The row hash without its key columns' part (`rowHash` is `keyHash # payloadHash`).
    var payloadHash: String {
        let payload = Array(pair.columns[pair.keyCount...])
        return payload.isEmpty ? "0::int8" : rowHashExpression(payload, side: side, floatTolerance: floatTolerance)
    }

    /// Row count and hash sum of every non-empty bucket `hash & (2^bits - 1)` of the table. The key
    /// hash is computed once per row (`OFFSET 0` keeps the subquery from being flattened into two).
    public func bucketChecksums(bits: Int) throws -> [Int64: RangeChecksum] {
        let sql = """
            SELECT h & \(BucketLevel.mask(bits)), count(*), sum(h # p)::text FROM (
                SELECT \(keyHash) AS h, \(payloadHash) AS p FROM \(table.name.quoted) t WHERE true\(whereClause) OFFSET 0) s
            GROUP BY 1
            """
        var out: [Int64: RangeChecksum] = [:]
        for r in try conn.query(sql).rows { out[Int64(r[0]!)!] = Self.checksum(r, at: 1) }
        return out
    }

    /// One level of the descent in one scan: the checksums of the children (`childBits`) of the
    /// buckets `split` (numbered at `bits`), and the key and row hash of every row of the buckets
    /// `leaves` (at `bits` too).
    public func bucketLevel(bits: Int, split: [Int64], childBits: Int, leaves: [Int64]) throws
        -> (children: [Int64: RangeChecksum], rows: [KeyTexts: Int64])
    {
        guard !split.isEmpty || !leaves.isEmpty else { return ([:], [:]) }
        let n = pair.keyCount
        let keys = pair.keyColumns.enumerated().map { "\($1.canonicalText(side)) AS k\($0)" }.joined(separator: ", ")
        let keyNames = (0..<n).map { "k\($0)" }.joined(separator: ", ")
        let nulls = (0..<n).map { _ in "NULL" }.joined(separator: ", ")
        let sql = """
            WITH x AS MATERIALIZED (
                SELECT (\(keyHash)) AS h, \(rowHash) AS rh, \(keys) FROM \(table.name.quoted) t
                WHERE ((\(keyHash)) & \(BucketLevel.mask(bits))) = ANY($1::int8[])\(whereClause))
            SELECT 0, h & \(BucketLevel.mask(childBits)), count(*), sum(rh)::text, \(nulls) FROM x
            WHERE (h & \(BucketLevel.mask(bits))) = ANY($2::int8[]) GROUP BY 2
            UNION ALL
            SELECT 1, NULL, NULL, rh::text, \(keyNames) FROM x WHERE (h & \(BucketLevel.mask(bits))) = ANY($3::int8[])
            """
        let all = split + leaves
        let params = [all, split, leaves].map { pgArrayLiteral($0.map(String.init)) }
        var children: [Int64: RangeChecksum] = [:], rows: [KeyTexts: Int64] = [:]
        for r in try conn.query(sql, params).rows {
            if r[0] == "0" {
                children[Int64(r[1]!)!] = Self.checksum(r, at: 2)
            } else {
                rows[r[4...].map { $0 ?? "" }] = Int64(r[3]!)!
            }
        }
        return (children, rows)
    }
}
