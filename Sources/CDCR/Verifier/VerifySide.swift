import CDCCore
import CDCPostgres

/// The verifier's queries against one database (source or target): counts and hash sums of key
/// ranges, boundary keys to split ranges at, and rows, all computed inside the database. Every
/// statement is built from `TablePair` identifiers; keys and bounds are bound as typed arrays.
///
/// Not thread-safe; the verifier uses each side from one thread at a time.
public final class VerifySide: @unchecked Sendable {
    // @unchecked Sendable: the verifier hands a side to exactly one thread per step (see
    // `concurrently`); the connection serialises its own calls anyway.
    public let side: Side
    public let conn: PGConnection
    let pair: TablePair
    let table: TargetTable
    let predicate: String?
    let floatTolerance: Double?
    /// The key columns as this side's SQL refers to them.
    let keyColumns: [ColumnComparedRef]

    public init(_ side: Side, conn: PGConnection, pair: TablePair, predicate: String?, floatTolerance: Double?) {
        self.side = side
        self.conn = conn
        self.pair = pair
        self.table = side == .source ? pair.source : pair.target
        self.predicate = predicate
        self.floatTolerance = floatTolerance
        let table = self.table
        keyColumns = pair.keyColumns.enumerated().map { i, c in
            let info = table.columns[table.columnIndex(c.name)!]
            return ColumnComparedRef(ref: "t." + quoteIdentifier(c.name), sqlType: info.sqlType, collateC: pair.keyCollateC[i])
        }
    }

    // MARK: - SQL pieces


    /// `(t.k0, t.k1…)` as ordered for range comparisons.
    private var keyTuple: String {
        "(" + keyColumns.map { $0.collateC ? "\($0.ref) COLLATE \"C\"" : $0.ref }.joined(separator: ", ") + ")"
    }

    private var keyOrder: String {
        keyColumns.map { $0.collateC ? "\($0.ref) COLLATE \"C\"" : $0.ref }.joined(separator: ", ")
    }

    var canonicalKeys: String {
        pair.keyColumns.map { $0.canonicalText(side) }.joined(separator: ", ")
    }

    var rowHash: String { rowHashExpression(pair.columns, side: side, floatTolerance: floatTolerance) }

    var whereClause: String { predicate.map { " AND (\($0))" } ?? "" }

    /// A statement over `ranges`: bounded ranges as one join against unnested bound arrays, the open
    /// ones (at most the two ends) as their own parts, all UNION ALL'ed. `select` follows the range
    /// index column `i`; `tail` ends each part (e.g. GROUP BY).
    private func overRanges(_ ranges: [KeyRange], select: String, tail: String = "") -> (String, [String?]) {
        var params: [String?] = []
        func bind(_ value: String) -> String {
            params.append(value)
            return "$\(params.count)"
        }
        func tuple(_ key: KeyTexts) -> String {
            "(" + zip(key, keyColumns).map { "\(bind($0))::\($1.sqlType)" }.joined(separator: ", ") + ")"
        }
        var parts: [String] = []
        let bounded = ranges.indices.filter { ranges[$0].lo != nil && ranges[$0].hi != nil }
        if !bounded.isEmpty {
            let n = keyColumns.count
            var arrays: [String] = []
            for side in 0..<2 {
                for k in 0..<n {
                    let values = bounded.map { side == 0 ? ranges[$0].lo![k] : ranges[$0].hi![k] }
                    arrays.append("\(bind(pgArrayLiteral(values)))::\(keyColumns[k].sqlType)[]")
                }
            }
            arrays.append("\(bind(pgArrayLiteral(bounded.map(String.init))))::int[]")
            let names = (0..<n).map { "l\($0)" } + (0..<n).map { "h\($0)" } + ["i"]
            let lo = "(" + (0..<n).map { "r.l\($0)" }.joined(separator: ", ") + ")"
            let hi = "(" + (0..<n).map { "r.h\($0)" }.joined(separator: ", ") + ")"
            parts.append("""
                SELECT r.i, \(select) FROM unnest(\(arrays.joined(separator: ", "))) AS r(\(names.joined(separator: ", ")))
                JOIN \(table.name.quoted) t ON \(keyTuple) >= \(lo) AND \(keyTuple) < \(hi)\(whereClause) \(tail)
                """)
        }
        for i in ranges.indices where ranges[i].lo == nil || ranges[i].hi == nil {
            var conditions = ["true"]
            if let lo = ranges[i].lo { conditions.append("\(keyTuple) >= \(tuple(lo))") }
            if let hi = ranges[i].hi { conditions.append("\(keyTuple) < \(tuple(hi))") }
            parts.append("SELECT \(i) AS i, \(select) FROM \(table.name.quoted) t WHERE \(conditions.joined(separator: " AND "))\(whereClause) \(tail)")
        }
        return (parts.map { "(\($0))" }.joined(separator: "\nUNION ALL\n"), params)
    }

