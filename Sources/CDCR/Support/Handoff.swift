import Foundation
import Synchronization

/// Work running on another thread, whose result the caller collects later: lets the consume loop
/// poll and decode batch n+1 while batch n is inside the database. Blocking calls are welcome on
/// that thread (a serial dispatch queue of our own, not Swift's cooperative pool).
final class Handoff<Value>: Sendable {
    private let done = DispatchSemaphore(value: 0)
    private let result = Mutex<UncheckedSendable<Result<Value, any Error>>?>(nil)

    /// Starts `work` on `queue`. `work` may capture state that is not Sendable only if the caller
    /// leaves that state alone until `wait` returns.
    init(on queue: DispatchQueue, _ work: @escaping () throws -> Value) {
        let task = UncheckedSendable(work)
        queue.async { [self] in
            let r = Result { try task.value() }
            result.withLock { $0 = UncheckedSendable(r) }
            done.signal()
        }
    }

    /// Whether the work has finished (`wait` would not block).
    var isFinished: Bool { result.withLock { $0 != nil } }

    /// Blocks until the work is done; its value, or the error it threw. Call once.
    func wait() throws -> Value {
        done.wait()
        return try result.withLock { $0! }.value.get()
    }
}

/// Carries a value to another thread whose access the code around it serialises by other means.
struct UncheckedSendable<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}
