import CDCCore
import CDCPostgres
import Foundation

/// What undoing a repair run did (or would do).
public struct UndoResult: Sendable {
    public let runID: String
    /// The undo's own run ID in `cdcr.repair_log`.
    public let undoRunID: String
    /// Fixes put back (per action of the original fix: an insert is undone by a delete, …).
    public var undoneInserts = 0, undoneUpdates = 0, undoneDeletes = 0
    /// Rows changed since the repair (by the applier, a replay or a person): left as they are.
    public var conflicts: [(table: String, key: String)] = []

    public var undone: Int { undoneInserts + undoneUpdates + undoneDeletes }
}

/// `cdcr repair-undo RUN`: puts back the target rows a `repair --execute` run changed, from the
/// before-images in `cdcr.repair_log`, newest fix first. A row is only put back while it is still
/// exactly as the repair left it (its after-image); a row changed since is reported as a conflict
/// and left alone, so an undo never overwrites newer data. Each put-back row is locked as the
/// applier locks (row version, then row), gets a ledger entry (`undo:<log id>`) and is logged in
/// `cdcr.repair_log` under the run ID `undo-<run>`, with its images. Row versions are left as they
/// are, as the repair left them. A run can be undone once.
public enum RepairUndo {
    public static func undo(runID: String, on target: PGConnection, execute: Bool, batchSize: Int = 500) throws -> UndoResult {
        try BookkeepingSchema.install(on: target)
        var result = UndoResult(runID: runID, undoRunID: "undo-" + runID)
        if try target.query("SELECT 1 FROM cdcr.repair_log WHERE run_id = $1 LIMIT 1", [result.undoRunID]).count > 0 {
            throw VerifyError("repair run \(runID) was already undone (run \(result.undoRunID) in cdcr.repair_log)")
        }
        let log = try target.query("""
            SELECT id::text, table_name, row_key::text, action, before_image::text, after_image::text
            FROM cdcr.repair_log WHERE run_id = $1 ORDER BY id DESC
            """, [runID]).rows
        guard !log.isEmpty else { throw VerifyError("no repair run \(runID) in cdcr.repair_log") }

        var tables: [String: TargetTable] = [:]
        // A dry run rolls each batch back, so a row the run fixed twice, with the fixes in different
        // batches, would look changed since the repair when its older fix comes up. The dry run
        // therefore remembers what each row it put back would hold now (its before-image).
        var putBack: [String: String?] = [:]
        for slice in log.chunks(of: batchSize) {
            let batch = Array(slice)
            let undoOne = { (conn: PGConnection) throws in
                for entry in batch {
                    let name = entry[1]!
                    let slot = name + "\u{1F}" + entry[2]!
                    if !execute, let wouldHold = putBack[slot] {
                        if wouldHold == entry[5] {
                            count(entry[3]!, into: &result)
                            putBack[slot] = entry[4]
                        } else {
                            result.conflicts.append((name, entry[2]!))
                            putBack[slot] = nil
                        }
                        continue
                    }
                    if tables[name] == nil {
                        guard let t = try Catalog.load(TableName(parsing: name), on: conn) else {
                            throw VerifyError("table \(name) of repair run \(runID) no longer exists in the target")
                        }
                        tables[name] = t
                    }
                    if try undoFix(entry, table: tables[name]!, on: conn, into: &result), !execute { putBack[slot] = entry[4] }
                }
            }
            if execute {
                try target.transaction { c in try undoOne(c) }
            } else {
                // A dry run does the same work and rolls it back: the counts say what would happen.
                try target.execute("BEGIN")
                defer { _ = try? target.execute("ROLLBACK") }
                try undoOne(target)
            }
        }
        return result
    }

    /// Counts one put-back fix by the action of the original fix.
    private static func count(_ action: String, into result: inout UndoResult) {
        switch action {
        case "insert": result.undoneInserts += 1
        case "update": result.undoneUpdates += 1
        default: result.undoneDeletes += 1
        }
    }

    /// Puts back one fix (a repair_log row: id, table, key, action, before, after); false when the
    /// row changed since (a conflict, left alone).
    @discardableResult
    private static func undoFix(_ entry: [String?], table: TargetTable, on conn: PGConnection, into result: inout UndoResult) throws -> Bool {
        let (id, key, action, before, after) = (entry[0]!, entry[2]!, entry[3]!, entry[4], entry[5])
        let t = table.name.quoted
        let keyCols = table.primaryKey.map { quoteIdentifier(table.columns[$0].name) }
        let keyMatch = "(" + keyCols.map { "t.\($0)" }.joined(separator: ", ") + ") = (SELECT " + keyCols.map { "k.\($0)" }.joined(separator: ", ")
            + " FROM jsonb_populate_record(null::\(t), $1::jsonb) k)"
        // The applier's lock order: the row's version entry, then the row.
        try conn.query("""
            SELECT 1 FROM cdcr.row_versions rv WHERE rv.table_name = $2
              AND rv.row_key = (SELECT \(StageStatements.rowKey(table, alias: "k")) FROM jsonb_populate_record(null::\(t), $1::jsonb) k) FOR UPDATE
            """, [key, table.name.description])
        // Still as the repair left it: no row after a delete, else the row equal to its after-image.
        let current = try conn.query("SELECT to_jsonb(t) = $2::jsonb FROM \(t) t WHERE \(keyMatch) FOR UPDATE", [key, after]).rows.first
        let unchanged = after == nil ? current == nil : current?[0] == "t"
        guard unchanged else {
            result.conflicts.append((table.name.description, key))
            return false
        }
        let columns = table.columns.map { quoteIdentifier($0.name) }.joined(separator: ", ")
        let inverse: String
        switch action {
        case "insert":
            try conn.query("DELETE FROM \(t) t WHERE \(keyMatch)", [key])
            inverse = "delete"
        case "update":
            try conn.query("UPDATE \(t) t SET (\(columns)) = (SELECT \(columns) FROM jsonb_populate_record(null::\(t), $2::jsonb)) WHERE \(keyMatch)", [key, before])
            inverse = "update"
        default:
            try conn.query("INSERT INTO \(t) (\(columns)) SELECT \(columns) FROM jsonb_populate_record(null::\(t), $1::jsonb)", [before])
            inverse = "insert"
        }
        count(action, into: &result)
        let changeID = "undo:\(result.runID):\(id)"
        try conn.query("INSERT INTO cdcr.ledger (change_id, table_name, outcome) VALUES ($1, $2, 'a')", [changeID, table.name.description])
        try conn.query("""
            INSERT INTO cdcr.repair_log (run_id, table_name, row_key, action, before_image, after_image, change_id)
            VALUES ($1, $2, $3::jsonb, $4, $5::jsonb, $6::jsonb, $7)
            """, [result.undoRunID, table.name.description, key, inverse, after, before, changeID])
        return true
    }
}