    // MARK: - Queries

    /// Checks that the `--where` predicate is a valid boolean expression over the table, without
    /// running it (EXPLAIN plans only).
    public static func checkPredicate(_ predicate: String?, table: TableName, side: Side, on conn: PGConnection) throws {
        guard let predicate else { return }
        if let problem = predicateShapeProblem(predicate) {
            throw VerifyError("--where '\(predicate)' is not a single predicate: \(problem)")
        }
        do {
            try conn.query("EXPLAIN SELECT 1 FROM \(table.quoted) t WHERE (\(predicate))")
        } catch {
            throw VerifyError("--where '\(predicate)' is not a valid predicate on the \(side) table \(table): \(error.message)")
        }
    }

    /// The planner's row estimate, or an exact count when the table was never analysed.
    public func estimatedRows() throws -> Int64 {
        let estimate = Int64(Double(try conn.query("SELECT reltuples FROM pg_class WHERE oid = $1::regclass", [table.name.quoted]).scalar ?? "-1") ?? -1)
        if estimate >= 0 { return estimate }
        return Int64(try conn.query("SELECT count(*) FROM \(table.name.quoted)").scalar ?? "0") ?? 0
    }

    /// The smallest and largest key of a single-column integer key (index lookups), nil otherwise or when empty.
    public func integerKeyBounds() throws -> (Int64, Int64)? {
        guard pair.keyCount == 1, pair.columns[0].type == .integer else { return nil }
        let k = keyColumns[0].ref
        let r = try conn.query("SELECT min(\(k))::text, max(\(k))::text FROM \(table.name.quoted) t WHERE true\(whereClause)")
        guard let lo = r[0, 0].flatMap({ Int64($0) }), let hi = r[0, 1].flatMap({ Int64($0) }) else { return nil }
        return (lo, hi)
    }

    /// About `ranges` - 1 keys that cut the table into ranges of similar size: every n-th key of
    /// the table when it is small (≤ `exactRootRows` rows estimated: one index-order pass), of a
    /// block sample otherwise (on a few pages a block sample may hold no row at all).
    public func rootBoundaries(ranges: Int, estimatedRows: Int64, exactRootRows: Int64 = 200_000) throws -> [KeyTexts] {
        guard ranges > 1 else { return [] }
        let wantedSample = Double(ranges) * 32
        let exact = estimatedRows <= exactRootRows
        let percent = exact ? 100 : min(100, max(0.0001, 100 * wantedSample / Double(max(1, estimatedRows))))
        let sampled = Double(estimatedRows) * percent / 100
        let step = max(1, Int64(sampled / Double(ranges)))
        let keys = (0..<pair.keyCount).map { "k\($0)" }
        let rows = try conn.query("""
            SELECT \(keys.joined(separator: ", ")) FROM (
                SELECT \(pair.keyColumns.enumerated().map { "\($1.canonicalText(side)) AS k\($0)" }.joined(separator: ", ")),
                       row_number() OVER (ORDER BY \(keyOrder)) AS rn
                FROM \(table.name.quoted) t\(percent < 100 ? " TABLESAMPLE SYSTEM (\(percent))" : "") WHERE true\(whereClause)) s
            WHERE rn % \(step) = 0 ORDER BY rn
            """)
        return rows.rows.map { $0.map { $0 ?? "" } }
    }

