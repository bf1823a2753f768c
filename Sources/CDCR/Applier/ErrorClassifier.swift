import CDCCore
import CDCKafka
import CDCPostgres

/// How a failure is handled. Every error cdcr meets is classified here and nowhere else.
public enum FailureClass: Equatable, Sendable {
    /// Retry with backoff, indefinitely, committing nothing meanwhile.
    case transient(reason: String)
    /// This event can never apply: dead-letter it (or halt, by policy).
    case poison(PoisonError)
    /// Neither clearly transient nor clearly about one change (SQLSTATE 58, XX, a statement
    /// timeout, a client-side failure on a live connection): retried a bounded number of times
    /// (`unclear_error_retries`), then the batch is isolated change by change, and a change that
    /// fails so on its own is dead-lettered — unless the failure shows the database itself is
    /// broken (`isDatabaseLevel`), which is retried for as long as it lasts.
    case unclear(reason: String, sqlState: String?)
    /// Misconfiguration or a broken deployment: stop with a clear message.
    case fatal
}

public enum ErrorClassifier {
    public static func classify(_ error: any Error) -> FailureClass {
        switch error {
        case let p as PoisonError: return .poison(p)
        case let b as DatabaseBroken:
            // Waited out like an outage (the cause's own reason when that is one).
            if case let .transient(reason) = classify(b.cause) { return .transient(reason: reason) }
            return .transient(reason: "pg_database_broken")
        case let pg as PGError: return classify(pg)
        case let k as KafkaError: return k.isTransient ? .transient(reason: "kafka_" + k.name.lowercased().trimmingLeadingUnderscore) : .fatal
        case is ConfigError: return .fatal
        default: return .fatal
        }
    }

    static func classify(_ e: PGError) -> FailureClass {
        if e.malformedConnectionString { return .fatal }
        if e.connectionLost { return .transient(reason: "pg_connection") }
        guard let state = e.sqlState else { return .unclear(reason: "pg_client", sqlState: nil) }
        let cls = String(state.prefix(2))
        switch state {
        case "40001": return .transient(reason: "pg_serialization_failure")
        case "40P01": return .transient(reason: "pg_deadlock")
        case "55P03": return .transient(reason: "pg_lock_timeout")
        case "57014": return .unclear(reason: "pg_statement_timeout", sqlState: state)
        case "42703": return .poison(PoisonError(.unknownColumn, e.message, sqlState: state))
        case "42P01": return .poison(PoisonError(.unknownTable, e.message, sqlState: state))
        case "42501", "3D000": return .fatal
        default: break
        }
        switch cls {
        case "08": return .transient(reason: "pg_connection")
        case "53": return .transient(reason: "pg_insufficient_resources")
        case "57": return state.hasPrefix("57P") ? .transient(reason: "pg_shutdown") : .unclear(reason: "pg_operator", sqlState: state)
        case "58", "XX": return .unclear(reason: "pg_system_error", sqlState: state)
        case "28": return .fatal
        case "22": return .poison(PoisonError(.invalidValue, e.message, sqlState: state))
        case "23": return .poison(PoisonError(.constraintViolation, e.message, sqlState: state))
        default: return .poison(PoisonError(.rejected, e.message, sqlState: state))
        }
    }
}

extension ErrorClassifier {
    /// An unclear failure that says the database itself is in trouble, whatever change ran into it:
    /// a system error outside PostgreSQL (class 58: I/O, a missing file) or corrupted data or index
    /// (XX001, XX002). Such a failure never dead-letters a change; the batch waits for a repair.
    /// XX000 (internal error) is not on the list: extensions and type input functions raise it for
    /// one bad value (hstore's parser does).
    public static func isDatabaseLevel(sqlState: String?) -> Bool {
        guard let sqlState else { return false }
        return sqlState.hasPrefix("58") || sqlState == "XX001" || sqlState == "XX002"
    }
}

extension String {
    var trimmingLeadingUnderscore: String { hasPrefix("_") ? String(dropFirst()) : self }
}
