/// The consume loop's batching decisions, as a value type with no I/O (like postgres-nio's
/// `ConnectionStateMachine`): the loop reports what happened (a message arrived, a poll came back
/// empty, the database finished a batch …) and runs the action returned.
///
/// **Natural batching.** At most one batch is in the database; the next one fills meanwhile. When the
/// database is free and the consumer has no message ready (a short poll returns nothing), the batch
/// being filled goes at once, whatever its size: a change on an idle stream waits for no timer. Under
/// load the batch in the database takes longer, so more messages gather behind it and batches grow by
/// themselves until the database keeps up. `maxEvents` and `maxWait` stay upper bounds: a full batch,
/// or one whose first message has waited `maxWait`, goes as soon as the database is free (the loop
/// waits for it).
///
/// Every event updates the state and returns the one thing to do next, decided from the state alone.
///
/// ```
/// event                    state after                         action
/// messageReceived          pending += 1                        flush if full or maxWait is up; else poll
/// pollReturnedNothing      nothing ready (if database free)    flush if pending and database free;
///                                                              idle if quiet for idleInterval; else poll
/// inFlightFinished         database free                       poll once more (readyPoll) if pending; else settle
/// handedOver               pending → in flight                 poll (inFlightPoll)
/// settled / idleDone       nothing in flight / quiet restarts  poll
/// stopRequested            stopping                            stop
/// ```
public struct BatchingStateMachine: Sendable {
    public typealias Instant = ContinuousClock.Instant

    /// The upper bounds and poll timeouts.
    public struct Limits: Sendable, Equatable {
        /// A batch holding this many messages is handed over without polling for more.
        public var maxEvents: Int
        /// A batch whose first message has waited this long is handed over without polling for more.
        public var maxWait: Duration
        /// The "is anything ready?" poll before a batch goes to a free database. Zero: only what the
        /// consumer has already fetched joins the batch; a steady trickle would otherwise keep a
        /// free database waiting until `maxWait`.
        public var readyPoll: Duration
        /// Poll timeout while a batch is in the database: how soon its end is noticed.
        public var inFlightPoll: Duration
        /// Poll timeout when nothing is pending or in flight.
        public var idlePoll: Duration
        /// With nothing pending or in flight, how long without a message before `idle` (and then
        /// between two `idle`s).
        public var idleInterval: Duration

        public init(maxEvents: Int, maxWait: Duration, readyPoll: Duration = .zero, inFlightPoll: Duration = .milliseconds(2),
                    idlePoll: Duration = .milliseconds(100), idleInterval: Duration? = nil) {
            self.maxEvents = max(1, maxEvents)
            self.maxWait = maxWait
            self.readyPoll = readyPoll
            self.inFlightPoll = inFlightPoll
            self.idlePoll = idlePoll
            self.idleInterval = idleInterval ?? maxWait
        }
    }

    /// What the loop does next.
    public enum Action: Sendable, Equatable {
        /// Poll the consumer once, for at most `timeout`; report `messageReceived` or
        /// `pollReturnedNothing`. While `watchingInFlight`, first look whether the batch in the
        /// database has finished; if so report `inFlightFinished` instead of polling.
        case poll(timeout: Duration)
        /// Hand the pending batch to the database, first waiting for the batch there (if any) to
        /// end; then report `handedOver`.
        case flush
        /// The batch in the database has ended and nothing is pending: dead-letter its poison,
        /// commit its offsets; then report `settled`.
        case settle
        /// Nothing pending, nothing in the database, no message for `idleInterval`: commit offsets
        /// no message carries (transaction markers), check retention and, when asked, whether the
        /// stream is caught up; then report `idleDone`.
        case idle
        /// Stop: apply and commit what is pending and in flight, then leave.
        case stop
    }

    public let limits: Limits
    /// Messages in the batch being filled.
    public private(set) var pending = 0
    /// When the first of them arrived (the `maxWait` bound runs from here).
    private var firstPendingAt: Instant?
    /// A batch was handed to the database and not yet settled.
    public private(set) var inFlight = false
    /// The batch in the database has finished its work (its outcomes can be collected at once).
    private var inFlightDone = false
    /// A batch is in the database and the machine has not been told it finished: before each poll
    /// the loop looks whether it has, and reports `inFlightFinished` once.
    public var watchingInFlight: Bool { inFlight && !inFlightDone }
    /// The last poll returned nothing, and the database was free when it was made.
    private var nothingReady = false
    /// The last message, or the last `idle`: the start of the quiet period.
    private var quietSince: Instant
    private var stopping = false

    public init(limits: Limits, now: Instant) {
        self.limits = limits
        quietSince = now
    }

    /// The first action.
    public func start(now: Instant) -> Action { decide(now) }

    /// A poll delivered one message, now part of the batch being filled.
    public mutating func messageReceived(now: Instant) -> Action {
        if pending == 0 { firstPendingAt = now }
        pending += 1
        nothingReady = false
        quietSince = now
        return decide(now)
    }

    /// A poll (or a failed one) returned no message.
    public mutating func pollReturnedNothing(now: Instant) -> Action {
        // Only a poll made while the database was free says "nothing ready" for a flush decision; one
        // made while it was busy must be repeated once it is free.
        nothingReady = !inFlight || inFlightDone
        return decide(now)
    }

    /// The batch in the database has finished (observed before a poll).
    public mutating func inFlightFinished(now: Instant) -> Action {
        precondition(watchingInFlight, "no batch in flight, or its end was reported already")
        inFlightDone = true
        nothingReady = false  // ask the consumer again, now that the database is free
        return decide(now)
    }

    /// The pending batch went to the database (the one before it, if any, is settled).
    public mutating func handedOver(now: Instant) -> Action {
        pending = 0
        firstPendingAt = nil
        inFlight = true
        inFlightDone = false
        nothingReady = false
        return decide(now)
    }

    /// The batch in the database ended and its offsets were committed (or the commit deferred).
    public mutating func settled(now: Instant) -> Action {
        inFlight = false
        inFlightDone = false
        return decide(now)
    }

    /// The idle work was done.
    public mutating func idleDone(now: Instant) -> Action {
        quietSince = now
        nothingReady = false
        return decide(now)
    }

    /// Everything pending and in flight was applied and committed outside the loop's actions (a
    /// partition revocation does this inside `poll`).
    public mutating func drained(now: Instant) {
        pending = 0
        firstPendingAt = nil
        inFlight = false
        inFlightDone = false
    }

    /// A graceful stop was asked for.
    public mutating func stopRequested() -> Action {
        stopping = true
        return .stop
    }

    /// The one decision, from the state alone.
    func decide(_ now: Instant) -> Action {
        if stopping { return .stop }
        let databaseFree = !inFlight || inFlightDone
        if pending > 0 {
            let deadline = firstPendingAt! + limits.maxWait
            // An upper bound is reached: the batch goes as soon as the database is free.
            if pending >= limits.maxEvents || now >= deadline { return .flush }
            if databaseFree {
                // Natural batching: nothing more is ready, so the database would only wait.
                return nothingReady ? .flush : .poll(timeout: min(limits.readyPoll, deadline - now))
            }
            return .poll(timeout: min(limits.inFlightPoll, deadline - now))
        }
        if inFlight { return inFlightDone ? .settle : .poll(timeout: limits.inFlightPoll) }
        let idleAt = quietSince + limits.idleInterval
        if nothingReady && now >= idleAt { return .idle }
        return .poll(timeout: max(.milliseconds(1), min(limits.idlePoll, idleAt - now)))
    }
}