    /// The `count(*)` and `sum(…)::text` a checksum statement returns from column `i` of a row.
    static func checksum(_ row: [String?], at i: Int) -> RangeChecksum {
        RangeChecksum(count: Int64(row[i]!)!, sum: row[i + 1] ?? "0")
    }

    /// Row count and hash sum of each range, in order.
    public func checksums(_ ranges: [KeyRange]) throws -> [RangeChecksum] {
        guard !ranges.isEmpty else { return [] }
        let (sql, params) = overRanges(ranges, select: "count(*), sum(\(rowHash))::text", tail: "GROUP BY 1")
        var out = [RangeChecksum](repeating: .empty, count: ranges.count)
        for r in try conn.query(sql, params).rows {
            out[Int(r[0]!)!] = Self.checksum(r, at: 1)
        }
        return out
    }

    /// Row count and hash sum of each range of `cuts` (a dense integer key), grouped in one
    /// sequential scan: the range index is computed from the key, as `EqualWidthCuts.index(of:)` does.
    /// Every key lies in [lo, hi] of the same snapshot, so `k - lo` cannot overflow.
    public func checksums(_ cuts: EqualWidthCuts) throws -> [RangeChecksum] {
        let k = "(\(keyColumns[0].ref))::int8"
        // The subquery (`OFFSET 0`) keeps the planner from guessing a group per row for the computed
        // index, which made it sort the whole table (in parallel workers) instead of hashing.
        let sql = """
            SELECT i, count(*), sum(rh)::text FROM (
                SELECT least(greatest((\(k) - \(cuts.lo)) / \(cuts.width), 0), \(cuts.cuts.count)) AS i, \(rowHash) AS rh
                FROM \(table.name.quoted) t WHERE true\(whereClause) OFFSET 0) s
            GROUP BY 1
            """
        var out = [RangeChecksum](repeating: .empty, count: cuts.cuts.count + 1)
        for r in try conn.query(sql).rows { out[Int(r[0]!)!] = Self.checksum(r, at: 1) }
        return out
    }

    /// For each range, every `steps[i]`-th key in key order: the boundaries to split it at.
    public func boundaries(_ ranges: [KeyRange], steps: [Int64]) throws -> [[KeyTexts]] {
        guard !ranges.isEmpty else { return [] }
        let n = pair.keyCount
        let order = keyColumns.enumerated().map { i, c in c.collateC ? "o\(i) COLLATE \"C\"" : "o\(i)" }.joined(separator: ", ")
        let select = pair.keyColumns.enumerated().map { "\($1.canonicalText(side)) AS k\($0)" }.joined(separator: ", ")
            + ", " + keyColumns.enumerated().map { "\($1.ref) AS o\($0)" }.joined(separator: ", ")
        var (inner, params) = overRanges(ranges, select: select)
        params.append(pgArrayLiteral(steps.map(String.init)))
        let sql = """
            SELECT i, \((0..<n).map { "k\($0)" }.joined(separator: ", ")) FROM (
                SELECT u.*, row_number() OVER (PARTITION BY i ORDER BY \(order)) AS rn FROM (\(inner)) u) w
            WHERE rn % ($\(params.count)::int8[])[i + 1] = 0 ORDER BY i, rn
            """
        var out = [[KeyTexts]](repeating: [], count: ranges.count)
        for r in try conn.query(sql, params).rows {
            out[Int(r[0]!)!].append(r[1...].map { $0 ?? "" })
        }
        return out
    }

