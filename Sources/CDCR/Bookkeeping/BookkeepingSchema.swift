import CDCPostgres

/// The `cdcr` schema in the target: the ledger of processed change IDs and the last applied version of
/// every row (deletes included). Created and upgraded by `cdcr init` and at `cdcr run` start-up.
public enum BookkeepingSchema {
    /// Migrations in order; `cdcr.schema_version` records how many ran. Never edit a released one.
    static let migrations: [String] = [
        """
        CREATE TABLE cdcr.ledger (
            change_id    text PRIMARY KEY,
            table_name   text NOT NULL,
            outcome      "char" NOT NULL,           -- 'a' applied, 's' stale (superseded by a newer version)
            processed_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX ledger_processed_at ON cdcr.ledger USING brin (processed_at);  -- append-ordered: BRIN is nearly free to maintain
        CREATE TABLE cdcr.row_versions (
            table_name text NOT NULL,               -- target table, schema-qualified
            row_key    text NOT NULL,               -- the key column's text, or jsonb_build_array(key columns)::text
            version    bigint,                      -- NULL when the change carried no version
            deleted    boolean NOT NULL,
            updated_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (table_name, row_key)
        ) WITH (fillfactor = 80);  -- room for HOT updates: versions change in place, the key never does
        CREATE INDEX row_versions_tombstones ON cdcr.row_versions (updated_at) WHERE deleted;
        """,
        """
        CREATE TABLE cdcr.gap_fill_state (
            id           int PRIMARY KEY DEFAULT 1 CHECK (id = 1),
            window_start timestamptz NOT NULL,
            window_end   timestamptz NOT NULL,      -- the next window starts here at the latest
            scan_xmin    bigint NOT NULL,           -- transactions from here on were still open at the scan
            changes      bigint NOT NULL,
            applied      bigint NOT NULL,
            finished_at  timestamptz NOT NULL DEFAULT now()
        );
        """,
        """
        CREATE TABLE cdcr.lag_samples (
            group_id   text NOT NULL,
            topic      text NOT NULL,
            partition  int NOT NULL,
            sampled_at timestamptz NOT NULL DEFAULT clock_timestamp(),
            committed  bigint NOT NULL,
            end_offset bigint NOT NULL,
            PRIMARY KEY (group_id, topic, partition, sampled_at)
        );
        """,
        """
        CREATE TABLE cdcr.repair_log (
            id           bigserial PRIMARY KEY,
            run_id       text NOT NULL,
            table_name   text NOT NULL,             -- target table, schema-qualified
            row_key      jsonb NOT NULL,            -- {"key column": "value", …}
            action       text NOT NULL CHECK (action IN ('insert', 'update', 'delete')),
            before_image jsonb,                     -- the target row before (NULL for an insert)
            after_image  jsonb,                     -- the target row after (NULL for a delete)
            change_id    text NOT NULL,             -- its entry in cdcr.ledger
            repaired_at  timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX repair_log_run ON cdcr.repair_log (run_id);
        CREATE TABLE cdcr.audit (
            table_schema  text NOT NULL,
            table_name    text NOT NULL,
            src_row_count bigint NOT NULL,
            tgt_row_count bigint NOT NULL,
            status        text NOT NULL CHECK (status IN ('ok', 'partial', 'overload', 'reject')),
            updated_at    timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (table_schema, table_name)
        );
        """,
        // Throughput: every applied change updates its row's version, and `updated_at` sat in the
        // tombstone index, so no such update could be HOT (each one wrote new entries in both indexes);
        // tombstones are now pruned by walking the table in block ranges instead. Bookkeeping keys are
        // compared byte-wise ("C"), which is all equality needs and far cheaper than a locale's rules.
        """
        DROP INDEX cdcr.row_versions_tombstones;
        ALTER TABLE cdcr.ledger ALTER COLUMN change_id TYPE text COLLATE "C";
        ALTER TABLE cdcr.row_versions ALTER COLUMN table_name TYPE text COLLATE "C", ALTER COLUMN row_key TYPE text COLLATE "C";
        """,
        // Change IDs and row keys of any length: one longer than BookkeepingKey.maxStoredBytes is
        // stored as its SHA-256 (a btree entry must fit a third of a page), its text kept here.
        """
        ALTER TABLE cdcr.ledger ADD COLUMN full_change_id text;  -- the change ID when change_id holds its digest, else NULL
        """,
        // `cdcr verify --since last`: where each table's last successful run left off.
        """
        CREATE TABLE cdcr.check_state (
            table_name             text PRIMARY KEY,       -- source table, schema-qualified
            target_table           text NOT NULL,          -- its target table
            source_checked_through timestamptz NOT NULL,   -- the next run reads source changes from here (source clock)
            target_checked_through timestamptz NOT NULL,   -- … and target changes (row versions, target clock)
            mode                   text NOT NULL CHECK (mode IN ('full', 'incremental')),
            keys_examined          bigint NOT NULL,
            finished_at            timestamptz NOT NULL DEFAULT now()
        );
        """,
        // `cdcr check` (docs/CHECKS.md): every run and each check's result, so runs can be
        // scheduled and a check's history charted (numbers by check_name over checked_at).
        """
        CREATE TABLE cdcr.check_runs (
            run_id      text PRIMARY KEY,
            started_at  timestamptz NOT NULL,
            finished_at timestamptz NOT NULL,
            rules_file  text,                       -- as given to --rules (NULL: defaults only)
            tables      text[] NOT NULL,            -- the compared source tables
            status      text NOT NULL CHECK (status IN ('pass', 'fail', 'error')),
            passed      int NOT NULL,
            failed      int NOT NULL,
            errors      int NOT NULL
        );
        CREATE INDEX check_runs_started ON cdcr.check_runs (started_at);
        CREATE TABLE cdcr.check_results (
            run_id      text NOT NULL REFERENCES cdcr.check_runs ON DELETE CASCADE,
            check_name  text NOT NULL,
            kind        text NOT NULL CHECK (kind IN ('aggregate', 'query', 'references', 'schema', 'freshness')),
            status      text NOT NULL CHECK (status IN ('pass', 'fail', 'error')),
            summary     text NOT NULL,              -- the report's one line (the error message for 'error')
            numbers     jsonb NOT NULL,             -- the check's counts and measures, e.g. {"missing_groups": 1, …}
            examples    jsonb NOT NULL,             -- up to 10 example lines of what failed
            duration_ms int NOT NULL,
            checked_at  timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (run_id, check_name)
        );
        CREATE INDEX check_results_history ON cdcr.check_results (check_name, checked_at);
        """,
        // `cdcr backfill`'s checkpoints: one row per target table, written in the same transaction
        // as each chunk (docs/BACKFILL.md).
        """
        CREATE TABLE cdcr.backfill_state (
            table_name     text COLLATE "C" PRIMARY KEY,  -- target table, schema-qualified
            source_table   text NOT NULL,
            run_id         text NOT NULL,
            version_source text NOT NULL,                 -- 'change-log' | 'lsn'
            predicate      text,                          -- --where, if any
            next_key       jsonb,                         -- the next chunk starts at this key (inclusive), as key texts; NULL: at the start
            done           boolean NOT NULL DEFAULT false,
            chunks         bigint NOT NULL DEFAULT 0,
            rows_read      bigint NOT NULL DEFAULT 0,
            inserted       bigint NOT NULL DEFAULT 0,
            updated        bigint NOT NULL DEFAULT 0,
            skipped        bigint NOT NULL DEFAULT 0,     -- the target already held a newer version
            deleted        bigint NOT NULL DEFAULT 0,     -- target rows the source no longer had
            failed         bigint NOT NULL DEFAULT 0,
            verified       bigint NOT NULL DEFAULT 0,     -- chunks whose range checksums matched
            started_at     timestamptz NOT NULL DEFAULT now(),
            updated_at     timestamptz NOT NULL DEFAULT now(),
            finished_at    timestamptz
        );
        """,
        // Reconciliation as a service (docs/RECONCILE.md): every scheduled or on-demand run, and each
        // difference it found, followed across runs until it is repaired, decided or gone.
        """
        CREATE TABLE cdcr.reconcile_runs (
            run_id             text PRIMARY KEY,           -- rec-<UTC time>-<random>, sortable by start
            job                text NOT NULL,              -- reconcile.jobs name
            kind               text NOT NULL CHECK (kind IN ('quick', 'full', 'deep')),
            trigger            text NOT NULL CHECK (trigger IN ('schedule', 'catch_up', 'manual')),
            scheduled_for      timestamptz,                -- the schedule slot it ran for (NULL: manual)
            started_at         timestamptz NOT NULL DEFAULT now(),
            finished_at        timestamptz,
            status             text NOT NULL CHECK (status IN ('running', 'ok', 'drift', 'error', 'timeout')),
            tables             text[] NOT NULL,            -- the source tables it covered
            found              int NOT NULL DEFAULT 0,     -- discrepancies seen in this run (new or again)
            new_found          int NOT NULL DEFAULT 0,     -- … of which first seen in this run
            auto_repaired      int NOT NULL DEFAULT 0,
            queued             int NOT NULL DEFAULT 0,
            resolved_by_stream int NOT NULL DEFAULT 0,     -- earlier discrepancies gone without a repair
            error              text                        -- why it failed (status error or timeout)
        );
        CREATE INDEX reconcile_runs_job ON cdcr.reconcile_runs (job, started_at);
        CREATE TABLE cdcr.discrepancies (
            id             bigserial PRIMARY KEY,
            first_run_id   text NOT NULL REFERENCES cdcr.reconcile_runs ON DELETE CASCADE,
            last_run_id    text NOT NULL REFERENCES cdcr.reconcile_runs,
            table_name     text COLLATE "C" NOT NULL,      -- source table, schema-qualified
            target_table   text COLLATE "C" NOT NULL,
            row_key        jsonb,                          -- {"column": "key text", …}; NULL for table-level kinds
            key_text       text COLLATE "C" NOT NULL,      -- identity across runs: the canonical key, or the rule / check name
            kind           text NOT NULL CHECK (kind IN ('missing', 'extra', 'different', 'rule', 'orphan', 'schema')),
            columns        text[] NOT NULL DEFAULT '{}',   -- differing columns (different), or the columns the check names
            source_values  jsonb,                          -- the source row (or the check's numbers), when read
            target_values  jsonb,                          -- the target row, when read
            digest         text,                           -- a summary line when values are not kept
            resolution     text NOT NULL DEFAULT 'open' CHECK (resolution IN
                             ('open', 'auto_repaired', 'queued', 'approved', 'rejected', 'resolved_by_stream')),
            policy         text,                           -- the conflict policy that decided the resolution
            reason         text,                           -- why it was queued, rejected or left alone
            times_seen     int NOT NULL DEFAULT 1,
            first_seen_at  timestamptz NOT NULL DEFAULT now(),
            last_seen_at   timestamptz NOT NULL DEFAULT now(),
            resolved_at    timestamptz,                    -- when it left open / queued
            decided_by     text,                           -- who approved or rejected (review)
            decided_at     timestamptz,
            repair_run_id  text,                           -- cdcr.repair_log run that fixed it (auto or approved)
            applied_at     timestamptz                     -- when an approved item was applied
        );
        -- One live row per difference: a run that sees it again updates that row.
        CREATE UNIQUE INDEX discrepancies_live ON cdcr.discrepancies (target_table, kind, key_text)
            WHERE resolution IN ('open', 'queued') OR (resolution = 'approved' AND applied_at IS NULL);
        CREATE INDEX discrepancies_found ON cdcr.discrepancies (first_seen_at);
        CREATE INDEX discrepancies_resolution ON cdcr.discrepancies (resolution, table_name);
        """,
        // The review queue's history (docs/RECONCILE.md, Reports): when an item entered the queue, so
        // the daily report can count what was queued on a day whatever was decided later. Set by the
        // database whenever a row becomes `queued`, however it gets there.
        """
        ALTER TABLE cdcr.discrepancies ADD COLUMN queued_at timestamptz;
        UPDATE cdcr.discrepancies SET queued_at = first_seen_at WHERE resolution = 'queued';
        CREATE FUNCTION cdcr.discrepancy_queued_at() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.resolution = 'queued' AND NEW.queued_at IS NULL THEN
                NEW.queued_at := now();
            END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER discrepancies_queued_at BEFORE INSERT OR UPDATE OF resolution ON cdcr.discrepancies
            FOR EACH ROW EXECUTE FUNCTION cdcr.discrepancy_queued_at();
        -- The daily report and the status page read only the rows with activity on the day or still
        -- live (see DailyReport), through these and discrepancies_found / discrepancies_resolution.
        CREATE INDEX discrepancies_resolved ON cdcr.discrepancies (resolved_at);
        CREATE INDEX discrepancies_applied ON cdcr.discrepancies (applied_at) WHERE applied_at IS NOT NULL;
        """,
        // `cdcr backfill`'s range watermarks (docs/BACKFILL.md, "Range watermarks"): a chunk copied
        // into a key range the target held nothing of records one row here instead of a
        // `row_versions` entry per row. The version guard reads a key's version as the greater of its
        // entry and the watermark of the range that holds it.
        """
        CREATE TABLE cdcr.backfill_ranges (
            table_name  text COLLATE "C" NOT NULL,    -- target table, schema-qualified
            run_id      text NOT NULL,                -- the backfill run (one run's ranges are disjoint)
            chunk       bigint NOT NULL,
            lower_key   jsonb,                        -- first key (inclusive), as a JSON array of key texts; NULL: from the start
            upper_key   jsonb,                        -- the next chunk's first key (exclusive); NULL: to the end
            version     bigint NOT NULL,              -- the chunk's watermark W (raised by a later truncate)
            recorded_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (table_name, run_id, chunk)
        );
        """,
    ]

