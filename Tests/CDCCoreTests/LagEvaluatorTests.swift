@testable import CDCCore
import Testing

@Suite("Burrow lag rules")
struct LagEvaluatorTests {
    func s(_ t: Double, _ c: Int64, _ e: Int64) -> LagSample { LagSample(time: t, committed: c, end: e) }

    @Test("no lag is OK; moving commits with steady lag are OK")
    func ok() {
        #expect(LagEvaluator.evaluate([s(0, 10, 10)], window: 60, now: 1) == .ok)
        #expect(LagEvaluator.evaluate([s(0, 10, 20), s(10, 20, 30), s(20, 30, 35)], window: 60, now: 21) == .ok)
    }

    @Test("lag growing across the window while commits move is WARN")
    func warn() {
        #expect(LagEvaluator.evaluate([s(0, 10, 20), s(10, 15, 30), s(20, 20, 45)], window: 60, now: 21) == .warn)
    }

    @Test("committed offset unchanged while lagging is STALL, then STOP after the window")
    func stallThenStop() {
        let h = [s(0, 10, 20), s(5, 10, 25)]
        #expect(LagEvaluator.evaluate(h, window: 60, now: 6) == .stall)
        #expect(LagEvaluator.evaluate(h + [s(70, 10, 25)], window: 60, now: 71) == .stop)
    }

    @Test("committed offset going backwards is REWIND, even without lag")
    func rewind() {
        #expect(LagEvaluator.evaluate([s(0, 50, 50), s(5, 20, 50)], window: 60, now: 6) == .rewind)
    }

    @Test("group verdict")
    func group() {
        #expect(LagEvaluator.group([.ok, .warn]) == .warn)
        #expect(LagEvaluator.group([.ok, .stall, .warn]) == .err)
        #expect(LagEvaluator.group([]) == .ok)
    }
}
