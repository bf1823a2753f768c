import CDCCore
import CDCPostgres

/// The statements of a table's backfill, built only from `BackfillTable`'s catalog identifiers
/// (quoted). Key values are bound: on the source through transaction-local settings read with
/// `current_setting` (a `COPY (query)` takes no parameters), on the target as parameters. The only
/// literals are numbers computed here (limits, versions, column positions).
struct BackfillSQL {
    let table: BackfillTable
    let predicate: String?
    /// The applier's statements for the target table: the stage, the version guard, the MERGE.
    let stage: StageStatements

    init(_ table: BackfillTable, predicate: String?) {
        self.table = table
        self.predicate = predicate
        self.stage = StageStatements(table.target)
    }

    private var keyCount: Int { table.pair.keyCount }

    private func keyRef(_ k: Int, alias: String = "t") -> String {
        let ref = alias + "." + quoteIdentifier(table.keyNames[k])
        return table.pair.keyCollateC[k] ? "\(ref) COLLATE \"C\"" : ref
    }

    private func keyTuple(alias: String = "t") -> String {
        "(" + (0..<keyCount).map { keyRef($0, alias: alias) }.joined(separator: ", ") + ")"
    }

    private var whereClause: String { predicate.map { " AND (\($0))" } ?? "" }

    // MARK: - Source

    /// Binds the chunk's lower key (inclusive) for `sourceChunk`: one statement, `$1…` = key texts.
    var bindLower: String {
        "SELECT " + (0..<keyCount).map { "set_config('cdcr.backfill_lo_\($0)', $\($0 + 1), true)" }.joined(separator: ", ")
    }

    /// `COPY (…) TO STDOUT` of up to `limit` rows from the bound lower key on (or the start), in key
    /// order: the copied columns, as a COPY into the table takes them. (The stage's own columns are
    /// put in front by cdcr when a chunk goes through the stage, `SourceChunk.stageData`: a window
    /// and a second sort here cost a quarter of the read.)
    func sourceChunk(limit: Int, fromLower: Bool) -> String {
        let source = table.source
        var conditions = ["true"]
        if fromLower {
            let bounds = (0..<keyCount).map { k -> String in
                let type = source.columns[source.columnIndex(table.keyNames[k])!].sqlType
                return "current_setting('cdcr.backfill_lo_\(k)')::\(type)"
            }
            let lower = "(" + bounds.enumerated().map { k, b in table.pair.keyCollateC[k] ? "\(b) COLLATE \"C\"" : b }.joined(separator: ", ") + ")"
            conditions.append("\(keyTuple()) >= \(lower)")
        }
        let order = (0..<keyCount).map { keyRef($0) }.joined(separator: ", ")
        let cols = table.copied.map { "t." + quoteIdentifier($0) }.joined(separator: ", ")
        return """
            COPY (SELECT \(cols) FROM \(source.name.quoted) t WHERE \(conditions.joined(separator: " AND "))\(whereClause)
                  ORDER BY \(order) LIMIT \(limit)) TO STDOUT
            """
    }

    /// The `_cdcr_keep` field of the chunk's stage rows (COPY text): the target-only columns, kept
    /// on update, or NULL.
    var stageKeep: String { table.targetOnly.isEmpty ? "\\N" : "{" + table.targetOnly.map(String.init).joined(separator: ",") + "}" }

    // MARK: - Target

    /// COPY of the source's rows into the stage (the copied columns; target-only ones stay NULL).
    var stageCopy: String {
        "COPY \(stage.stage) (_cdcr_idx, _cdcr_op, _cdcr_version, _cdcr_keep, \(table.copied.map(quoteIdentifier).joined(separator: ", "))) FROM STDIN"
    }

    /// Stages a delete (version `$1`, stage indexes from `$2` + 1) of every target row in the chunk's
    /// key range that the copy did not bring: the source's snapshot did not have it. The range's
    /// bounds follow as `$3…` (lower, inclusive) and then upper (exclusive), each present or not.
    func stageTombstones(hasLower: Bool, hasUpper: Bool) -> String {
        let keys = table.keyNames.map(quoteIdentifier)
        let same = keys.map { "s.\($0) = t.\($0)" }.joined(separator: " AND ")
        return """
            INSERT INTO \(stage.stage) (_cdcr_idx, _cdcr_op, _cdcr_version, \(keys.joined(separator: ", ")))
            SELECT $2::int + row_number() OVER (), 'd', $1::bigint, \(keys.map { "t." + $0 }.joined(separator: ", "))
            FROM \(table.target.name.quoted) t
            WHERE \(targetRange(hasLower: hasLower, hasUpper: hasUpper, after: 2)) AND NOT EXISTS (SELECT FROM \(stage.stage) s WHERE \(same))
            """
    }

