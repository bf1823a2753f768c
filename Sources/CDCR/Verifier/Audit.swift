import CDCCore
import CDCPostgres

/// One row of `cdcr.audit`: a table's row counts on both sides and what they say about the migration.
public struct AuditRow: Sendable, Equatable {
    public let table: TableName
    public let sourceRows: Int64
    public let targetRows: Int64

    public init(table: TableName, sourceRows: Int64, targetRows: Int64) {
        self.table = table
        self.sourceRows = sourceRows
        self.targetRows = targetRows
    }

    /// `ok` equal counts; `reject` the target has none while the source has some; `partial` the
    /// target has fewer; `overload` the target has more.
    public var status: String {
        if sourceRows == targetRows { return "ok" }
        if targetRows == 0 { return "reject" }
        return targetRows < sourceRows ? "partial" : "overload"
    }
}

/// `cdcr audit`: counts every table on both sides at once and upserts `cdcr.audit` in the target.
public enum Audit {
    public static func refresh(run: VerifyRun, settings: Settings, tables: [TableName]) throws -> [AuditRow] {
        try BookkeepingSchema.install(on: run.target)
        var rows: [AuditRow] = []
        for name in tables {
            let targetName = settings.targetTable(for: name)
            guard try Catalog.load(name, on: run.source) != nil else { throw VerifyError("table \(name) does not exist in the source database") }
            guard try Catalog.load(targetName, on: run.target) != nil else { throw VerifyError("table \(targetName) does not exist in the target database") }
            let (s, t) = try concurrently({ [source = run.source] in try count(name, on: source) }, { [target = run.target] in try count(targetName, on: target) })
            rows.append(AuditRow(table: name, sourceRows: s, targetRows: t))
        }
        try run.target.transaction { c in
            for r in rows {
                try c.query("""
                    INSERT INTO cdcr.audit (table_schema, table_name, src_row_count, tgt_row_count, status, updated_at)
                    VALUES ($1, $2, $3, $4, $5, now())
                    ON CONFLICT (table_schema, table_name) DO UPDATE SET src_row_count = EXCLUDED.src_row_count,
                        tgt_row_count = EXCLUDED.tgt_row_count, status = EXCLUDED.status, updated_at = now()
                    """, [r.table.schema, r.table.name, String(r.sourceRows), String(r.targetRows), r.status])
            }
        }
        return rows
    }

    static func count(_ table: TableName, on conn: PGConnection) throws -> Int64 {
        Int64(try conn.query("SELECT count(*) FROM \(table.quoted)").scalar ?? "0") ?? 0
    }
}