    /// Key → row hash of every row in `ranges`.
    public func rowHashes(_ ranges: [KeyRange]) throws -> [KeyTexts: Int64] {
        try rowHashesPerRange(ranges).reduce(into: [:]) { all, one in all.merge(one) { a, _ in a } }
    }

    /// Key → row hash of the rows of each range, in the order of `ranges`.
    public func rowHashesPerRange(_ ranges: [KeyRange]) throws -> [[KeyTexts: Int64]] {
        guard !ranges.isEmpty else { return [] }
        let (sql, params) = overRanges(ranges, select: "\(canonicalKeys), \(rowHash)")
        var out = [[KeyTexts: Int64]](repeating: [:], count: ranges.count)
        for r in try conn.query(sql, params).rows {
            out[Int(r[0]!)!][r[1...(pair.keyCount)].map { $0 ?? "" }] = Int64(r[pair.keyCount + 1]!)!
        }
        return out
    }

    /// The keys in `ranges`, at most `limit` of them (any ones).
    public func keys(_ ranges: [KeyRange], limit: Int = .max) throws -> [KeyTexts] {
        guard !ranges.isEmpty, limit > 0 else { return [] }
        let (sql, params) = overRanges(ranges, select: canonicalKeys)
        let limited = limit == .max ? sql : "SELECT * FROM (\(sql)) k LIMIT \(limit)"
        return try conn.query(limited, params).rows.map { $0[1...].map { $0 ?? "" } }
    }

    /// At most `limit` keys of `range` after `after` (nil: from its start), in key order: one page
    /// of a range that `repair` copies or deletes.
    public func keyPage(in range: KeyRange, after: KeyTexts?, limit: Int) throws -> [KeyTexts] {
        var params: [String?] = []
        func tuple(_ key: KeyTexts) -> String {
            "(" + zip(key, keyColumns).map { value, c in
                params.append(value)
                return "$\(params.count)::\(c.sqlType)"
            }.joined(separator: ", ") + ")"
        }
        var conditions = ["true"]
        if let lo = range.lo { conditions.append("\(keyTuple) >= \(tuple(lo))") }
        if let hi = range.hi { conditions.append("\(keyTuple) < \(tuple(hi))") }
        if let after { conditions.append("\(keyTuple) > \(tuple(after))") }
        let sql = "SELECT \(canonicalKeys) FROM \(table.name.quoted) t WHERE \(conditions.joined(separator: " AND "))\(whereClause) ORDER BY \(keyOrder) LIMIT \(max(1, limit))"
        return try conn.query(sql, params).rows.map { $0.map { $0 ?? "" } }
    }

    /// The rows of `keys` that exist (and match the predicate), as canonical texts of the compared columns.
    public func rows(_ keys: [KeyTexts]) throws -> [KeyTexts: [String?]] {
        guard !keys.isEmpty else { return [:] }
        let n = pair.keyCount
        let arrays = keyColumns.enumerated().map { k, c in "$\(k + 1)::\(c.sqlType)[]" }.joined(separator: ", ")
        let on = keyColumns.enumerated().map { k, c in "\(c.ref) = u.k\(k)" }.joined(separator: " AND ")
        let cols = pair.columns.map { $0.canonicalText(side) }.joined(separator: ", ")
        let sql = "SELECT \(cols) FROM unnest(\(arrays)) AS u(\((0..<n).map { "k\($0)" }.joined(separator: ", "))) JOIN \(table.name.quoted) t ON \(on) WHERE true\(whereClause)"
        let params: [String?] = (0..<n).map { k in pgArrayLiteral(keys.map { $0[k] }) }
        var out: [KeyTexts: [String?]] = [:]
        for r in try conn.query(sql, params).rows {
            out[r[..<n].map { $0 ?? "" }] = r
        }
        return out
    }
}

/// A key column as one side's SQL sees it.
struct ColumnComparedRef {
    let ref: String
    let sqlType: String
    let collateC: Bool
}
