@testable import CDCCore
import Testing

@Suite("latency window")
struct LatencyWindowTests {
    @Test("quantiles are within one 10 % bucket of the true ones")
    func quantiles() throws {
        var w = LatencyWindow(minutes: 5)
        // 1 … 1000 ms, one each: p50 = 500 ms, p99 = 990 ms.
        for ms in 1...1_000 { w.record(seconds: Double(ms) / 1_000, at: 6_000) }
        let p50 = try #require(w.quantile(0.5, at: 6_000))
        let p99 = try #require(w.quantile(0.99, at: 6_000))
        #expect(p50 >= 0.5 && p50 < 0.5 * 1.1, "\(p50)")
        #expect(p99 >= 0.99 && p99 < 0.99 * 1.1, "\(p99)")
        #expect(w.count(at: 6_000) == 1_000)
    }

    @Test("only the last minutes count; an empty window has no quantile")
    func window() {
        var w = LatencyWindow(minutes: 5)
        #expect(w.quantile(0.5, at: 0) == nil)
        w.record(seconds: 10, at: 60 * 100)        // minute 100: slow
        w.record(seconds: 0.002, at: 60 * 103 + 5) // minute 103: fast
        #expect(w.count(at: 60 * 104) == 2)
        #expect(w.quantile(1, at: 60 * 104)! >= 10)
        // Minute 105: minute 100 has left the five-minute window.
        #expect(w.count(at: 60 * 105) == 1)
        #expect(w.quantile(1, at: 60 * 105)! < 0.0025)
        #expect(w.quantile(0.5, at: 60 * 200) == nil)
    }
}
