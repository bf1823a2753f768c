import CDCPostgres
import Foundation
import Logging

/// Which numbers the live stream uses as row versions, so the backfill stamps its copies in the same
/// scale (see docs/BACKFILL.md).
public enum VersionSource: String, Sendable, CaseIterable {
    /// Native events relayed from the source's `cdcr.change_log`: version = `change_id`.
    case changeLog = "change-log"
    /// Debezium events: version = `source.lsn`, the WAL position of the change.
    case lsn

    /// `change-log` when the source has `cdcr.change_log`, else `lsn`.
    public static func detect(on source: PGConnection) throws -> VersionSource {
        try source.query("SELECT to_regclass('cdcr.change_log') IS NOT NULL").scalar == "t" ? .changeLog : .lsn
    }
}

/// The low watermark of one chunk: every change whose version is at most `version` belongs to a
/// transaction that ended before the chunk's snapshot is taken (so its effect is in the copy), and
/// every transaction the snapshot cannot see draws versions above it.
///
/// How: read the version now (W), then the next transaction id (x0), then wait until every
/// transaction with an id below x0 has ended. A change ≤ W was written before W was read, by a
/// transaction that held an id by then (the row lock, or the WAL record, comes first): below x0, so
/// ended before the snapshot. A transaction still invisible to the snapshot got its id at or after
/// x0, after W was read, and draws versions > W.
public struct Watermark: Sendable {
    public let version: Int64
    public let nextXid: Int64

    /// Reads W and x0, in that order, each in its own statement.
    public static func read(_ source: VersionSource, on conn: PGConnection) throws -> Watermark {
        let w: Int64
        switch source {
        case .changeLog:
            // NULL when the sequence was never used: the first change will draw its start value (1).
            let text = try conn.query(
                "SELECT coalesce(pg_sequence_last_value(pg_get_serial_sequence('cdcr.change_log', 'change_id')::regclass), 0)::text").scalar
            w = Int64(text ?? "0") ?? 0
        case .lsn:
            // The insert position: every WAL record written later lies beyond it.
            w = Int64(try conn.query("SELECT (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::bigint::text").scalar ?? "0") ?? 0
        }
        let x0 = Int64(try conn.query("SELECT pg_snapshot_xmax(pg_current_snapshot())::text").scalar ?? "0") ?? 0
        return Watermark(version: w, nextXid: x0)
    }

    /// Waits until the oldest running transaction (cluster-wide, like the relay's horizon) is at or
    /// above `nextXid`. Logs the transaction holding it back every 10 s; throws after `timeout`.
    public func waitForOlderTransactions(on conn: PGConnection, timeout: Duration, stop: StopSignal?, logger: Logger) throws {
        let started = ContinuousClock.now
        var lastLog = started
        var pause = 1
        while true {
            let xmin = Int64(try conn.query("SELECT pg_snapshot_xmin(pg_current_snapshot())::text").scalar ?? "0") ?? 0
            if xmin >= nextXid { return }
            let now = ContinuousClock.now
            if now - lastLog >= .seconds(10) || now - started >= timeout {
                let holder = try conn.query("""
                    SELECT pid::text, backend_xid::text, coalesce(state, ''), coalesce(datname, ''), coalesce(extract(epoch FROM now() - xact_start)::int::text, '?')
                    FROM pg_stat_activity WHERE backend_xid IS NOT NULL ORDER BY age(backend_xid) DESC LIMIT 1
                    """).rows.first
                let who = holder.map { "pid \($0[0] ?? "?") (xid \($0[1] ?? "?"), \($0[2] ?? ""), database \($0[3] ?? ""), open \($0[4] ?? "?") s)" }
                    ?? "a prepared transaction (pg_prepared_xacts)"
                if now - started >= timeout {
                    throw BackfillError("gave up after \(timeout) waiting for transactions older than the chunk's watermark to end: \(who) holds the source's transaction horizon")
                }
                logger.notice("waiting for an open source transaction to end before reading the next chunk", metadata: ["holder": "\(who)", "xmin": "\(xmin)", "watermark_xid": "\(nextXid)"])
                lastLog = now
            }
            if stop?.isStopped == true { throw BackfillStopped() }
            usleep(UInt32(pause * 1000))
            pause = min(pause * 2, 100)
        }
    }
}

/// SIGTERM (or a job cancel) arrived while a chunk was not yet started: nothing to record.
struct BackfillStopped: Error {}
