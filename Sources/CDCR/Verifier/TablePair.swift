import CDCCore
import CDCPostgres

/// A verify or repair could not start for a table; the message says why and what to do.
public struct VerifyError: Error, CustomStringConvertible, Sendable {
    public let description: String

    public init(_ description: String) { self.description = description }
}

/// A source table and its target table, resolved against both catalogs: the primary key (the
/// source's, which the target must share) and the columns compared, with the type each pair of
/// columns is compared in. The only identifiers the verifier ever puts into SQL come from here.
public struct TablePair: Sendable {
    public let source: TargetTable
    public let target: TargetTable
    /// Key columns first (positions 0..<keyCount), then the other compared columns.
    public let columns: [ComparedColumn]
    public let keyCount: Int
    /// Per key column: compare text keys byte-wise (`COLLATE "C"`) because the sides' collations differ.
    public let keyCollateC: [Bool]
    /// Columns found on one side only, and other things the report should mention.
    public let notes: [String]

    public var keyColumns: ArraySlice<ComparedColumn> { columns[..<keyCount] }

    /// Resolves `sourceName` in the source and `targetName` in the target. `only` restricts the
    /// compared non-key columns (every name must exist on both sides).
    public static func resolve(
        source sourceName: TableName, target targetName: TableName, only: [String]?,
        sourceConn: PGConnection, targetConn: PGConnection
    ) throws -> TablePair {
        guard let source = try Catalog.load(sourceName, on: sourceConn) else {
            throw VerifyError("table \(sourceName) does not exist in the source database")
        }
        guard let target = try Catalog.load(targetName, on: targetConn) else {
            throw VerifyError("table \(targetName) does not exist in the target database")
        }
        guard !source.primaryKey.isEmpty else {
            throw VerifyError("table \(sourceName) has no primary key in the source: rows cannot be matched between the databases; add a primary key (or a unique key promoted to one)")
        }
        let keyNames = source.primaryKey.map { source.columns[$0].name }
        let targetKeyNames = target.primaryKey.map { target.columns[$0].name }
        guard targetKeyNames == keyNames else {
            throw VerifyError("the primary keys differ: \(sourceName) (\(keyNames.joined(separator: ", "))) in the source, \(targetName) (\(targetKeyNames.isEmpty ? "none" : targetKeyNames.joined(separator: ", "))) in the target")
        }

        var notes: [String] = []
        let nonKey: [String]
        if let only {
            for name in only where source.columnIndex(name) == nil || target.columnIndex(name) == nil {
                let side = source.columnIndex(name) == nil ? "source \(sourceName)" : "target \(targetName)"
                throw VerifyError("--columns: column '\(name)' does not exist in the \(side)")
            }
            nonKey = only.filter { !keyNames.contains($0) }
        } else {
            nonKey = source.columns.map(\.name).filter { !keyNames.contains($0) && target.columnIndex($0) != nil }
            let onlySource = source.columns.map(\.name).filter { target.columnIndex($0) == nil }
            let onlyTarget = target.columns.map(\.name).filter { source.columnIndex($0) == nil }
            if !onlySource.isEmpty { notes.append("not compared, only in the source: \(onlySource.joined(separator: ", "))") }
            if !onlyTarget.isEmpty { notes.append("not compared, only in the target: \(onlyTarget.joined(separator: ", "))") }
        }
        var columns: [ComparedColumn] = []
        for name in keyNames + nonKey {
            let s = source.columns[source.columnIndex(name)!], t = target.columns[target.columnIndex(name)!]
            let c = ComparedColumn(name: name, sourceKind: s.kind, targetKind: t.kind, position: columns.count)
            if c.type == .text && s.kind != t.kind { notes.append("\(name): \(s.sqlType) vs \(t.sqlType), compared as text") }
            columns.append(c)
        }
        var collateC: [Bool] = []
        for name in keyNames {
            let s = source.columns[source.columnIndex(name)!], t = target.columns[target.columnIndex(name)!]
            if s.kind == .text || t.kind == .text {
                let sc = try collation(of: name, in: sourceName, on: sourceConn)
                let tc = try collation(of: name, in: targetName, on: targetConn)
                collateC.append(sc != tc || s.kind != t.kind)
            } else {
                collateC.append(false)
            }
        }
        return TablePair(source: source, target: target, columns: columns, keyCount: keyNames.count, keyCollateC: collateC, notes: notes)
    }

    /// The locale a text column sorts by (the database's for the default collation).
    static func collation(of column: String, in table: TableName, on conn: PGConnection) throws -> String {
        try conn.query("""
            SELECT CASE WHEN co.collname = 'default' OR co.oid IS NULL THEN (SELECT datcollate FROM pg_database WHERE datname = current_database())
                        WHEN co.collprovider = 'c' AND co.collname IN ('C', 'POSIX') THEN 'C'
                        ELSE co.collprovider::text || ':' || coalesce(co.collcollate, co.colliculocale, co.collname) END
            FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
            LEFT JOIN pg_collation co ON co.oid = a.attcollation
            WHERE n.nspname = $1 AND c.relname = $2 AND a.attname = $3
            """, [table.schema, table.name, column]).scalar ?? ""
    }
}
