import CDCCore
import CDCPostgres
import Foundation

/// What a backfill did to one table so far (a resumed run adds to the counts of the runs before).
public struct BackfillCounts: Sendable, Equatable {
    public var chunks: Int64 = 0
    public var rowsRead: Int64 = 0
    public var inserted: Int64 = 0
    public var updated: Int64 = 0
    /// Rows the target already held in a newer version (the stream was there first).
    public var skipped: Int64 = 0
    /// Target rows in a chunk's key range that the source no longer had (deleted through the guard).
    public var deleted: Int64 = 0
    /// Rows the target refused (a value the column cannot hold, a constraint).
    public var failed: Int64 = 0
    /// Chunks whose key range had equal checksums on both sides (at once or after settling).
    public var verified: Int64 = 0

    public init() {}

    static func + (a: BackfillCounts, b: BackfillCounts) -> BackfillCounts {
        var c = a
        c.chunks += b.chunks
        c.rowsRead += b.rowsRead
        c.inserted += b.inserted
        c.updated += b.updated
        c.skipped += b.skipped
        c.deleted += b.deleted
        c.failed += b.failed
        c.verified += b.verified
        return c
    }

    static func - (a: BackfillCounts, b: BackfillCounts) -> BackfillCounts {
        var c = a
        c.chunks -= b.chunks
        c.rowsRead -= b.rowsRead
        c.inserted -= b.inserted
        c.updated -= b.updated
        c.skipped -= b.skipped
        c.deleted -= b.deleted
        c.failed -= b.failed
        c.verified -= b.verified
        return c
    }
}

/// A table's checkpoint in `cdcr.backfill_state` (target).
public struct BackfillCheckpoint: Sendable {
    public var runID: String
    public var versionSource: VersionSource
    public var predicate: String?
    /// The next chunk starts at this key (inclusive); nil: at the start of the table.
    public var nextKey: KeyTexts?
    public var done: Bool
    public var counts: BackfillCounts
}

/// Reads and writes `cdcr.backfill_state`, and the advisory lock that keeps two backfills of one
/// table apart. Writes of a chunk's checkpoint run inside that chunk's target transaction.
enum BackfillState {
    static func load(_ table: TableName, on conn: PGConnection) throws -> BackfillCheckpoint? {
        guard let r = try conn.query("""
            SELECT run_id, version_source, predicate, next_key::text, done, chunks, rows_read, inserted, updated, skipped, deleted, failed, verified
            FROM cdcr.backfill_state WHERE table_name = $1
            """, [table.description]).rows.first else { return nil }
        var counts = BackfillCounts()
        let n = r[5...].map { Int64($0 ?? "0") ?? 0 }
        (counts.chunks, counts.rowsRead, counts.inserted, counts.updated) = (n[0], n[1], n[2], n[3])
        (counts.skipped, counts.deleted, counts.failed, counts.verified) = (n[4], n[5], n[6], n[7])
        return BackfillCheckpoint(runID: r[0]!, versionSource: VersionSource(rawValue: r[1]!) ?? .changeLog, predicate: r[2],
                                  nextKey: try r[3].map(decodeKey), done: r[4] == "t", counts: counts)
    }

    /// Starts a table over (a first run or `--restart`): a fresh row with zero counts.
    static func start(_ table: TableName, source: TableName, checkpoint c: BackfillCheckpoint, on conn: PGConnection) throws {
        try conn.query("""
            INSERT INTO cdcr.backfill_state AS b (table_name, source_table, run_id, version_source, predicate)
            VALUES ($1, $2, $3, $4, $5)
            ON CONFLICT (table_name) DO UPDATE SET source_table = EXCLUDED.source_table, run_id = EXCLUDED.run_id,
                version_source = EXCLUDED.version_source, predicate = EXCLUDED.predicate, next_key = NULL, done = false,
                chunks = 0, rows_read = 0, inserted = 0, updated = 0, skipped = 0, deleted = 0, failed = 0, verified = 0,
                started_at = now(), updated_at = now(), finished_at = NULL
            """, [table.description, source.description, c.runID, c.versionSource.rawValue, c.predicate])
    }

