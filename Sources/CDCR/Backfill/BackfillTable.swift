import CDCCore
import CDCPostgres

/// A backfill could not start (or stopped) for a reason the operator must act on; the message says
/// which table, column or setting.
public struct BackfillError: Error, CustomStringConvertible, Sendable {
    public let description: String

    public init(_ description: String) { self.description = description }
}

/// A source table and its target table for a backfill, resolved against both catalogs and checked
/// before anything is written: both exist, the source has a primary key the target shares, every
/// source column exists in the target with a type that reads the source's text form, and no
/// target-only column needs a value the copy cannot give it. cdcr never creates or alters user tables.
///
/// Every identifier the backfill puts into SQL comes from here (catalog names, quoted).
public struct BackfillTable: Sendable {
    /// Both catalogs and the compared columns, as `cdcr verify` sees the pair (the per-chunk check).
    public let pair: TablePair
    public var source: TargetTable { pair.source }
    public var target: TargetTable { pair.target }
    /// The copied columns (every source column), in source order.
    public let copied: [String]
    /// Positions of the key columns within `copied`, in key order.
    public let keyPositions: [Int]
    /// Indexes into `target.columns` of target-only columns: NULL on insert, kept on update.
    public let targetOnly: [Int]

    public var keyNames: [String] { pair.keyColumns.map(\.name) }

    /// Whether the key orders by its type alone, the same in the source and the target: each key
    /// column of a kind without collation (`RangeFloors.orderedKinds`), of the same type on both
    /// sides (an integer may widen). Then a chunk may record a range watermark.
    public var keyOrdersByType: Bool {
        guard RangeFloors.applies(to: target) else { return false }
        return keyNames.allSatisfy { name in
            let s = source.columns[source.columnIndex(name)!], t = target.columns[target.columnIndex(name)!]
            return s.kind == t.kind && (s.kind == .integer || s.sqlType == t.sqlType)
        }
    }

    /// Resolves and checks the pair; throws `VerifyError`/`BackfillError` naming what is wrong.
    public static func resolve(source sourceName: TableName, target targetName: TableName,
                               sourceConn: PGConnection, targetConn: PGConnection, denySchemas: [String] = []) throws -> BackfillTable {
        if sourceName.schema == "cdcr" { throw BackfillError("table \(sourceName) is cdcr's own bookkeeping, not a table to copy") }
        if let refusal = ForbiddenSchemas(configured: denySchemas).refusal(targetName) { throw BackfillError(refusal.message) }
        let pair = try TablePair.resolve(source: sourceName, target: targetName, only: nil, sourceConn: sourceConn, targetConn: targetConn)
        let source = pair.source, target = pair.target
        let missing = source.columns.map(\.name).filter { target.columnIndex($0) == nil }
        if !missing.isEmpty {
            throw BackfillError("columns of \(sourceName) missing in the target \(targetName): \(missing.joined(separator: ", ")); add them to the target (cdcr never alters user tables)")
        }
        var incompatible: [String] = []
        for s in source.columns {
            let t = target.columns[target.columnIndex(s.name)!]
            if !Self.compatible(source: s, target: t) { incompatible.append("\(s.name) (\(s.sqlType) in the source, \(t.sqlType) in the target)") }
        }
        if !incompatible.isEmpty {
            throw BackfillError("incompatible column types between \(sourceName) and \(targetName): \(incompatible.joined(separator: "; "))")
        }
        let targetOnly = target.columns.indices.filter { source.columnIndex(target.columns[$0].name) == nil }
        let required = targetOnly.filter { target.columns[$0].notNull }.map { target.columns[$0].name }
        if !required.isEmpty {
            throw BackfillError("target \(targetName) has NOT NULL columns the source \(sourceName) lacks: \(required.joined(separator: ", ")); the copy could not fill them")
        }
        let copied = source.columns.map(\.name)
        let keyPositions = pair.keyColumns.map { k in copied.firstIndex(of: k.name)! }
        return BackfillTable(pair: pair, copied: copied, keyPositions: keyPositions, targetOnly: targetOnly)
    }

    /// Whether the target column's type reads the source column's text output with the same meaning:
    /// the same type; the same kind where the text form is shared (integer widths, text types, json
    /// and jsonb); integers into numeric; any value into a text type. The rest (e.g. timestamptz into
    /// timestamp, which would drop the zone) is refused.
    static func compatible(source s: ColumnInfo, target t: ColumnInfo) -> Bool {
        if s.sqlType == t.sqlType { return true }
        switch (s.kind, t.kind) {
        case (.integer, .integer):
            return Self.integerWidth(t.sqlType) >= Self.integerWidth(s.sqlType)
        case (.integer, .numeric), (.numeric, .numeric), (.text, .text), (.json, .json),
             (.float, .float), (.timestamptz, .timestamptz), (.timestamp, .timestamp), (_, .text):
            return true
        default:
            return false
        }
    }

    private static func integerWidth(_ sqlType: String) -> Int {
        switch sqlType {
        case "smallint": 2
        case "integer": 4
        case "oid": 5  // unsigned 32-bit: fits bigint, not integer
        default: 8
        }
    }
}
