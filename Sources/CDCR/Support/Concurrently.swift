import Foundation
import Synchronization

/// Runs `a` and `b` at the same time on two threads (blocking calls welcome: these are not Swift's
/// cooperative pool) and returns both results, or the first error once both have finished.
public func concurrently<A: Sendable, B: Sendable>(_ a: @Sendable () throws -> A, _ b: @Sendable () throws -> B) throws -> (A, B) {
    let results = Mutex<(Result<A, any Error>?, Result<B, any Error>?)>((nil, nil))
    DispatchQueue.concurrentPerform(iterations: 2) { i in
        if i == 0 {
            let r = Result { try a() }
            results.withLock { $0.0 = r }
        } else {
            let r = Result { try b() }
            results.withLock { $0.1 = r }
        }
    }
    let (ra, rb) = results.withLock { $0 }
    return (try ra!.get(), try rb!.get())
}