    /// Records a committed chunk: where the next one starts and what this one did.
    static func advance(_ table: TableName, nextKey: KeyTexts?, done: Bool, delta d: BackfillCounts, on conn: PGConnection) throws {
        let (sql, params) = advanceStatement(table, nextKey: nextKey, done: done, delta: d)
        try conn.query(sql, params)
    }

    /// `advance`'s statement and parameters, for a caller that pipelines it.
    static func advanceStatement(_ table: TableName, nextKey: KeyTexts?, done: Bool, delta d: BackfillCounts) -> (sql: String, params: [String?]) {
        ("""
            UPDATE cdcr.backfill_state SET next_key = $2::jsonb, done = $3::bool, chunks = chunks + $4, rows_read = rows_read + $5,
                inserted = inserted + $6, updated = updated + $7, skipped = skipped + $8, deleted = deleted + $9, failed = failed + $10,
                updated_at = now(), finished_at = CASE WHEN $3::bool THEN now() END
            WHERE table_name = $1
            """, [table.description, nextKey.map(encodeKey), done ? "true" : "false", String(d.chunks), String(d.rowsRead),
                  String(d.inserted), String(d.updated), String(d.skipped), String(d.deleted), String(d.failed)])
    }

    /// Counts a chunk verified after its commit (outside the chunk's transaction).
    static func addVerified(_ table: TableName, _ n: Int64, on conn: PGConnection) throws {
        guard n > 0 else { return }
        try conn.execute("BEGIN READ WRITE")  // the checkers' sessions are read-only by default
        do {
            try conn.query("UPDATE cdcr.backfill_state SET verified = verified + $2 WHERE table_name = $1", [table.description, String(n)])
            try conn.execute("COMMIT")
        } catch {
            if conn.isHealthy { _ = try? conn.execute("ROLLBACK") }
            throw error
        }
    }

    /// Takes the session-level advisory lock of `table`'s backfill, or says who holds it.
    static func lock(_ table: TableName, on conn: PGConnection) throws {
        let args = ["cdcr.backfill", table.description]
        if try conn.query("SELECT pg_try_advisory_lock(hashtext($1), hashtext($2))", args).scalar == "t" { return }
        let holder = try conn.query("""
            SELECT l.pid::text, coalesce(a.application_name, ''), coalesce(a.client_addr::text, 'local')
            FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
            WHERE l.locktype = 'advisory' AND l.granted AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
              AND l.classid = hashtext($1)::oid AND l.objid = hashtext($2)::oid AND l.objsubid = 2 LIMIT 1
            """, args).rows.first
        let who = holder.map { " (target backend pid \($0[0] ?? "?"), \($0[1] ?? ""), from \($0[2] ?? "?"))" } ?? ""
        throw BackfillError("another backfill of \(table) is running\(who); wait for it to finish, or stop it first — two at once are refused")
    }

    static func unlock(_ table: TableName, on conn: PGConnection) {
        _ = try? conn.query("SELECT pg_advisory_unlock(hashtext($1), hashtext($2))", ["cdcr.backfill", table.description])
    }

    /// Whether a run other than `runID` recorded range watermarks on the table.
    static func rangesOfOtherRuns(_ table: TableName, runID: String, on conn: PGConnection) throws -> Bool {
        try conn.query("SELECT EXISTS (SELECT FROM cdcr.backfill_ranges WHERE table_name = $1 AND run_id <> $2)",
                       [table.description, runID]).scalar == "t"
    }

    /// Whether a backfill recorded a range watermark on the table at or after `since` (target clock).
    /// False where the bookkeeping predates range watermarks.
    static func rangesRecorded(_ table: TableName, since: String, on conn: PGConnection) throws -> Bool {
        guard try conn.query("SELECT to_regclass('cdcr.backfill_ranges') IS NOT NULL").scalar == "t" else { return false }
        return try conn.query("SELECT EXISTS (SELECT FROM cdcr.backfill_ranges WHERE table_name = $1 AND recorded_at >= $2::timestamptz)",
                              [table.description, since]).scalar == "t"
    }

    static func encodeKey(_ key: KeyTexts) -> String { JSONValue.array(key.map { .string($0) }).serialized }

    static func decodeKey(_ text: String) throws -> KeyTexts {
        guard case let .array(items) = try JSONParser.parse(text) else { throw BackfillError("cdcr.backfill_state.next_key is not an array: \(text)") }
        return items.map { $0.stringValue ?? "" }
    }
}
