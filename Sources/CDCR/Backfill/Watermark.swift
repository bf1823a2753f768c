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

    /// The change log's sequence must hand out values in order across sessions (no per-session
    /// cache), or a change drawn later could get a number below a watermark read before it.
    static func checkSequence(on source: PGConnection) throws {
        let cache = try source.query("""
            SELECT s.seqcache::text FROM pg_sequence s WHERE s.seqrelid = pg_get_serial_sequence('cdcr.change_log', 'change_id')::regclass
            """).scalar
        if let cache, cache != "1" {
            throw BackfillError("the source's change_log sequence caches \(cache) values per session: change IDs would not follow the order they are drawn in; ALTER SEQUENCE … CACHE 1")
        }
    }
}

/// The low watermark of one chunk: every change whose version is at most `version` belongs to a
/// transaction that ended before the chunk's snapshot is taken (so its effect is in the copy), and
/// every transaction the snapshot cannot see draws versions above it.
///
/// How: read the version now (W), then take a transaction id of our own (x0, in a transaction that
/// ends at once), then wait until every transaction with an id below x0 has ended. A change ≤ W was
/// written before W was read, by a transaction that held an id by then (the row lock, or the WAL
/// record, comes first): below x0, so ended before the snapshot. A transaction still invisible to
/// the snapshot got its id after x0, after W was read, and draws versions > W.
///
/// Why not `pg_snapshot_xmax(pg_current_snapshot())` for x0: that is one past the newest
/// *completed* transaction id, and transactions holding newer ids may be running; their changes can
/// be ≤ W and yet invisible to the snapshot. Only an id assigned now is above every running one.
public struct Watermark: Sendable {
    /// W as read.
    public let read: Int64
    /// The version the chunk's rows are stamped with: every change at or below it is in the copy.
    /// W itself for change IDs (the next one drawn is W + 1); W − 1 for WAL positions, since a record
    /// inserted after the read may start exactly at W.
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
        // An id of our own (the autocommit statement's transaction ends at once): every transaction
        // that held an id when W was read has a lower one.
        let x0 = Int64(try conn.query("SELECT pg_current_xact_id()::text").scalar ?? "0") ?? 0
        return Watermark(read: w, version: source == .lsn ? w - 1 : w, nextXid: x0)
    }

    /// Waits until no transaction of the source database with an id below `nextXid` is running
    /// (`nextXid` itself has ended). Logs the transaction holding it back every 10 s; throws after
    /// `timeout`.
    ///
    /// Only this database's transactions: one of another database cannot write this database's
    /// tables (or its change log), so it can neither hold a change ≤ W nor draw one. That matters
    /// when the target, or any busy database, shares the source's cluster: the cluster-wide
    /// horizon (`pg_snapshot_xmin`) made every chunk's read wait for the writes of the chunks
    /// before it. A backend's `backend_xid` is set before the id-assigning lock is released, so once
    /// x0 was assigned every older id is visible there (or in `pg_prepared_xacts`, once prepared).
    public func waitForOlderTransactions(on conn: PGConnection, timeout: Duration, stop: StopSignal? = nil, logger: Logger = Logger(label: "cdcr.backfill")) throws {
        let started = ContinuousClock.now
        var lastLog = started
        var pause = 1
        // age() counts back from the same point for both ids: older than x0 is a greater age.
        let olderRunning = """
            SELECT EXISTS (SELECT FROM pg_stat_activity WHERE datname = current_database() AND age(backend_xid) > age($1::xid8::xid))
                OR EXISTS (SELECT FROM pg_prepared_xacts WHERE database = current_database() AND age(transaction) > age($1::xid8::xid))
            """
        while true {
            if try conn.query(olderRunning, [String(nextXid)]).scalar == "f" { return }
            let now = ContinuousClock.now
            if now - lastLog >= .seconds(10) || now - started >= timeout {
                let holder = try conn.query("""
                    SELECT pid::text, backend_xid::text, coalesce(state, ''), coalesce(datname, ''), coalesce(extract(epoch FROM now() - xact_start)::int::text, '?')
                    FROM pg_stat_activity WHERE backend_xid IS NOT NULL AND datname = current_database() ORDER BY age(backend_xid) DESC LIMIT 1
                    """).rows.first
                let who = holder.map { "pid \($0[0] ?? "?") (xid \($0[1] ?? "?"), \($0[2] ?? ""), database \($0[3] ?? ""), open \($0[4] ?? "?") s)" }
                    ?? "a prepared transaction (pg_prepared_xacts)"
                if now - started >= timeout {
                    throw BackfillError("gave up after \(timeout) waiting for transactions older than the chunk's watermark to end: \(who) holds the source's transaction horizon")
                }
                logger.notice("waiting for an open source transaction to end before reading the next chunk", metadata: ["holder": "\(who)", "watermark_xid": "\(nextXid)"])
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
