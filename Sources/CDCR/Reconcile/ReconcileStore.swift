import CDCCore
import CDCPostgres
import Foundation

/// Reads and writes reconcile runs and discrepancies in the target's bookkeeping schema
/// (`cdcr.reconcile_runs`, `cdcr.discrepancies`; docs/RECONCILE.md). Every function runs its
/// statements on the connection it is given; callers own transactions.
public enum ReconcileStore {
    /// The live-row predicate of the `discrepancies_live` unique index, as `ON CONFLICT` must name it.
    static let livePredicate = "resolution IN ('open', 'queued') OR (resolution = 'approved' AND applied_at IS NULL)"
    /// Findings written per statement.
    static let recordBatch = 1_000

    /// `rec-<UTC time>-<random>`, sortable by start time.
    public static func newRunID(now: Date = Date()) -> String {
        sortableRunID("rec", now: now)
    }

    /// Records that a run started (status `running`).
    public static func startRun(id: String, job: String, kind: ReconcileKind, trigger: RunTrigger, scheduledFor: Date?,
                                tables: [TableName], on conn: PGConnection) throws {
        try conn.query("""
            INSERT INTO cdcr.reconcile_runs (run_id, job, kind, trigger, scheduled_for, status, tables)
            VALUES ($1, $2, $3, $4, to_timestamp($5::float8), 'running', $6::text[])
            """, [id, job, kind.rawValue, trigger.rawValue, scheduledFor.map { String($0.timeIntervalSince1970) },
                  pgArrayLiteral(tables.map(\.description))])
    }

    /// Records how a run ended and its counts.
    public static func finishRun(id: String, status: RunStatus, counts: RunCounts, error: String?, on conn: PGConnection) throws {
        try conn.query("""
            UPDATE cdcr.reconcile_runs SET finished_at = now(), status = $2, found = $3, new_found = $4,
                   auto_repaired = $5, queued = $6, resolved_by_stream = $7, error = $8
            WHERE run_id = $1
            """, [id, status.rawValue, String(counts.found), String(counts.newFound), String(counts.autoRepaired),
                  String(counts.queued), String(counts.resolvedByStream), error])
    }

    /// Stores what a run found: a finding that matches a live discrepancy (same target table, kind
    /// and key) updates it (seen again, values refreshed); any other is a new `open` row. A finding
    /// given twice is stored once. Returns each finding's id, in the order of `findings`, and how
    /// many rows were new.
    @discardableResult
    public static func record(_ findings: [Finding], runID: String, on conn: PGConnection) throws -> (ids: [Int64], new: Int) {
        struct Identity: Hashable { let target: String, kind: String, key: String }
        func identity(_ f: Finding) -> Identity { Identity(target: f.targetTable.description, kind: f.kind.rawValue, key: f.keyText) }
        var seen = Set<Identity>()
        let unique = findings.filter { seen.insert(identity($0)).inserted }
        var idOf: [Identity: Int64] = [:]
        var new = 0
        for start in stride(from: 0, to: unique.count, by: recordBatch) {
            let batch = unique[start..<min(unique.count, start + recordBatch)]
            func col(_ f: (Finding) -> String?) -> String { pgArrayLiteralNullable(batch.map(f)) }
            let rows = try conn.query("""
                INSERT INTO cdcr.discrepancies AS d (first_run_id, last_run_id, table_name, target_table, row_key, key_text, kind,
                                                     columns, source_values, target_values, digest)
                SELECT $1, $1, t, tt, rk::jsonb, kt, k, array(SELECT json_array_elements_text(c::json)), sv::jsonb, tv::jsonb, dg
                FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[])
                     AS f(t, tt, rk, kt, k, c, sv, tv, dg)
                ON CONFLICT (target_table, kind, key_text) WHERE \(livePredicate)
                DO UPDATE SET last_run_id = EXCLUDED.last_run_id, times_seen = d.times_seen + 1, last_seen_at = now(),
                              columns = EXCLUDED.columns, source_values = EXCLUDED.source_values,
                              target_values = EXCLUDED.target_values, digest = EXCLUDED.digest
                RETURNING id, (xmax = 0), target_table, kind, key_text
                """, [runID, col { $0.table.description }, col { $0.targetTable.description }, col(\.rowKeyJSON), col(\.keyText),
                      col { $0.kind.rawValue }, col { JSONValue.array($0.columns.map(JSONValue.string)).serialized },
                      col(\.sourceValuesJSON), col(\.targetValuesJSON), col(\.digest)])
            for r in rows.rows {
                idOf[Identity(target: r[2] ?? "", kind: r[3] ?? "", key: r[4] ?? "")] = Int64(r[0] ?? "") ?? 0
                if r[1] == "t" { new += 1 }
            }
        }
        return (findings.map { idOf[identity($0)] ?? 0 }, new)
    }

