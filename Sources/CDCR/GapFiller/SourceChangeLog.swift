import CDCCore
import CDCPostgres

/// The change log in the source database: `cdcr.change_log`, filled by row-level triggers (or by
/// applications and outbox routers that follow the same contract, see docs/CHANGE_LOG.md).
///
/// `change_id` is a bigserial: for one row it grows in commit order, because a writer holds the row's
/// lock until it commits, so the next writer of that row draws its change_id later. It is therefore a
/// valid per-row version. `txid` is the writer's transaction id, used to find changes whose
/// transaction committed late.
public enum SourceChangeLog {
    static let schemaSQL = """
        CREATE SCHEMA IF NOT EXISTS cdcr;
        CREATE TABLE IF NOT EXISTS cdcr.change_log (
            change_id    bigserial PRIMARY KEY,
            table_name   text NOT NULL,
            operation    text NOT NULL CHECK (operation IN ('INSERT', 'UPDATE', 'DELETE')),
            key          jsonb NOT NULL,
            data         jsonb,
            committed_at timestamptz NOT NULL DEFAULT clock_timestamp(),
            txid         bigint NOT NULL DEFAULT txid_current()
        );
        CREATE INDEX IF NOT EXISTS change_log_committed_at ON cdcr.change_log (committed_at);
        CREATE INDEX IF NOT EXISTS change_log_txid ON cdcr.change_log (txid);
        CREATE TABLE IF NOT EXISTS cdcr.relay_position (
            topic        text PRIMARY KEY,
            txid_horizon bigint NOT NULL,
            updated_at   timestamptz NOT NULL DEFAULT now()
        );
        CREATE OR REPLACE FUNCTION cdcr.capture() RETURNS trigger LANGUAGE plpgsql AS $fn$
        DECLARE
            tbl text := TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME;
            new_row jsonb;
            old_row jsonb;
            new_key jsonb;
            old_key jsonb;
        BEGIN
            -- TG_ARGV holds the primary-key column names, fixed at install time.
            IF TG_OP <> 'DELETE' THEN
                new_row := to_jsonb(NEW);
                SELECT jsonb_object_agg(k, new_row -> k) INTO new_key FROM unnest(TG_ARGV) AS k;
            END IF;
            IF TG_OP <> 'INSERT' THEN
                old_row := to_jsonb(OLD);
                SELECT jsonb_object_agg(k, old_row -> k) INTO old_key FROM unnest(TG_ARGV) AS k;
            END IF;
            IF TG_OP = 'DELETE' THEN
                INSERT INTO cdcr.change_log (table_name, operation, key, data) VALUES (tbl, 'DELETE', old_key, NULL);
            ELSIF TG_OP = 'UPDATE' AND old_key IS DISTINCT FROM new_key THEN
                -- A primary-key change is a delete of the old row and an insert of the new one.
                INSERT INTO cdcr.change_log (table_name, operation, key, data) VALUES (tbl, 'DELETE', old_key, NULL);
                INSERT INTO cdcr.change_log (table_name, operation, key, data) VALUES (tbl, 'INSERT', new_key, new_row);
            ELSE
                INSERT INTO cdcr.change_log (table_name, operation, key, data) VALUES (tbl, TG_OP, new_key, new_row);
            END IF;
            RETURN NULL;
        END
        $fn$;
        """

    /// Creates the change log and a capture trigger on each table; idempotent. Returns the tables.
    @discardableResult
    public static func install(on conn: PGConnection, tables: [TableName]) throws -> [TargetTable] {
        try conn.transaction { c in
            try c.query("SELECT pg_advisory_xact_lock(hashtext('cdcr.change_log'))")
            try c.execute(schemaSQL)
            var installed: [TargetTable] = []
            for name in tables {
                guard let table = try Catalog.load(name, on: c) else {
                    throw ConfigError("--tables", "table \(name) does not exist in the source")
                }
                guard !table.primaryKey.isEmpty else {
                    throw ConfigError("--tables", "table \(name) has no primary key; the change log needs one")
                }
                let keyArgs = table.primaryKey.map { "'" + table.columns[$0].name.replacingOccurrences(of: "'", with: "''") + "'" }.joined(separator: ", ")
                try c.execute("""
                    DROP TRIGGER IF EXISTS cdcr_capture ON \(name.quoted);
                    CREATE TRIGGER cdcr_capture AFTER INSERT OR UPDATE OR DELETE ON \(name.quoted)
                        FOR EACH ROW EXECUTE FUNCTION cdcr.capture(\(keyArgs));
                    """)
                installed.append(table)
            }
            return installed
        }
    }

    /// Removes the triggers of every table and the change log itself.
    public static func uninstall(on conn: PGConnection) throws {
        try conn.transaction { c in
            let triggers = try c.query("""
                SELECT n.nspname, cl.relname FROM pg_trigger t JOIN pg_class cl ON cl.oid = t.tgrelid
                JOIN pg_namespace n ON n.oid = cl.relnamespace WHERE t.tgname = 'cdcr_capture'
                """)
            for r in triggers.rows {
                try c.execute("DROP TRIGGER IF EXISTS cdcr_capture ON \(TableName(schema: r[0]!, name: r[1]!).quoted)")
            }
            try c.execute("DROP TABLE IF EXISTS cdcr.change_log, cdcr.relay_position; DROP FUNCTION IF EXISTS cdcr.capture()")
        }
    }

