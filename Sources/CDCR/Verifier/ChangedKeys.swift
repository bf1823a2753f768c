import CDCCore
import CDCPostgres

/// What `cdcr verify --since TIME|last [--changed-column [TABLE=]COL]…` asks for.
public struct IncrementalOptions: Sendable {
    public enum Since: Sendable, Equatable {
        /// An instant (any `timestamptz` input), read on both databases' clocks.
        case time(String)
        /// Where the table's last successful run (`cdcr.check_state`) left off.
        case last
    }
    public var since: Since
    /// A column holding each row's last change time, per source table (`--changed-column T=C`,
    /// config `verify.changed_columns`).
    public var changedColumns: [TableName: String] = [:]
    /// The column for tables without their own entry (`--changed-column C`).
    public var changedColumn: String?

    public init(since: Since) { self.since = since }

    func changedColumn(for table: TableName) -> String? { changedColumns[table] ?? changedColumn }
}

/// Where an incremental run starts, on each database's own clock (so clock skew between the two
/// servers loses nothing).
public struct SinceBound: Sendable, Equatable {
    public let source: String
    public let target: String
}

/// What an incremental run compared for one table.
public struct IncrementalSummary: Sendable {
    public var since: SinceBound?
    /// Distinct keys compared: the union of every source below.
    public var examined = 0
    /// Distinct keys each source named (nil: that source is not there for this table).
    public var fromChangeLog: Int?
    public var fromChangedColumn: Int?
    public var fromRowVersions: Int?
    /// Row versions whose key is stored as its SHA-256 (too long): not turned back into keys; such
    /// rows are only found through the change log or a changed column.
    public var hashedRowVersions = 0
    /// Why the table was compared in full instead of by its changed keys; nil when it was not.
    public var fullBecause: FullReason?

    public enum FullReason: Sendable {
        /// `--since last` found no earlier successful run.
        case noState
        /// A backfill recorded range watermarks since the bound: rows without row versions.
        case backfill
    }
}

/// The keys that changed since a bound, from every source there is: the source's change log
/// (`cdcr.change_log`, deletes included), a changed-at column on either side, and the versions
/// cdcr wrote in the target (`cdcr.row_versions`, deletes included as tombstones). Each key is
/// brought to its canonical text inside the database, so the union deduplicates exactly.
enum ChangedKeys {
    static func collect(pair: TablePair, source: PGConnection, target: PGConnection, since: SinceBound,
                        changedColumn: String?) throws -> (keys: [KeyTexts], summary: IncrementalSummary, notes: [String]) {
        var summary = IncrementalSummary(since: since)
        var notes: [String] = []
        if let changedColumn {
            let onSource = try changedColumnCheck(changedColumn, in: pair.source)
            let onTarget = try changedColumnCheck(changedColumn, in: pair.target)
            guard onSource || onTarget else {
                throw VerifyError("--changed-column: column '\(changedColumn)' exists neither in the source \(pair.source.name) nor in the target \(pair.target.name)")
            }
            if !onSource { notes.append("\(changedColumn) only in the target: source changes come from the change log and row versions") }
        }
        let ((log, srcColumn), (versions, hashed, tgtColumn)) = try concurrently({
            let log = try changeLogKeys(pair, on: source, since: since.source)
            let column = try changedColumn.flatMap { pair.source.columnIndex($0) == nil ? nil : $0 }
                .map { try changedColumnKeys(pair, .source, column: $0, on: source, since: since.source) }
            return (log, column)
        }, {
            let versions = try rowVersionKeys(pair, on: target, since: since.target)
            let column = try changedColumn.flatMap { pair.target.columnIndex($0) == nil ? nil : $0 }
                .map { try changedColumnKeys(pair, .target, column: $0, on: target, since: since.target) }
            return (versions?.0, versions?.1 ?? 0, column)
        })
        summary.fromChangeLog = log?.count
        summary.fromRowVersions = versions?.count
        summary.hashedRowVersions = hashed
        if changedColumn != nil { summary.fromChangedColumn = Set((srcColumn ?? []) + (tgtColumn ?? [])).count }
        if log == nil { notes.append("no change log capture on the source table: keys from row versions\(changedColumn == nil ? "" : " and \(changedColumn!)") only") }
        if hashed > 0 {
            notes.append("\(hashed) changed row versions have keys stored as SHA-256 (over \(BookkeepingKey.maxStoredBytes) bytes): only the change log or a changed column can name those rows")
        }
        var all = Set<KeyTexts>()
        for part in [log, srcColumn, versions, tgtColumn] { all.formUnion(part ?? []) }
        summary.examined = all.count
        return (all.sorted(by: keyPrecedes), summary, notes)
    }

