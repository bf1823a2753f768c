import CDCPostgres

/// Opens connections to the target with the session settings cdcr relies on.
public enum TargetConnection {
    /// UTC and ISO dates make text forms of timestamps canonical (row keys, comparisons).
    public static func open(_ url: String, applicationName: String = "cdcr") throws -> PGConnection {
        let conn = try PGConnection.connect(url)
        try conn.execute("SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; SET IntervalStyle = 'iso_8601'; SET extra_float_digits = 3; SET application_name = '\(applicationName.filter { $0.isLetter || $0.isNumber || $0 == "-" })'")
        return conn
    }
}
