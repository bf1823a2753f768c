/// Latency quantiles over the last few minutes, in bounded memory whatever the event rate: one
/// histogram per minute over logarithmic buckets (each 10 % wider than the one before, 1 ms to
/// ~17 min), so a quantile is exact to within 10 %. The status page shows its p50 and p99.
public struct LatencyWindow: Sendable {
    /// Upper bounds of the buckets, in seconds; a last bucket holds everything above.
    static let bounds: [Double] = {
        var b: [Double] = []
        var x = 0.001
        while x < 1_000 { b.append(x); x *= 1.1 }
        return b
    }()

    private struct Minute: Sendable {
        var index: Int64
        var counts: [Int]
    }

    /// Minutes kept.
    public let minutes: Int
    private var slots: [Minute] = []

    public init(minutes: Int = 5) {
        self.minutes = max(1, minutes)
    }

    /// Adds one latency, observed at `now` (seconds since the epoch).
    public mutating func record(seconds: Double, at now: Double) {
        let minute = Int64((now / 60).rounded(.down))
        if slots.last?.index != minute {
            slots.append(Minute(index: minute, counts: [Int](repeating: 0, count: Self.bounds.count + 1)))
            slots.removeAll { $0.index <= minute - Int64(minutes) }
        }
        slots[slots.count - 1].counts[Self.bucket(seconds)] += 1
    }

    /// Index of the first bucket whose bound holds `seconds` (binary search).
    static func bucket(_ seconds: Double) -> Int {
        var lo = 0, hi = bounds.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if bounds[mid] >= seconds { hi = mid } else { lo = mid + 1 }
        }
        return lo
    }

    /// Latencies recorded in the `minutes` before `now`.
    public func count(at now: Double) -> Int {
        recent(now).reduce(0) { $0 + $1.reduce(0, +) }
    }

    /// The `q`-quantile (0…1) of the latencies recorded in the `minutes` before `now`: the upper
    /// bound of the bucket it falls in, in seconds; nil when there are none.
    public func quantile(_ q: Double, at now: Double) -> Double? {
        let recent = recent(now)
        var merged = [Int](repeating: 0, count: Self.bounds.count + 1)
        for counts in recent { for (i, n) in counts.enumerated() { merged[i] += n } }
        let total = merged.reduce(0, +)
        guard total > 0 else { return nil }
        let rank = max(1, Int((q * Double(total)).rounded(.up)))
        var seen = 0
        for (i, n) in merged.enumerated() {
            seen += n
            if seen >= rank { return i < Self.bounds.count ? Self.bounds[i] : .infinity }
        }
        return .infinity
    }

    private func recent(_ now: Double) -> [[Int]] {
        let minute = Int64((now / 60).rounded(.down))
        return slots.filter { $0.index > minute - Int64(minutes) && $0.index <= minute }.map(\.counts)
    }
}
