import CDCCore
import CDCPostgres

/// The SQL that applies a batch's staged rows to one target table, set-based:
/// COPY into a temp stage → version guard on `cdcr.row_versions` (which marks the losers in the
/// stage and returns them) → MERGE of the other staged rows into the table.
/// Built only from catalog identifiers, always quoted; values travel as COPY data. No statement
/// takes a parameter or depends on an earlier one's result, so they can run as one `script`.
struct StageStatements {
    /// The temp stage table's name (unquoted identifier of hex digits; safe in SQL as it is).
    let stage: String
    /// Creates the stage (once per session) and empties it (it may hold an isolation attempt's rows).
    let create: String
    let empty: String
    /// Both, for `execute`, after the fence (if any) when it is the applier's.
    let prepare: String
    /// Both without the fence: for a backfill chunk, which never takes the fence shared (a chunk
    /// waiting for its turn while holding it would lock out the chunk before it).
    let prepareStage: String
    let copy: String
    let guardSQL: String
    /// Both MERGEs skip the rows the guard marked as losers.
    let merge: String
    let mergeKeeping: String

    /// For a stage of upserts only (no delete): the version rows and the target rows as plain
    /// INSERTs, in one statement. Cheaper than the guard's upsert and the MERGE's join, and the same
    /// when no key is in `cdcr.row_versions` or the table yet (the MERGE would insert every row, with
    /// the stage's NULL for a column the event lacks, as here); when one is, it fails with a unique
    /// violation (23505) and the batch is redone the usual way (see `BatchApplier.applyFused`).
    /// A row at or below its range floor is left out and returned, as the guard returns its losers.
    let insertNew: String

    /// For a table that can carry range watermarks (`RangeFloors`): the fence, taken shared before
    /// anything of the table is staged, so the guard reads the floors after any chunk holding it committed.
    let fence: String?

    /// Every statement up to the MERGE (or `insertNew`), one each: what `BatchApplier` sends as one
    /// script, and the position of the guard's (or `insertNew`'s) result, the losers.
    func steps(data: [UInt8], anyKeep: Bool, insertOnly: Bool = false) -> (steps: [PGStep], losers: Int) {
        let apply: [PGStep] = insertOnly ? [.sql(insertNew)] : [.sql(guardSQL), .sql(anyKeep ? mergeKeeping : merge)]
        let lead: [PGStep] = fence.map { [.sql($0)] } ?? []
        return (lead + [.sql(create), .sql(empty), .copyIn(copy, data: data)] + apply, lead.count + 3)
    }