    /// Whether `table` has `column`, and that it holds a time.
    static func changedColumnCheck(_ column: String, in table: TargetTable) throws -> Bool {
        guard let i = table.columnIndex(column) else { return false }
        guard [.timestamptz, .timestamp, .date].contains(table.columns[i].kind) else {
            throw VerifyError("--changed-column: \(table.name).\(column) is \(table.columns[i].sqlType), not a timestamp or date")
        }
        return true
    }

    /// `SELECT DISTINCT <canonical key texts> FROM (<inner, naming the key columns>) t`.
    static func canonical(_ pair: TablePair, _ side: Side, from inner: String) -> String {
        "SELECT DISTINCT \(pair.keyColumns.map { $0.canonicalText(side) }.joined(separator: ", ")) FROM (\(inner)) t"
    }

    static func keys(_ pair: TablePair, _ sql: String, _ params: [String?], on conn: PGConnection) throws -> [KeyTexts] {
        try conn.query(sql, params).rows.map { $0.map { $0 ?? "" } }
    }

    /// Keys of the table's change-log entries committed since `since`; nil when the table has no
    /// capture trigger (no log, or not installed for this table).
    static func changeLogKeys(_ pair: TablePair, on conn: PGConnection, since: String) throws -> [KeyTexts]? {
        let table = pair.source
        let captured = try conn.query("""
            SELECT to_regclass('cdcr.change_log') IS NOT NULL
               AND EXISTS (SELECT FROM pg_trigger WHERE tgrelid = $1::regclass AND tgname = 'cdcr_capture')
            """, [table.name.quoted]).scalar == "t"
        guard captured else { return nil }
        var params: [String?] = [table.name.description, since]
        let columns = pair.keyColumns.map { c -> String in
            params.append(c.name)
            return "(key ->> $\(params.count))::\(table.columns[table.columnIndex(c.name)!].sqlType) AS \(quoteIdentifier(c.name))"
        }
        let inner = "SELECT \(columns.joined(separator: ", ")) FROM cdcr.change_log WHERE table_name = $1 AND committed_at >= $2::timestamptz"
        return try keys(pair, canonical(pair, .source, from: inner), params, on: conn)
    }

    /// Keys of the rows on `side` whose `column` is at or after `since`. Deleted rows have none.
    static func changedColumnKeys(_ pair: TablePair, _ side: Side, column: String, on conn: PGConnection, since: String) throws -> [KeyTexts] {
        let table = side == .source ? pair.source : pair.target
        let inner = "SELECT * FROM \(table.name.quoted) WHERE \(quoteIdentifier(column)) >= $1::timestamptz"
        return try keys(pair, canonical(pair, side, from: inner), [since], on: conn)
    }

    /// Keys whose row version cdcr wrote (or tombstoned) in the target since `since`, and how many
    /// were skipped because their key is stored hashed; nil without bookkeeping. `row_key` is the key
    /// column's text, or `jsonb_build_array(key columns)::text` (see `StageStatements.rowKey`).
    static func rowVersionKeys(_ pair: TablePair, on conn: PGConnection, since: String) throws -> ([KeyTexts], Int)? {
        guard try conn.query("SELECT to_regclass('cdcr.row_versions') IS NOT NULL").scalar == "t" else { return nil }
        let table = pair.target
        let columns = pair.keyColumns.enumerated().map { i, c -> String in
            let type = table.columns[table.columnIndex(c.name)!].sqlType
            let text = pair.keyCount == 1 ? "row_key" : "(row_key::jsonb ->> \(i))"
            return "\(text)::\(type) AS \(quoteIdentifier(c.name))"
        }
        let recent = "FROM cdcr.row_versions WHERE table_name = $1 AND updated_at >= $2::timestamptz"
        let plain = "\(recent) AND NOT starts_with(row_key, $3)"
        let params: [String?] = [table.name.description, since, BookkeepingKey.prefix]
        let found = try keys(pair, canonical(pair, .target, from: "SELECT \(columns.joined(separator: ", ")) \(plain)"), params, on: conn)
        let hashed = Int(try conn.query("SELECT count(*) \(recent) AND starts_with(row_key, $3)", params).scalar ?? "0") ?? 0
        return (found, hashed)
    }
}
