import CDCCore
import CDCPostgres

/// Range watermarks as the version guard reads them (docs/BACKFILL.md, "Range watermarks").
///
/// A backfill chunk copied into a key range the target held nothing of records one row in
/// `cdcr.backfill_ranges` — the range `[lower, upper)` and its watermark W — instead of a
/// `row_versions` entry per copied row. A key's version is then the greater of its own entry and
/// the watermark of the range holding it (its *floor*): a change at or below the floor is stale
/// even when the key has no entry. Only tables whose key columns order by their type alone (no
/// collation, the same in every database) get ranges, so "which range holds this key" has one
/// answer in the source that defined the chunk and in the target that reads it.
///
/// The **fence** makes reading the floors race-free: every applying transaction takes the table's
/// fence shared before its guard, and a chunk takes it exclusively from before it looks at the
/// range until it commits. So a transaction either committed before the chunk looked (the chunk
/// sees its rows and entries) or reads the floors after the chunk committed (read-committed: the
/// guard's statement starts after the lock was granted).
enum RangeFloors {
    /// Key kinds whose order is the type's own.
    static let orderedKinds: Set<ColumnKind> = [.integer, .numeric, .uuid, .date, .timestamp, .timestamptz]

    /// Whether `table`'s key can carry range watermarks (and so whether its guard reads floors).
    static func applies(to table: TargetTable) -> Bool {
        table.primaryKey.allSatisfy { orderedKinds.contains(table.columns[$0].kind) }
    }

    /// The fence's advisory lock key: a class of its own and the table's name.
    private static func fenceKey(_ name: TableName) -> String {
        "hashtext('cdcr.backfill_fence'), hashtext(\(quoteLiteral(name.description)))"
    }

    /// Taken by every applying transaction before its guard on the table.
    static func fenceShared(_ name: TableName) -> String { "SELECT pg_advisory_xact_lock_shared(\(fenceKey(name)))" }

    /// Taken by a chunk that records a range, until it commits.
    static func fenceExclusive(_ name: TableName) -> String { "SELECT pg_advisory_xact_lock(\(fenceKey(name)))" }

    /// After a truncate (version `$2`) of table `$1`: its ranges' floors rise to the truncate's, as
    /// its entries' versions do, so late older changes stay stale.
    static let raiseForTruncate = "UPDATE cdcr.backfill_ranges SET version = greatest(version, $2::bigint) WHERE table_name = $1"

    /// Common table expressions ending in `cdcr_floors (idx, version)`: the floor of each staged row
    /// (stage alias `s`) that a range holds. One sort of the stage's keys with the table's range
    /// starts: each key takes the last start at or before it, then is checked against that range's
    /// end. Ranges of one run are disjoint, and only one run records ranges on a table (see
    /// `Backfiller`), so the last start is the only candidate. Costs nothing when the table has no
    /// range (the stage's part is not even read).
    static func ctes(_ table: TargetTable, stage: String) -> String {
        let keys = table.primaryKey.map { table.columns[$0] }
        let n = keys.indices
        let lowers = n.map { "(lower_key ->> \($0))::\(keys[$0].sqlType) AS l\($0)" }.joined(separator: ", ")
        let uppers = n.map { "(upper_key ->> \($0))::\(keys[$0].sqlType) AS u\($0)" }.joined(separator: ", ")
        let rangeMarks = (n.map { "l\($0) AS k\($0)" } + n.map { "u\($0)" }).joined(separator: ", ")
        let stageMarks = (n.map { "s.\(quoteIdentifier(keys[$0].name))" } + n.map { "NULL::\(keys[$0].sqlType)" }).joined(separator: ", ")
        let order = (["m.keyed"] + n.map { "m.k\($0)" } + ["m.kind"]).joined(separator: ", ")
        let key = "(" + n.map { "k.k\($0)" }.joined(separator: ", ") + ")"
        let upper = "(" + n.map { "g.u\($0)" }.joined(separator: ", ") + ")"
        return """
            cdcr_r AS MATERIALIZED (
                SELECT version, lower_key IS NULL AS from_start, upper_key IS NULL AS to_end, \(lowers), \(uppers)
                FROM cdcr.backfill_ranges WHERE table_name = \(quoteLiteral(table.name.description))),
            cdcr_marks AS (
                SELECT 0 AS kind, NULL::int AS idx, version, to_end, NOT from_start AS keyed, \(rangeMarks) FROM cdcr_r
                UNION ALL
                SELECT 1, s._cdcr_idx, NULL::bigint, NULL::boolean, true, \(stageMarks)
                FROM \(stage) s WHERE s._cdcr_op <> 'x' AND EXISTS (SELECT FROM cdcr_r)),
            cdcr_runs AS (
                SELECT m.*, count(*) FILTER (WHERE m.kind = 0) OVER (ORDER BY \(order) ROWS UNBOUNDED PRECEDING) AS grp FROM cdcr_marks m),
            cdcr_floors AS (
                SELECT k.idx, g.version FROM cdcr_runs k JOIN cdcr_runs g ON g.grp = k.grp AND g.kind = 0
                WHERE k.kind = 1 AND (g.to_end OR \(key) < \(upper)))
            """
    }

    /// True for a staged row (alias `s`) whose version is above its floor, or that has no floor or
    /// no version (a versionless change always applies).
    static let aboveFloor = "NOT EXISTS (SELECT FROM cdcr_floors f WHERE f.idx = s._cdcr_idx AND f.version >= s._cdcr_version)"
}
