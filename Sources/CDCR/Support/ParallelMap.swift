import Foundation

/// Maps `items` with `transform` on all cores when there are enough of them to be worth it
/// (at least `minPerWorker` per worker), keeping the order. `transform` must be pure.
func parallelMap<T: Sendable, R: Sendable>(_ items: [T], minPerWorker: Int = 2_000, _ transform: @escaping @Sendable (T) -> R) -> [R] {
    let workers = min(ProcessInfo.processInfo.activeProcessorCount, max(1, items.count / minPerWorker))
    guard workers > 1 else { return items.map(transform) }
    let chunk = (items.count + workers - 1) / workers
    let parts = Slots<[R]>(count: workers, initial: [])
    DispatchQueue.concurrentPerform(iterations: workers) { w in
        parts.set(w, items[(w * chunk)..<min(items.count, (w + 1) * chunk)].map(transform))
    }
    return parts.values.flatMap { $0 }
}

/// Fixed slots written concurrently, one writer per slot.
private final class Slots<V>: @unchecked Sendable {
    // @unchecked Sendable: each worker writes only its own slot, through a raw buffer (no shared
    // array copy-on-write), and slots are read only after concurrentPerform has returned.
    private let buffer: UnsafeMutableBufferPointer<V>

    init(count: Int, initial: V) {
        buffer = .allocate(capacity: count)
        buffer.initialize(repeating: initial)
    }

    deinit {
        buffer.deinitialize()
        buffer.deallocate()
    }

    func set(_ i: Int, _ value: V) { buffer[i] = value }

    var values: [V] { Array(buffer) }
}
