@testable import CDCCore
import Testing

/// The consume loop's batching decisions, driven event by event with a made-up clock.
@Suite("batching state machine")
struct BatchingStateMachineTests {
    typealias Action = BatchingStateMachine.Action
    let t0 = ContinuousClock.now
    let limits = BatchingStateMachine.Limits(maxEvents: 5, maxWait: .milliseconds(200))

    func at(_ ms: Int) -> ContinuousClock.Instant { t0 + .milliseconds(ms) }

    @Test("an idle stream: one message goes to the database after one short empty poll, not after max_wait")
    func singleMessageGoesAtOnce() {
        var m = BatchingStateMachine(limits: limits, now: at(0))
        #expect(m.start(now: at(0)) == .poll(timeout: .milliseconds(100)))
        #expect(m.messageReceived(now: at(50)) == .poll(timeout: limits.readyPoll))
        #expect(m.pollReturnedNothing(now: at(51)) == .flush)
        #expect(m.handedOver(now: at(52)) == .poll(timeout: limits.inFlightPoll))
        #expect(m.inFlight && m.pending == 0)
    }

    @Test("messages that keep coming while the database is free are gathered until none is ready")
    func readyMessagesJoinTheBatch() {
        var m = BatchingStateMachine(limits: limits, now: at(0))
        #expect(m.messageReceived(now: at(1)) == .poll(timeout: limits.readyPoll))
        #expect(m.messageReceived(now: at(1)) == .poll(timeout: limits.readyPoll))
        #expect(m.messageReceived(now: at(2)) == .poll(timeout: limits.readyPoll))
        #expect(m.pending == 3)
        #expect(m.pollReturnedNothing(now: at(3)) == .flush)
    }

    @Test("while a batch is in the database the next keeps filling: an empty poll then does not flush")
    func fillsWhileInFlight() {
        var m = BatchingStateMachine(limits: limits, now: at(0))
        _ = m.messageReceived(now: at(0))
        #expect(m.pollReturnedNothing(now: at(1)) == .flush)
        _ = m.handedOver(now: at(1))
        #expect(m.messageReceived(now: at(2)) == .poll(timeout: limits.inFlightPoll))
        #expect(m.pollReturnedNothing(now: at(4)) == .poll(timeout: limits.inFlightPoll), "the database is busy: keep filling")
        #expect(m.messageReceived(now: at(5)) == .poll(timeout: limits.inFlightPoll))
        // The database is done: ask the consumer once more before the batch goes, even though the
        // last poll (made while it was busy) was empty. The end is reported once: the loop stops
        // looking at the finished batch (looking again would spin without polling).
        #expect(m.watchingInFlight)
        #expect(m.inFlightFinished(now: at(30)) == .poll(timeout: limits.readyPoll))
        #expect(!m.watchingInFlight && m.inFlight)
        #expect(m.pollReturnedNothing(now: at(31)) == .flush)
        #expect(m.handedOver(now: at(31)) == .poll(timeout: limits.inFlightPoll))
    }

    @Test("a full batch goes as soon as the database is free, without another poll; max_events is the bound")
    func fullBatchWaitsForInFlight() {
        var m = BatchingStateMachine(limits: limits, now: at(0))
        _ = m.messageReceived(now: at(0))
        _ = m.pollReturnedNothing(now: at(1))
        _ = m.handedOver(now: at(1))
        var last: Action = .stop
        for i in 0..<5 { last = m.messageReceived(now: at(2 + i)) }
        #expect(last == .flush, "full: the loop waits for the batch in flight, then hands this one over")
        #expect(m.pending == 5)
    }

    @Test("max_wait bounds how long the first pending message waits, even while messages keep arriving")
    func maxWaitIsABound() {
        var m = BatchingStateMachine(limits: BatchingStateMachine.Limits(maxEvents: 1_000, maxWait: .milliseconds(200)), now: at(0))
        _ = m.messageReceived(now: at(0))
        _ = m.pollReturnedNothing(now: at(1))
        _ = m.handedOver(now: at(1))
        #expect(m.messageReceived(now: at(10)) == .poll(timeout: .milliseconds(2)))
        // Polls are cut at the deadline: 200 ms after the first pending message.
        #expect(m.messageReceived(now: at(209)) == .poll(timeout: .milliseconds(1)))
        #expect(m.messageReceived(now: at(210)) == .flush)
    }

    @Test("the batch in the database ends with nothing pending: settle it at once")
    func settleWhenNothingPending() {
        var m = BatchingStateMachine(limits: limits, now: at(0))
        _ = m.messageReceived(now: at(0))
        _ = m.pollReturnedNothing(now: at(1))
        _ = m.handedOver(now: at(1))
        #expect(m.pollReturnedNothing(now: at(3)) == .poll(timeout: limits.inFlightPoll))
        #expect(m.inFlightFinished(now: at(8)) == .settle)
        #expect(m.settled(now: at(9)) == .poll(timeout: .milliseconds(100)))
        #expect(!m.inFlight)
    }

