import CDCPostgres

/// Opens connections to the target with the session settings cdcr relies on.
public enum TargetConnection {
    /// UTC and ISO dates make text forms of timestamps canonical (row keys, comparisons).
    /// `applying`: a session that applies batches (the stream, gap filling, replay) — see `applySettings`.
    public static func open(_ url: String, applicationName: String = "cdcr", applying: Bool = false) throws -> PGConnection {
        let conn = try PGConnection.connect(url)
        try conn.execute("SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; SET IntervalStyle = 'iso_8601'; SET extra_float_digits = 3; SET application_name = '\(applicationName.filter { $0.isLetter || $0.isNumber || $0 == "-" })'"
                         + (applying ? "; " + applySettings : ""))
        return conn
    }

    /// An applying session reads tables only by key. Into a target that is empty or nearly so when
    /// a batch is planned (a fresh table, one VACUUMed while empty, the minute before autovacuum
    /// analyses a table the stream is filling), PostgreSQL plans the MERGE as a nested loop over
    /// the never-analysed stage with a sequential scan of the target inside; each rescan reads every
    /// row the statement has inserted so far, so a batch of n rows costs O(n²) (20,000 rows: 3.7 s).
    /// With sequential scans priced out the target is probed through its primary key whatever the
    /// statistics say (the stage, which has no index, keeps its one scan). JIT is off because that
    /// price would push every statement over `jit_above_cost`. `ApplyPlanTests` counts the scans.
    public static let applySettings = "SET enable_seqscan = off; SET jit = off"

}
