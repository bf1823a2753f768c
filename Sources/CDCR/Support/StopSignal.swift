import Foundation
import Synchronization

/// A flag long-running loops check to stop at their next safe point (SIGTERM, shutdown, tests).
public final class StopSignal: Sendable {
    private let flag = Atomic<Bool>(false)

    public init() {}

    public func stop() { flag.store(true, ordering: .releasing) }

    public var isStopped: Bool { flag.load(ordering: .acquiring) }

    /// Sleeps up to `ms`, waking early when stopped. Returns false when stopped.
    @discardableResult
    public func sleep(ms: Int) -> Bool {
        var left = ms
        while left > 0 {
            if isStopped { return false }
            let step = min(left, 50)
            usleep(UInt32(step * 1000))
            left -= step
        }
        return !isStopped
    }
}

/// Capped exponential backoff with jitter, for retrying transient failures indefinitely.
public struct Backoff: Sendable {
    public let baseMs: Int
    public let capMs: Int
    public private(set) var attempt = 0

    public init(baseMs: Int = 100, capMs: Int) {
        self.baseMs = baseMs
        self.capMs = max(capMs, baseMs)
    }

    /// The next delay in milliseconds (±20 % jitter so restarted workers do not retry in lockstep).
    public mutating func next() -> Int {
        let exp = min(attempt, 20)
        attempt += 1
        let raw = min(capMs, baseMs << exp)
        let jitter = Int.random(in: -(raw / 5)...(raw / 5))
        return max(1, raw + jitter)
    }

    public mutating func reset() { attempt = 0 }
}

/// Runs blocking work (libpq, librdkafka) on a dedicated thread so Swift's cooperative pool is never
/// blocked, and resumes the awaiting task with its result.
public enum BlockingExecutor {
    public static func run<T: Sendable>(name: String = "cdcr-blocking", _ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { (cont: CheckedContinuation<T, any Error>) in
            let thread = Thread {
                do { cont.resume(returning: try body()) } catch { cont.resume(throwing: error) }
            }
            thread.name = name
            thread.stackSize = 8 << 20
            thread.start()
        }
    }
}
