import CDCCore
import CDCPostgres

/// A check's statements on one database: each runs inside its own
/// `REPEATABLE READ READ ONLY` transaction with the rules' statement timeout, so no check can
/// write, and none runs unbounded.
struct CheckSession: Sendable {
    let side: Side
    let conn: PGConnection
    let timeoutMs: Int

    func readOnly<T>(_ body: (PGConnection) throws -> T) throws -> T {
        try conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        do {
            try conn.query("SELECT set_config('statement_timeout', $1, true)", [String(timeoutMs)])
            let value = try body(conn)
            try conn.execute("COMMIT")
            return value
        } catch {
            if conn.isHealthy { _ = try? conn.execute("ROLLBACK") }
            throw error
        }
    }

    /// The table as this side's catalog has it, or nil.
    func table(_ name: TableName) throws -> TargetTable? { try Catalog.load(name, on: conn) }

    /// The catalog name of `column` in `table` quoted for SQL, or an error naming what is missing.
    func column(_ column: String, of table: TargetTable, for what: String) throws -> ColumnInfo {
        guard let i = table.columnIndex(column) else {
            throw CheckError("\(what): column '\(column)' does not exist in the \(side) table \(table.name)")
        }
        return table.columns[i]
    }
}

/// A check could not run; the message says why.
struct CheckError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Canonical text of a value of the PostgreSQL type `type` (`pg_typeof` text): equal by meaning
/// gives equal text on both sides (numeric scale dropped, instants as UTC, jsonb normalised).
func canonicalText(_ expr: String, type: String) -> String {
    switch type {
    case "numeric": "trim_scale(\(expr))::text"
    case "timestamp with time zone": "((\(expr)) AT TIME ZONE 'UTC')::text"
    case "double precision", "real": "(\(expr))::float8::text"
    case "json", "jsonb": "(\(expr))::jsonb::text"
    default: "(\(expr))::text"
    }
}
