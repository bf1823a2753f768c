import CDCCore

/// The schemas an event may never write, whatever the `tables` allowlist says: cdcr's own
/// bookkeeping (a forged ledger entry would turn a real change into a "duplicate" that is never
/// applied), and PostgreSQL's catalogs (which have primary keys since version 14, so they would
/// otherwise resolve like user tables). Checked before the catalog is even asked.
public struct ForbiddenSchemas: Sendable {
    /// The bookkeeping schema in the target (see `BookkeepingSchema`).
    public static let bookkeeping = "cdcr"
    /// Always refused, besides every schema starting with `pg_` (`pg_catalog`, `pg_toast`,
    /// `pg_temp_N`, … — PostgreSQL reserves that prefix for itself).
    public static let builtIn: Set<String> = [bookkeeping, "information_schema"]

    private let denied: Set<String>

    /// `configured` adds schemas from the `deny_schemas` setting.
    public init(configured: [String] = []) {
        denied = Self.builtIn.union(configured)
    }

    /// Why `table` may not be written, or nil when it may.
    public func refusal(_ table: TableName) -> PoisonError? {
        let schema = table.schema
        if schema.hasPrefix("pg_") || Self.builtIn.contains(schema) {
            return PoisonError(.forbiddenTable, "table \(table) is in \(schema), a schema of cdcr's bookkeeping or of PostgreSQL's catalogs; events may only write user tables")
        }
        if denied.contains(schema) {
            return PoisonError(.forbiddenTable, "table \(table) is in schema \(schema), which deny_schemas forbids")
        }
        return nil
    }
}
