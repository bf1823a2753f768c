import CDCCore
import CDCPostgres
import Foundation

/// Stores a check run and its results in the target's bookkeeping schema, in one transaction
/// (docs/CHECKS.md: `cdcr.check_runs`, `cdcr.check_results`).
public enum CheckStore {
    /// `check-<UTC time>-<random>`, sortable by start time.
    public static func newRunID() -> String {
        sortableRunID("check")
    }

    /// Inserts the run and its results (creating or upgrading the bookkeeping schema first).
    public static func save(_ report: CheckReport, rulesFile: String?, tables: [TableName], on conn: PGConnection) throws {
        try BookkeepingSchema.install(on: conn)
        try conn.transaction { c in
            try c.query("""
                INSERT INTO cdcr.check_runs (run_id, started_at, finished_at, rules_file, tables, status, passed, failed, errors)
                VALUES ($1, now() - make_interval(secs => $2::float8), now(), $3, $4::text[], $5, $6, $7, $8)
                """, [report.runID, String(report.duration.seconds), rulesFile, pgArrayLiteral(tables.map(\.description)),
                      report.status.rawValue.lowercased(), String(report.passed), String(report.failed), String(report.errors)])
            for r in report.results {
                try c.query("""
                    INSERT INTO cdcr.check_results (run_id, check_name, kind, status, summary, numbers, examples, duration_ms)
                    VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7::jsonb, $8)
                    """, [report.runID, r.name, r.kind, r.status.rawValue.lowercased(), r.summary, r.numbersJSON, r.examplesJSON,
                          String(Int((r.duration.seconds * 1000).rounded()))])
            }
        }
    }
}