    /// Marks as `resolved_by_stream` every live discrepancy of `targetTables` and `kinds` that run
    /// `runID` looked for and did not see again. Returns how many.
    public static func resolveGone(runID: String, targetTables: [TableName], kinds: [DiscrepancyKind], on conn: PGConnection) throws -> Int {
        try conn.query("""
            UPDATE cdcr.discrepancies SET resolution = 'resolved_by_stream', resolved_at = now(),
                   reason = 'not found again by run ' || $1
            WHERE (\(livePredicate)) AND last_run_id <> $1
              AND target_table = ANY($2::text[]) AND kind = ANY($3::text[])
            """, [runID, pgArrayLiteral(targetTables.map(\.description)), pgArrayLiteral(kinds.map(\.rawValue))]).affected
    }

    /// Sets the resolution of discrepancies (with who, why, under which policy, and the repair run).
    @discardableResult
    public static func resolve(_ ids: [Int64], as resolution: Resolution, policy: String? = nil, reason: String? = nil,
                               by: String? = nil, repairRunID: String? = nil, on conn: PGConnection) throws -> Int {
        guard !ids.isEmpty else { return 0 }
        let decided = resolution == .approved || resolution == .rejected
        return try conn.query("""
            UPDATE cdcr.discrepancies SET resolution = $2, policy = coalesce($3, policy), reason = coalesce($4, reason),
                   decided_by = CASE WHEN $6 THEN $5 ELSE decided_by END,
                   decided_at = CASE WHEN $6 THEN now() ELSE decided_at END,
                   repair_run_id = coalesce($7, repair_run_id),
                   resolved_at = CASE WHEN $2 IN ('open', 'queued') THEN NULL ELSE now() END
            WHERE id = ANY($1::bigint[])
            """, [pgArrayLiteral(ids.map(String.init)), resolution.rawValue, policy, reason, by, decided ? "true" : "false",
                  repairRunID]).affected
    }

    /// Records that approved discrepancies were applied by repair run `repairRunID`.
    @discardableResult
    public static func markApplied(_ ids: [Int64], repairRunID: String, on conn: PGConnection) throws -> Int {
        guard !ids.isEmpty else { return 0 }
        return try conn.query("""
            UPDATE cdcr.discrepancies SET applied_at = now(), repair_run_id = $2
            WHERE id = ANY($1::bigint[]) AND resolution = 'approved'
            """, [pgArrayLiteral(ids.map(String.init)), repairRunID]).affected
    }

    static let discrepancyColumns = """
        id, first_run_id, last_run_id, table_name, target_table, row_key::text, key_text, kind, array_to_json(columns)::text,
        source_values::text, target_values::text, digest, resolution, policy, reason, times_seen,
        \(isoUTC("first_seen_at")), \(isoUTC("last_seen_at")), \(isoUTC("resolved_at")), decided_by, \(isoUTC("decided_at")),
        repair_run_id, \(isoUTC("applied_at"))
        """

