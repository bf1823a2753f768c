import Synchronization

/// Process-wide count of retried transient failures by reason (exported as `cdcr_retries_total`).
public final class RetryCounter: Sendable {
    public static let shared = RetryCounter()
    private let counts = Mutex<[String: Int]>([:])

    public func increment(_ reason: String) {
        counts.withLock { $0[reason, default: 0] += 1 }
        CDCRMetrics.recordRetry(reason)
    }

    public var snapshot: [String: Int] { counts.withLock { $0 } }
}
