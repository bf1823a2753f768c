import CDCCore
import CDCPostgres
import Foundation

/// What the job runner and scheduler need of the store beyond the shared foundation: the job's
/// lock, runs a dead process left `running`, the slot a job last ran for, precise resolution.
extension ReconcileStore {
    /// Takes the job's session-level advisory lock if free: held until `unlock` or until the
    /// connection closes (so a crashed process frees it). Works across processes.
    public static func tryLock(job: String, on conn: PGConnection) throws -> Bool {
        try conn.query("SELECT pg_try_advisory_lock(hashtext('cdcr.reconcile'), hashtext($1))", [job]).scalar == "t"
    }

    /// Releases the job's lock taken on this connection.
    public static func unlock(job: String, on conn: PGConnection) throws {
        try conn.query("SELECT pg_advisory_unlock(hashtext('cdcr.reconcile'), hashtext($1))", [job])
    }

    /// Runs of `job` still `running` while its lock is free (we hold it) were cut off by a process
    /// that ended: they become `error`.
    @discardableResult
    static func markInterrupted(job: String, on conn: PGConnection) throws -> Int {
        try conn.query("""
            UPDATE cdcr.reconcile_runs SET status = 'error', finished_at = now(),
                   error = 'interrupted: the process running it ended before it finished'
            WHERE job = $1 AND status = 'running'
            """, [job]).affected
    }

    /// The schedule slot the job's newest scheduled or catch-up run was for (Unix seconds), or nil.
    public static func lastSlot(job: String, on conn: PGConnection) throws -> Int64? {
        try conn.query("""
            SELECT floor(extract(epoch FROM max(scheduled_for)))::bigint FROM cdcr.reconcile_runs
            WHERE job = $1 AND trigger IN ('schedule', 'catch_up')
            """, [job]).scalar.flatMap { Int64($0) }
    }

    /// The job's newest successful (`ok` or `drift`) run's end, Unix seconds.
    public static func lastSuccess(job: String, on conn: PGConnection) throws -> Double? {
        try conn.query("""
            SELECT extract(epoch FROM max(finished_at))::float8 FROM cdcr.reconcile_runs WHERE job = $1 AND status IN ('ok', 'drift')
            """, [job]).scalar.flatMap { Double($0) }
    }

    /// Like `resolveGone`, restricted to discrepancies whose key is one of `onlyKeys` (nil: any):
    /// checks that ran resolve their own findings, not those of checks another job runs.
    static func resolveGone(runID: String, targetTables: [TableName], kinds: [DiscrepancyKind], onlyKeys: [String]?,
                            on conn: PGConnection) throws -> Int {
        guard let onlyKeys else { return try resolveGone(runID: runID, targetTables: targetTables, kinds: kinds, on: conn) }
        guard !onlyKeys.isEmpty else { return 0 }
        return try conn.query("""
            UPDATE cdcr.discrepancies SET resolution = 'resolved_by_stream', resolved_at = now(),
                   reason = 'not found again by run ' || $1
            WHERE (\(livePredicate)) AND last_run_id <> $1
              AND target_table = ANY($2::text[]) AND kind = ANY($3::text[]) AND key_text = ANY($4::text[])
            """, [runID, pgArrayLiteral(targetTables.map(\.description)), pgArrayLiteral(kinds.map(\.rawValue)),
                  pgArrayLiteral(onlyKeys)]).affected
    }

    /// Of `ids`, those still `open` (not queued or approved: those wait for a person).
    static func openIDs(_ ids: [Int64], on conn: PGConnection) throws -> Set<Int64> {
        guard !ids.isEmpty else { return [] }
        return Set(try conn.query("SELECT id FROM cdcr.discrepancies WHERE id = ANY($1::bigint[]) AND resolution = 'open'",
                                  [pgArrayLiteral(ids.map(String.init))]).rows.compactMap { $0[0].flatMap { Int64($0) } })
    }

    /// Open and queued discrepancies per (target table, kind).
    static func liveCounts(on conn: PGConnection) throws -> [(table: String, kind: String, count: Int)] {
        try conn.query("""
            SELECT target_table, kind, count(*) FROM cdcr.discrepancies WHERE resolution IN ('open', 'queued') GROUP BY 1, 2
            """).rows.map { ($0[0] ?? "", $0[1] ?? "", Int($0[2] ?? "") ?? 0) }
    }

    /// Items waiting in the review queue (`queued`).
    static func queuedCount(on conn: PGConnection) throws -> Int {
        Int(try conn.query("SELECT count(*) FROM cdcr.discrepancies WHERE resolution = 'queued'").scalar ?? "0") ?? 0
    }

    /// Of `ids`, those whose same difference (table, kind, key and the same target row) a person
    /// rejected earlier, with a line saying so: a rejection keeps the target, so later runs must
    /// not repair it behind the person's back.
    static func rejectedBefore(_ ids: [Int64], on conn: PGConnection) throws -> [Int64: String] {
        guard !ids.isEmpty else { return [:] }
        var out: [Int64: String] = [:]
        for r in try conn.query("""
            SELECT DISTINCT ON (n.id) n.id, r.id, coalesce(r.decided_by, 'someone')
            FROM cdcr.discrepancies n JOIN cdcr.discrepancies r
              ON r.target_table = n.target_table AND r.kind = n.kind AND r.key_text = n.key_text AND r.id <> n.id
             AND r.resolution = 'rejected' AND r.target_values IS NOT DISTINCT FROM n.target_values
            WHERE n.id = ANY($1::bigint[]) ORDER BY n.id, r.id DESC
            """, [pgArrayLiteral(ids.map(String.init))]).rows {
            guard let id = r[0].flatMap({ Int64($0) }) else { continue }
            out[id] = "rejected earlier (discrepancy \(r[1] ?? "")) by \(r[2] ?? ""): the target is kept, not repaired automatically"
        }
        return out
    }
}