    /// Discrepancies, newest first, optionally of one source table and/or resolution.
    public static func list(table: TableName? = nil, resolution: Resolution? = nil, ids: [Int64]? = nil, limit: Int = 1_000,
                            on conn: PGConnection) throws -> [Discrepancy] {
        try conn.query("""
            SELECT \(discrepancyColumns) FROM cdcr.discrepancies
            WHERE ($1::text IS NULL OR table_name = $1) AND ($2::text IS NULL OR resolution = $2)
              AND ($3::bigint[] IS NULL OR id = ANY($3::bigint[]))
            ORDER BY id DESC LIMIT $4
            """, [table?.description, resolution?.rawValue, ids.map { pgArrayLiteral($0.map(String.init)) }, String(limit)])
            .rows.map(discrepancy)
    }

    /// One discrepancy by id, or nil.
    public static func get(_ id: Int64, on conn: PGConnection) throws -> Discrepancy? {
        try list(ids: [id], limit: 1, on: conn).first
    }

    /// Runs, newest first, optionally of one job.
    public static func runs(job: String? = nil, limit: Int = 100, on conn: PGConnection) throws -> [ReconcileRunRecord] {
        try conn.query("""
            SELECT run_id, job, kind, trigger, \(isoUTC("scheduled_for")), \(isoUTC("started_at")), \(isoUTC("finished_at")), status,
                   array_to_json(tables)::text, found, new_found, auto_repaired, queued, resolved_by_stream, error
            FROM cdcr.reconcile_runs WHERE ($1::text IS NULL OR job = $1)
            ORDER BY started_at DESC, run_id DESC LIMIT $2
            """, [job, String(limit)]).rows.map { r in
            var counts = RunCounts()
            counts.found = Int(r[9] ?? "") ?? 0
            counts.newFound = Int(r[10] ?? "") ?? 0
            counts.autoRepaired = Int(r[11] ?? "") ?? 0
            counts.queued = Int(r[12] ?? "") ?? 0
            counts.resolvedByStream = Int(r[13] ?? "") ?? 0
            return ReconcileRunRecord(
                runID: r[0] ?? "", job: r[1] ?? "", kind: ReconcileKind(rawValue: r[2] ?? "") ?? .quick,
                trigger: RunTrigger(rawValue: r[3] ?? "") ?? .manual, scheduledFor: r[4], startedAt: r[5] ?? "",
                finishedAt: r[6], status: RunStatus(rawValue: r[7] ?? "") ?? .error, tables: stringArray(r[8]),
                counts: counts, error: r[14])
        }
    }

    /// `column` as ISO-8601 UTC text with a `Z` (NULL stays NULL).
    static func isoUTC(_ column: String) -> String {
        "to_char(\(column) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
    }

    static func stringArray(_ json: String?) -> [String] {
        guard let json, case let .array(items)? = try? JSONParser.parse(json) else { return [] }
        return items.compactMap(\.stringValue)
    }

    static func discrepancy(_ r: [String?]) -> Discrepancy {
        Discrepancy(
            id: Int64(r[0] ?? "") ?? 0, firstRunID: r[1] ?? "", lastRunID: r[2] ?? "",
            table: TableName(parsing: r[3] ?? ""), targetTable: TableName(parsing: r[4] ?? ""), rowKeyJSON: r[5],
            keyText: r[6] ?? "", kind: DiscrepancyKind(rawValue: r[7] ?? "") ?? .different, columns: stringArray(r[8]),
            sourceValuesJSON: r[9], targetValuesJSON: r[10], digest: r[11],
            resolution: Resolution(rawValue: r[12] ?? "") ?? .open, policy: r[13], reason: r[14],
            timesSeen: Int(r[15] ?? "") ?? 1, firstSeenAt: r[16] ?? "", lastSeenAt: r[17] ?? "", resolvedAt: r[18],
            decidedBy: r[19], decidedAt: r[20], repairRunID: r[21], appliedAt: r[22])
    }
}