    public static var currentVersion: Int { migrations.count }

    /// Creates or upgrades the schema; idempotent and safe to run from several processes at once.
    /// Returns the version before and after.
    @discardableResult
    public static func install(on conn: PGConnection) throws -> (from: Int, to: Int) {
        try conn.transaction { c in
            // Serialise concurrent installers; released at commit.
            try c.query("SELECT pg_advisory_xact_lock(hashtext('cdcr.bookkeeping'))")
            try c.execute("CREATE SCHEMA IF NOT EXISTS cdcr")
            try c.execute("CREATE TABLE IF NOT EXISTS cdcr.schema_version (version int NOT NULL, installed_at timestamptz NOT NULL DEFAULT now())")
            let current = Int(try c.query("SELECT coalesce(max(version), 0) FROM cdcr.schema_version").scalar ?? "0") ?? 0
            if current > migrations.count {
                throw ConfigError("target", "bookkeeping schema version \(current) is newer than this cdcr (\(migrations.count)); upgrade cdcr")
            }
            for v in current..<migrations.count {
                try c.execute(migrations[v])
                try c.query("INSERT INTO cdcr.schema_version (version) VALUES ($1)", [String(v + 1)])
            }
            return (current, migrations.count)
        }
    }

    /// Deletes ledger entries and row-version tombstones older than `days`, in bounded chunks so the
    /// applier is never blocked for long. Returns how many rows went. Ledger entries are found through
    /// the BRIN index on `processed_at`; tombstones by visiting `cdcr.row_versions` `pagesPerChunk`
    /// blocks at a time (a TID range scan each), since no index on them may slow the version updates.
    public static func prune(on conn: PGConnection, olderThanDays days: Int, chunk: Int = 10_000, pagesPerChunk: Int = 256) throws -> Int {
        var total = 0
        while true {
            let n = try conn.query(
                "DELETE FROM cdcr.ledger WHERE change_id IN (SELECT change_id FROM cdcr.ledger WHERE processed_at < now() - make_interval(days => $1::int) LIMIT $2)",
                [String(days), String(chunk)]).affected
            total += n
            if n < chunk { break }
        }
        let pages = Int(try conn.query("SELECT pg_relation_size('cdcr.row_versions') / current_setting('block_size')::bigint").scalar ?? "0") ?? 0
        for first in stride(from: 0, to: pages, by: pagesPerChunk) {
            total += try conn.query(
                "DELETE FROM cdcr.row_versions WHERE ctid >= $2::tid AND ctid < $3::tid AND deleted AND updated_at < now() - make_interval(days => $1::int)",
                [String(days), "(\(first),0)", "(\(first + pagesPerChunk),0)"]).affected
        }
        return total
    }
}