    @Test("idle work comes after max_wait without a message, then once every max_wait")
    func idleCadence() {
        var m = BatchingStateMachine(limits: limits, now: at(0))
        #expect(m.pollReturnedNothing(now: at(100)) == .poll(timeout: .milliseconds(100)), "quiet for 100 ms only")
        #expect(m.pollReturnedNothing(now: at(200)) == .idle)
        #expect(m.idleDone(now: at(205)) == .poll(timeout: .milliseconds(100)))
        #expect(m.pollReturnedNothing(now: at(305)) == .poll(timeout: .milliseconds(100)))
        #expect(m.pollReturnedNothing(now: at(405)) == .idle)
        // A message resets the quiet period.
        _ = m.idleDone(now: at(405))
        _ = m.messageReceived(now: at(450))
        _ = m.pollReturnedNothing(now: at(451))
        _ = m.handedOver(now: at(451))
        _ = m.inFlightFinished(now: at(460))
        #expect(m.settled(now: at(461)) == .poll(timeout: .milliseconds(100)))
        #expect(m.pollReturnedNothing(now: at(561)) == .poll(timeout: .milliseconds(89)), "the poll ends when the quiet period does")
        #expect(m.pollReturnedNothing(now: at(650)) == .idle)
    }

    @Test("no idle while a batch is pending or in the database")
    func noIdleWhileBusy() {
        var m = BatchingStateMachine(limits: limits, now: at(0))
        _ = m.messageReceived(now: at(0))
        _ = m.pollReturnedNothing(now: at(1))
        _ = m.handedOver(now: at(1))
        #expect(m.pollReturnedNothing(now: at(900)) == .poll(timeout: limits.inFlightPoll))
    }

    @Test("a stop request wins over everything, and stays")
    func stopWins() {
        var m = BatchingStateMachine(limits: limits, now: at(0))
        _ = m.messageReceived(now: at(0))
        #expect(m.stopRequested() == .stop)
        #expect(m.messageReceived(now: at(1)) == .stop)
        #expect(m.pollReturnedNothing(now: at(2)) == .stop)
    }

    @Test("a revocation drains both batches inside poll: the machine starts over from nothing")
    func drainedByRevocation() {
        var m = BatchingStateMachine(limits: limits, now: at(0))
        _ = m.messageReceived(now: at(0))
        _ = m.pollReturnedNothing(now: at(1))
        _ = m.handedOver(now: at(1))
        _ = m.messageReceived(now: at(2))
        m.drained(now: at(3))
        #expect(!m.inFlight && m.pending == 0)
        #expect(m.pollReturnedNothing(now: at(4)) == .poll(timeout: .milliseconds(100)))
    }

    @Test("under load batches grow by themselves: what arrives during one transaction is the next batch")
    func batchesGrowWithLoad() {
        // A simulated database that needs 5 ms + 0.05 ms per event, and 10 events arriving per ms: a
        // batch of n takes 5 + 0.05 n ms, in which 50 + 0.5 n arrive, so sizes settle near n = 100.
        var m = BatchingStateMachine(limits: BatchingStateMachine.Limits(maxEvents: 20_000, maxWait: .milliseconds(200)), now: at(0))
        var now = t0
        var sizes: [Int] = []
        var dbFreeAt: ContinuousClock.Instant?
        var action = m.start(now: now)
        var nextArrival = t0
        while sizes.count < 20 {
            switch action {
            case let .poll(timeout):
                // A poll returns the next message if it arrives within the timeout, else nothing.
                if let free = dbFreeAt, now >= free {
                    dbFreeAt = nil
                    action = m.inFlightFinished(now: now)
                } else if nextArrival <= now + timeout {
                    now = max(now, nextArrival)
                    nextArrival += .microseconds(100)
                    action = m.messageReceived(now: now)
                } else {
                    now += timeout
                    action = m.pollReturnedNothing(now: now)
                }
            case .flush:
                if let free = dbFreeAt { now = max(now, free) }
                sizes.append(m.pending)
                dbFreeAt = now + .milliseconds(5) + .microseconds(50 * m.pending)
                action = m.handedOver(now: now)
            case .settle:
                action = m.settled(now: now)
            case .idle:
                action = m.idleDone(now: now)
            case .stop:
                Issue.record("unexpected stop")
                return
            }
        }
        #expect(sizes.first == 1, "the first change goes alone: \(sizes)")
        #expect(sizes.suffix(5).allSatisfy { (90...110).contains($0) }, "batches grew to what the load needs: \(sizes)")
    }
}