    /// COPY of the source's rows straight into the target table (the copied columns).
    var tableCopy: String {
        "COPY \(table.target.name.quoted) (\(table.copied.map(quoteIdentifier).joined(separator: ", "))) FROM STDIN"
    }

    /// The `row_versions` entries (version `$1`, live) of every target row in the chunk's range
    /// (bounds `$2…`, as for `targetRangeOccupied`), keys computed as the guard computes them.
    func versionsOfRange(hasLower: Bool, hasUpper: Bool) -> String {
        """
        INSERT INTO cdcr.row_versions (table_name, row_key, version, deleted)
        SELECT \(quoteLiteral(table.target.name.description)), \(StageStatements.rowKey(table.target, alias: "t")), $1::bigint, false
        FROM \(table.target.name.quoted) t WHERE \(targetRange(hasLower: hasLower, hasUpper: hasUpper, after: 1)) ORDER BY 2
        """
    }

    /// A chunk's range watermark (`RangeFloors`) — table, run, chunk, lower and upper key (JSON
    /// arrays of key texts, NULL for an open end), version as `$1…$6` — unless a target row in the
    /// chunk's range (bounds `$7…`) has a `row_versions` entry: then nothing is inserted (no row
    /// affected). The per-row probes are skipped when the table has no entry at all.
    func recordRangeUnlessEntries(hasLower: Bool, hasUpper: Bool) -> String {
        let name = quoteLiteral(table.target.name.description)
        return """
            INSERT INTO cdcr.backfill_ranges (table_name, run_id, chunk, lower_key, upper_key, version)
            SELECT $1, $2, $3::bigint, $4::jsonb, $5::jsonb, $6::bigint
            WHERE NOT (EXISTS (SELECT FROM cdcr.row_versions WHERE table_name = \(name))
                       AND EXISTS (SELECT FROM \(table.target.name.quoted) t WHERE \(targetRange(hasLower: hasLower, hasUpper: hasUpper, after: 6))
                                   AND EXISTS (SELECT FROM cdcr.row_versions rv WHERE rv.table_name = \(name) AND rv.row_key = \(StageStatements.rowKey(table.target, alias: "t")))))
            """
    }

    /// Whether the target holds any row in the chunk's key range (bounds as `$1…`, lower then upper,
    /// each present or not): `t` when it does.
    func targetRangeOccupied(hasLower: Bool, hasUpper: Bool) -> String {
        "SELECT EXISTS (SELECT FROM \(table.target.name.quoted) t WHERE \(targetRange(hasLower: hasLower, hasUpper: hasUpper, after: 0)))"
    }

    /// The condition "the target row `t` lies in the chunk's range", its bounds the parameters
    /// after `$\(after)`: the lower (inclusive) key's columns, then the upper (exclusive) one's.
    private func targetRange(hasLower: Bool, hasUpper: Bool, after: Int) -> String {
        let target = table.target
        var n = after
        func tuple() -> String {
            "(" + (0..<keyCount).map { k -> String in
                n += 1
                let type = target.columns[target.columnIndex(table.keyNames[k])!].sqlType
                let b = "$\(n)::\(type)"
                return table.pair.keyCollateC[k] ? "\(b) COLLATE \"C\"" : b
            }.joined(separator: ", ") + ")"
        }
        var conditions = ["true"]
        if hasLower { conditions.append("\(keyTuple()) >= \(tuple())") }
        if hasUpper { conditions.append("\(keyTuple()) < \(tuple())") }
        return conditions.joined(separator: " AND ")
    }

    /// Before the MERGE: of the staged rows that won the guard (`$1` = the losers' indexes), how many
    /// upserts meet an existing row (updates), how many upserts and how many deletes there are.
    var winnerCounts: String {
        let keys = table.keyNames.map(quoteIdentifier)
        let same = keys.map { "t.\($0) = s.\($0)" }.joined(separator: " AND ")
        return """
            SELECT count(*) FILTER (WHERE s._cdcr_op = 'u' AND EXISTS (SELECT FROM \(table.target.name.quoted) t WHERE \(same)))::text,
                   count(*) FILTER (WHERE s._cdcr_op = 'u')::text, count(*) FILTER (WHERE s._cdcr_op = 'd')::text
            FROM \(stage.stage) s WHERE s._cdcr_op <> 'x' AND s._cdcr_idx <> ALL($1::int[])
            """
    }

    /// The guard's losers among upserts (`$1` = the losers' indexes) and among deletes.
    var loserCounts: String {
        "SELECT count(*) FILTER (WHERE _cdcr_op = 'u')::text, count(*) FILTER (WHERE _cdcr_op = 'd')::text FROM \(stage.stage) WHERE _cdcr_idx = ANY($1::int[])"
    }
}
