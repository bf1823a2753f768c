import CDCCore
import CDCPostgres
import Foundation

/// `cdcr.check_state` in the target: per source table, where the last successful incremental (or
/// first full) verify left off, on each database's clock. `--since last` starts there.
enum CheckState {
    static func requireInstalled(on target: PGConnection) throws {
        guard try target.query("SELECT to_regclass('cdcr.check_state') IS NOT NULL").scalar == "t" else {
            throw VerifyError("--since needs cdcr.check_state in the target, where it records each table's last successful run: run cdcr init (bookkeeping schema version \(BookkeepingSchema.currentVersion))")
        }
    }

    /// The bound the table's last successful run recorded, nil when it has none.
    static func last(_ table: TableName, on target: PGConnection) throws -> SinceBound? {
        let r = try target.query("SELECT source_checked_through::text, target_checked_through::text FROM cdcr.check_state WHERE table_name = $1",
                                 [table.description])
        guard r.rows.count == 1, let s = r[0, 0], let t = r[0, 1] else { return nil }
        return SinceBound(source: s, target: t)
    }

    /// A time on `conn`'s clock before which every change that is not yet visible was written: the
    /// earlier of now and the start of the oldest transaction open in this database (a change is
    /// stamped inside its transaction, which may commit after this run has read). Taken before the
    /// run reads anything, so the next run starting here misses nothing. Transactions of other
    /// roles count only where the role may see them (`pg_read_all_stats`); see docs/RECONCILER.md.
    static func watermark(on conn: PGConnection) throws -> String {
        try conn.query("""
            SELECT least(clock_timestamp(), (SELECT min(xact_start) FROM pg_stat_activity
                WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'))::text
            """).scalar ?? ""
    }

    /// Records a successful run of `table`: the next `--since last` starts at `through`.
    static func record(_ table: TableName, target tableOnTarget: TableName, through: SinceBound, mode: String, keysExamined: Int,
                       on target: PGConnection) throws {
        try target.query("""
            INSERT INTO cdcr.check_state AS cs (table_name, target_table, source_checked_through, target_checked_through, mode, keys_examined, finished_at)
            VALUES ($1, $2, $3::timestamptz, $4::timestamptz, $5, $6::bigint, now())
            ON CONFLICT (table_name) DO UPDATE SET target_table = EXCLUDED.target_table,
                source_checked_through = EXCLUDED.source_checked_through, target_checked_through = EXCLUDED.target_checked_through,
                mode = EXCLUDED.mode, keys_examined = EXCLUDED.keys_examined, finished_at = EXCLUDED.finished_at
            """, [table.description, tableOnTarget.description, through.source, through.target, mode, String(keysExamined)])
    }
}

extension TableVerifier {
    /// Compares exactly `keys` (their rows on both sides, key by key), re-checking differing ones
    /// after `settleSeconds`.
    public func runKeys(_ keys: [KeyTexts], settleSeconds: Double = 0) throws -> TableDiff {
        let started = ContinuousClock.now
        var diff = TableDiff(source: pair.source.name, target: pair.target.name, keyNames: pair.keyColumns.map(\.name))
        diff.notes = pair.notes
        var found = try compareRows(keys)
        diff.rowsFetched = keys.count
        if settleSeconds > 0 && !found.isEmpty {
            progress("\(found.count) differing rows; re-checking them in \(settleSeconds) s (--settle)")
            Thread.sleep(forTimeInterval: settleSeconds)
            let before = found.count
            found = try compareRows(found.map(\.key))
            diff.settled = before - found.count
        }
        try diff.list(found, atMost: maxListed)
        diff.duration = ContinuousClock.now - started
        return diff
    }
}
