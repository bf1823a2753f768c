import CDCCore
import CDCPostgres
import Foundation

enum Expect {
    /// Rows that differ between `table` and the expected rows (JSON array of objects), compared by
    /// value: PostgreSQL reads the expected JSON into the table's own row type, so numerics of another
    /// scale, instants in another zone and jsonb key order compare equal.
    static func differences(_ conn: PGConnection, table: String, expected: JSONValue) throws -> Int {
        let t = TableName(parsing: table).quoted
        let sql = """
            SELECT count(*) FROM (
              (SELECT * FROM \(t) EXCEPT ALL SELECT * FROM jsonb_populate_recordset(NULL::\(t), $1::jsonb))
              UNION ALL
              (SELECT * FROM jsonb_populate_recordset(NULL::\(t), $1::jsonb) EXCEPT ALL SELECT * FROM \(t))
            ) d
            """
        return Int(try conn.query(sql, [expected.serialized]).scalar ?? "-1") ?? -1
    }

    /// Checks every table of an `*.expected.json` file; returns a description per mismatching table.
    static func check(_ conn: PGConnection, expectedFile: String) throws -> [String] {
        let json = try JSONParser.parse(try String(contentsOfFile: expectedFile, encoding: .utf8))
        var problems: [String] = []
        for (table, rows) in json.objectMembers ?? [] {
            let n = try differences(conn, table: table, expected: rows)
            if n != 0 {
                let actual = try conn.query("SELECT row_to_json(t)::text FROM \(TableName(parsing: table).quoted) t").rows.map { $0[0] ?? "" }
                problems.append("\(table): \(n) differing rows; target holds \(actual)")
            }
        }
        return problems
    }

    static func count(_ conn: PGConnection, _ sql: String, _ params: [String?] = []) throws -> Int {
        Int(try conn.query(sql, params).scalar ?? "-1") ?? -1
    }
}

/// The database's clock in UTC moved by `offset` (an interval such as "-1 hour"), in the form
/// `cdcr replay --from/--to` takes.
func utcInstant(_ conn: PGConnection, _ offset: String) throws -> String {
    try conn.query("SELECT to_char(now() AT TIME ZONE 'UTC' + $1::interval, 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')", [offset]).scalar!
}

/// `table`'s sequential scans and inserted rows as PostgreSQL's statistics count them, once at least
/// `inserted` inserts are counted: a backend reports its statistics when idle for a while or when
/// it ends, a moment after its client went, and reports its scans with its inserts.
func tableScans(_ conn: PGConnection, _ table: String, inserted: Int) throws -> (seqScans: Int, inserts: Int) {
    var last = (seqScans: -1, inserts: -1)
    _ = try waitUntil(timeout: .seconds(20)) {
        let row = try conn.query("SELECT seq_scan::text, n_tup_ins::text FROM pg_stat_user_tables WHERE relid = $1::regclass", [table]).rows[0]
        last = (Int(row[0] ?? "") ?? -1, Int(row[1] ?? "") ?? -1)
        return last.inserts >= inserted
    }
    return last
}

/// Rows of `table` (single-column bigint-like key `key`) whose version cdcr knows: a live
/// `row_versions` entry with a version, or a backfill range watermark holding the key.
func rowsWithKnownVersion(_ conn: PGConnection, _ table: String, key: String = "id") throws -> Int {
    try Expect.count(conn, """
        SELECT count(*) FROM \(table) t
        WHERE EXISTS (SELECT FROM cdcr.row_versions rv WHERE rv.table_name = $1 AND rv.row_key = t.\(key)::text AND rv.version > 0 AND NOT rv.deleted)
           OR EXISTS (SELECT FROM cdcr.backfill_ranges r WHERE r.table_name = $1 AND r.version > 0
                      AND (r.lower_key IS NULL OR t.\(key) >= (r.lower_key ->> 0)::bigint) AND (r.upper_key IS NULL OR t.\(key) < (r.upper_key ->> 0)::bigint))
        """, [table])
}

/// The range watermarks backfills recorded on `table`.
func backfillRanges(_ conn: PGConnection, _ table: String) throws -> Int {
    try Expect.count(conn, "SELECT count(*) FROM cdcr.backfill_ranges WHERE table_name = $1", [table])
}
