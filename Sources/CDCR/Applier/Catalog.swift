import CDCCore
import CDCPostgres

/// Resolves table names from untrusted events against the target catalog (and the optional
/// allowlist). Only names found here ever reach SQL, and always quoted.
public final class Catalog {
    private var cache: [TableName: TargetTable?] = [:]
    private let allowlist: Set<TableName>?
    private let forbidden: ForbiddenSchemas

    public init(allowlist: [TableName]?, denySchemas: [String] = []) {
        self.allowlist = allowlist.map(Set.init)
        self.forbidden = ForbiddenSchemas(configured: denySchemas)
    }

    /// The cached tables that changes can be applied to (allowlisted, with a primary key).
    public var knownTables: [TableName: TargetTable] {
        var out: [TableName: TargetTable] = [:]
        for case let (name, table?) in cache where !table.primaryKey.isEmpty && (allowlist?.contains(name) ?? true) { out[name] = table }
        return out
    }

    /// Reads `name` from the catalog again; returns whether its definition differs from the cached
    /// one (a column or the table itself added since). Names outside the allowlist are not looked up.
    public func reload(_ name: TableName, on conn: PGConnection) throws -> Bool {
        if forbidden.refusal(name) != nil { return false }
        if let allowlist, !allowlist.contains(name) { return false }
        let fresh = try Self.load(name, on: conn)
        let old: TargetTable? = cache[name] ?? nil
        cache[name] = fresh
        return fresh != old
    }

    /// Forgets cached tables, e.g. after a DDL change made a statement fail.
    public func invalidate() { cache.removeAll() }

    /// The table, or a poison error naming why it cannot be written.
    public func table(_ name: TableName, on conn: PGConnection) throws -> TargetTable {
        // Before the allowlist and the catalog: an allowlist naming a forbidden table does not
        // open it, and a forbidden name never costs a catalog query.
        if let refusal = forbidden.refusal(name) { throw refusal }
        if let allowlist, !allowlist.contains(name) {
            throw PoisonError(.unknownTable, "table \(name) is not in the configured tables allowlist")
        }
        let table: TargetTable?
        if let cached = cache[name] {
            table = cached
        } else {
            table = try Self.load(name, on: conn)
            cache[name] = table
        }
        guard let table else { throw PoisonError(.unknownTable, "table \(name) does not exist in the target") }
        if table.primaryKey.isEmpty {
            throw PoisonError(.rejected, "table \(name) has no primary key; cdcr needs one to apply changes idempotently")
        }
        return table
    }

    /// Reads a table's writable columns and primary key; nil when there is no such table.
    public static func load(_ name: TableName, on conn: PGConnection) throws -> TargetTable? {
        let rows = try conn.query("""
            SELECT a.attname, format_type(a.atttypid, a.atttypmod), t.typname, t.typcategory, a.attnotnull,
                   coalesce((SELECT k.ord FROM unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) WHERE k.attnum = a.attnum), 0)
            FROM pg_class c
            JOIN pg_namespace n ON n.oid = c.relnamespace
            JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
            JOIN pg_type t ON t.oid = a.atttypid
            LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary
            WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')
            ORDER BY a.attnum
            """, [name.schema, name.name])
        guard rows.count > 0 else { return nil }
        var columns: [ColumnInfo] = []
        var pk: [(Int, Int)] = []
        for r in rows.rows {
            let col = ColumnInfo(name: r[0]!, sqlType: r[1]!, kind: ColumnKind(typeName: r[2]!, category: r[3]!), notNull: r[4] == "t")
            if let pos = Int(r[5] ?? "0"), pos > 0 { pk.append((pos, columns.count)) }
            columns.append(col)
        }
        return TargetTable(name: name, columns: columns, primaryKey: pk.sorted { $0.0 < $1.0 }.map(\.1))
    }
}
