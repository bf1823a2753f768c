import CDCCore
import CDCKafka
import CDCPostgres

/// How a failure is handled. Every error cdcr meets is classified here and nowhere else.
public enum FailureClass: Equatable, Sendable {
    /// Retry with backoff, indefinitely, committing nothing meanwhile.
    case transient(reason: String)
    /// This event can never apply: dead-letter it (or halt, by policy).
    case poison(PoisonError)
    /// Misconfiguration or a broken deployment: stop with a clear message.
    case fatal
}

public enum ErrorClassifier {
    public static func classify(_ error: any Error) -> FailureClass {
        switch error {
        case let p as PoisonError: return .poison(p)
        case let pg as PGError: return classify(pg)
        case let k as KafkaError: return k.isTransient ? .transient(reason: "kafka_" + k.name.lowercased().trimmingLeadingUnderscore) : .fatal
        case is ConfigError: return .fatal
        default: return .fatal
        }
    }

    static func classify(_ e: PGError) -> FailureClass {
        if e.malformedConnectionString { return .fatal }
        if e.connectionLost { return .transient(reason: "pg_connection") }
        guard let state = e.sqlState else { return .transient(reason: "pg_client") }
        let cls = String(state.prefix(2))
        switch state {
        case "40001": return .transient(reason: "pg_serialization_failure")
        case "40P01": return .transient(reason: "pg_deadlock")
        case "55P03", "57014": return .transient(reason: "pg_lock_timeout")
        case "42703": return .poison(PoisonError(.unknownColumn, e.message, sqlState: state))
        case "42P01": return .poison(PoisonError(.unknownTable, e.message, sqlState: state))
        case "42501", "3D000": return .fatal
        default: break
        }
        switch cls {
        case "08": return .transient(reason: "pg_connection")
        case "53": return .transient(reason: "pg_insufficient_resources")
        case "57": return state.hasPrefix("57P") ? .transient(reason: "pg_shutdown") : .transient(reason: "pg_operator")
        case "58", "XX": return .transient(reason: "pg_system_error")
        case "28": return .fatal
        case "22": return .poison(PoisonError(.invalidValue, e.message, sqlState: state))
        case "23": return .poison(PoisonError(.constraintViolation, e.message, sqlState: state))
        default: return .poison(PoisonError(.rejected, e.message, sqlState: state))
        }
    }
}

extension String {
    var trimmingLeadingUnderscore: String { hasPrefix("_") ? String(dropFirst()) : self }
}