    init(_ table: TargetTable) {
        let cols = table.columns
        let signature = table.name.description + "|" + cols.map { "\($0.name):\($0.sqlType)" }.joined(separator: ",")
        let stage = "cdcr_stage_" + fnv1a64Hex(signature)
        self.stage = stage
        let columnDefs = cols.map { "\(quoteIdentifier($0.name)) \($0.sqlType)" }.joined(separator: ", ")
        create = "CREATE TEMP TABLE IF NOT EXISTS \(stage) (_cdcr_idx int, _cdcr_op \"char\", _cdcr_version bigint, _cdcr_keep int[], _cdcr_lost boolean, \(columnDefs)) ON COMMIT DELETE ROWS"
        empty = "DELETE FROM \(stage)"
        let floors = RangeFloors.applies(to: table)
        fence = floors ? RangeFloors.fenceShared(table.name) : nil
        prepareStage = create + ";\n" + empty
        prepare = (fence.map { $0 + ";\n" } ?? "") + prepareStage
        let colList = cols.map { quoteIdentifier($0.name) }.joined(separator: ", ")
        copy = "COPY \(stage) (_cdcr_idx, _cdcr_op, _cdcr_version, _cdcr_keep, \(colList)) FROM STDIN"

        let keyExpr = StageStatements.rowKey(table, alias: "s")
        // The guard: a row's version only moves forward. Rows whose stored version is newer lose and
        // their changes end stale (the statement returns them: usually none, so nothing is written back
        // to the stage); a delete leaves a tombstone version so late inserts cannot resurrect it.
        // A change without a version (a repair from the source of truth, a versionless event) always
        // applies and leaves the stored version as it was, so late older changes stay stale.
        // The losers are marked in the stage (`_cdcr_lost`), so the MERGE needs nothing from this statement's
        // result and can follow it in the same script. The table's name is a literal here: it is the
        // catalog's (resolved, like the identifiers around it), never a value from an event.
        // A key that a backfill's range holds also loses at or below the range's watermark, its floor
        // (`RangeFloors`): it may have no entry of its own.
        let floorCTEs = floors ? RangeFloors.ctes(table, stage: stage) + ",\n" : ""
        let aboveFloor = floors ? " AND " + RangeFloors.aboveFloor : ""
        guardSQL = """
            WITH \(floorCTEs)won AS (
                INSERT INTO cdcr.row_versions AS rv (table_name, row_key, version, deleted)
                SELECT \(quoteLiteral(table.name.description)), \(keyExpr), s._cdcr_version, s._cdcr_op = 'd' FROM \(stage) s
                WHERE s._cdcr_op <> 'x'\(aboveFloor) ORDER BY 2
                ON CONFLICT (table_name, row_key) DO UPDATE
                    SET version = coalesce(EXCLUDED.version, rv.version), deleted = EXCLUDED.deleted, updated_at = now()
                    WHERE rv.version IS NULL OR EXCLUDED.version IS NULL OR rv.version < EXCLUDED.version
                RETURNING rv.row_key)
            UPDATE \(stage) s SET _cdcr_lost = true WHERE s._cdcr_op <> 'x' AND NOT EXISTS (SELECT FROM won WHERE won.row_key = \(keyExpr))
            RETURNING s._cdcr_idx
            """

        let on = table.primaryKey.map { "t.\(quoteIdentifier(cols[$0].name)) = s.\(quoteIdentifier(cols[$0].name))" }.joined(separator: " AND ")
        let nonKey = cols.indices.filter { !table.primaryKey.contains($0) }
        let insertValues = cols.map { "s." + quoteIdentifier($0.name) }.joined(separator: ", ")
        func mergeSQL(keeping: Bool) -> String {
            let set = nonKey.map { i -> String in
                let c = quoteIdentifier(cols[i].name)
                return keeping ? "\(c) = CASE WHEN \(i) = ANY(s._cdcr_keep) THEN t.\(c) ELSE s.\(c) END" : "\(c) = s.\(c)"
            }.joined(separator: ", ")
            let matched = nonKey.isEmpty ? "WHEN MATCHED THEN DO NOTHING" : "WHEN MATCHED THEN UPDATE SET \(set)"
            return """
                MERGE INTO \(table.name.quoted) t
                USING (SELECT s.* FROM \(stage) s WHERE s._cdcr_op <> 'x' AND s._cdcr_lost IS NULL) s
                ON \(on)
                WHEN MATCHED AND s._cdcr_op = 'd' THEN DELETE
                \(matched)
                WHEN NOT MATCHED AND s._cdcr_op <> 'd' THEN INSERT (\(colList)) VALUES (\(insertValues))
                """
        }
        merge = mergeSQL(keeping: false)
        mergeKeeping = mergeSQL(keeping: true)
        insertNew = """
            WITH \(floorCTEs)versions AS (
                INSERT INTO cdcr.row_versions (table_name, row_key, version, deleted)
                SELECT \(quoteLiteral(table.name.description)), \(keyExpr), s._cdcr_version, false FROM \(stage) s
                WHERE s._cdcr_op <> 'x'\(aboveFloor) ORDER BY 2),
            inserted AS (
                INSERT INTO \(table.name.quoted) (\(colList)) SELECT \(insertValues) FROM \(stage) s WHERE s._cdcr_op <> 'x'\(aboveFloor))
            SELECT s._cdcr_idx FROM \(stage) s WHERE s._cdcr_op <> 'x' AND \(floors ? "NOT " + RangeFloors.aboveFloor : "false")
            """
    }
}

extension StageStatements {
    /// The SQL expression of a row's key in `cdcr.row_versions`, computed by PostgreSQL so every path
    /// agrees on it: the key column's text for a single-column key, else `jsonb_build_array(…)::text`.
    ///
    /// A key whose text can be long (text, numeric, any type cdcr cannot bound) is stored in
    /// `BookkeepingKey`'s fixed-width form when it has to be, so a legitimate 2,600-character key
    /// never exceeds the btree limit of `row_versions`' primary key. Keys of bounded types (integers,
    /// uuid, dates, times, a few of them together) skip that test: their text can never be long or
    /// start with the digest prefix.
    static func rowKey(_ table: TargetTable, alias: String) -> String {
        let cols = table.primaryKey.map { "\(alias)." + quoteIdentifier(table.columns[$0].name) }
        let raw = cols.count == 1 ? "(\(cols[0]))::text" : "jsonb_build_array(" + cols.joined(separator: ", ") + ")::text"
        let bounded = table.primaryKey.count <= 8 && table.primaryKey.allSatisfy { Self.boundedKinds.contains(table.columns[$0].kind) }
        if bounded { return raw }
        let prefix = BookkeepingKey.prefix
        return """
            (CASE WHEN octet_length(\(raw)) <= \(BookkeepingKey.maxStoredBytes) AND NOT starts_with(\(raw), '\(prefix)') THEN \(raw) \
            ELSE '\(prefix)' || encode(sha256(convert_to(\(raw), 'UTF8')), 'hex') END)
            """
    }

    /// Column kinds whose text form is short and never starts with `BookkeepingKey.prefix`.
    static let boundedKinds: Set<ColumnKind> = [.bool, .integer, .float, .date, .timestamp, .timestamptz, .time, .uuid]
}

/// FNV-1a 64-bit of a string, as 16 hex digits; names stage tables after a table's definition.
func fnv1a64Hex(_ s: String) -> String {
    var h: UInt64 = 0xcbf2_9ce4_8422_2325
    for b in s.utf8 {
        h ^= UInt64(b)
        h = h &* 0x100_0000_01b3
    }
    let hex = String(h, radix: 16)
    return String(repeating: "0", count: 16 - hex.count) + hex
}