    /// Throws a configuration error naming the fix when the source has no change log: without this
    /// the first query would fail with a bare 42P01 "relation cdcr.change_log does not exist".
    public static func requireInstalled(on conn: PGConnection) throws {
        guard try conn.query("SELECT to_regclass('cdcr.change_log') IS NOT NULL").scalar == "t" else {
            throw ConfigError("source_url (--source, CDCR_SOURCE_URL)", """
                the source database has no cdcr change log (cdcr.change_log); install it with \
                `cdcr source install --tables schema.table,…` against the source, or leave out --source \
                (or pass --no-gap-fill to cdcr run)
                """)
        }
    }

    /// Deletes the rows older than `days` (by the source's clock) that every relay has published, in
    /// chunks of `chunk` rows so no statement holds its locks long. Returns how many went. Nothing
    /// older than the ledger retention can be replayed (replays are refused there), so by default
    /// the gap filler keeps exactly that much; see `Settings.changeLogRetentionDays`.
    @discardableResult
    public static func prune(on conn: PGConnection, olderThanDays days: Int, chunk: Int = 10_000) throws -> Int {
        var total = 0
        while true {
            // A relay publishes by transaction horizon: rows of transactions below every relay's
            // horizon are out; with no relay recorded, none holds anything back.
            let n = try conn.query("""
                DELETE FROM cdcr.change_log WHERE change_id IN (
                    SELECT change_id FROM cdcr.change_log
                    WHERE committed_at < now() - make_interval(days => $1::int)
                      AND txid < coalesce((SELECT min(txid_horizon) FROM cdcr.relay_position), 9223372036854775807)
                    ORDER BY committed_at LIMIT $2::int)
                """, [String(days), String(chunk)]).affected
            total += n
            if n < chunk { return total }
        }
    }

    /// The oldest transaction id still running on the source: every transaction below it has ended,
    /// so every change it wrote is visible now.
    public static func txidHorizon(on conn: PGConnection) throws -> Int64 {
        Int64(try conn.query("SELECT pg_snapshot_xmin(pg_current_snapshot())::text").scalar ?? "0") ?? 0
    }

    /// One row of the change log.
    public struct Entry: Sendable {
        public let changeID: Int64
        public let table: String
        public let operation: String
        public let key: String
        public let data: String?
        public let committedAt: String
        public let txid: Int64

        /// The native event for this change (change_id and version are the log's change_id).
        public func event() throws -> ChangeEvent {
            let op: ChangeOperation = operation == "DELETE" ? .delete : operation == "INSERT" ? .insert : .update
            let keyJSON = try JSONParser.parse(key)
            let row = try data.map { try JSONParser.parse($0).objectMembers ?? [] }
            return ChangeEvent(
                changeID: String(changeID), table: TableName(parsing: table), operation: op,
                key: (keyJSON.objectMembers ?? []).map { ($0.0, .json($0.1)) }, row: row?.map { ($0.0, .json($0.1)) },
                version: changeID, timestampMicros: CivilTime.parseInstant(committedAt), format: .native)
        }

        /// The native JSON message the relay publishes.
        public var nativeJSON: String {
            "{\"change_id\":\"\(changeID)\",\"table\":" + JSONValue.string(table).serialized + ",\"operation\":\"\(operation)\",\"key\":\(key),\"data\":\(data ?? "null"),\"timestamp\":" + JSONValue.string(committedAt).serialized + ",\"version\":\(changeID)}"
        }
    }

    public static let columns = "change_id, table_name, operation, key::text, data::text, to_char(committed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), txid"

    /// The change-log rows matching a filter, read in change_id order one chunk at a time. The
    /// matching change-ID range (and count) is found once, through whatever index serves the filter;
    /// each chunk then walks the primary key on from the last one. Asking each time for "the next n
    /// matching rows after ID x" instead let the planner sort all the remaining matches per chunk:
    /// quadratic in the window. The walk costs the rows between the first and last match once — more
    /// than the matches only when a long transaction's old changes share the filter with new ones.
    /// A change that becomes visible after `open` is left to the next window, as with any snapshot.
    public struct Window: Sendable {
        let filter: String
        let params: [String?]
        /// How many rows match.
        public let count: Int
        let low: Int64, high: Int64

        /// `filter` is a WHERE clause over `cdcr.change_log` with `params` bound as $1…
        public init(on conn: PGConnection, filter: String, params: [String?]) throws {
            let r = try conn.query("SELECT min(change_id), max(change_id), count(*) FROM cdcr.change_log WHERE \(filter)", params).rows[0]
            self.filter = filter
            self.params = params
            count = Int(r[2] ?? "0") ?? 0
            low = Int64(r[0] ?? "") ?? 1
            high = Int64(r[1] ?? "") ?? 0
        }

        /// Before the first change ID: where a walk starts.
        public var start: Int64 { low - 1 }

        /// Up to `limit` matching rows after change ID `after`, in change_id order; empty at the end.
        public func chunk(after: Int64, limit: Int, on conn: PGConnection) throws -> [Entry] {
            guard after < high else { return [] }
            let n = params.count
            // `IS TRUE` keeps the filter away from the indexes: the walk along the key is the plan
            // wanted whatever the statistics say (a fresh log has none).
            return SourceChangeLog.entries(try conn.query(
                "SELECT \(SourceChangeLog.columns) FROM cdcr.change_log WHERE change_id > $\(n + 1) AND change_id <= $\(n + 2) AND ((\(filter)) IS TRUE) ORDER BY change_id LIMIT \(limit)",
                params + [String(after), String(high)]))
        }
    }

    public static func entries(_ rows: PGRows) -> [Entry] {
        rows.rows.map { r in
            Entry(changeID: Int64(r[0]!)!, table: r[1]!, operation: r[2]!, key: r[3]!, data: r[4], committedAt: r[5]!, txid: Int64(r[6]!)!)
        }
    }
}
