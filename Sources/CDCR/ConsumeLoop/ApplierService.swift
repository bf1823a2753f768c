import Logging
import ServiceLifecycle

/// `cdcr run` as a lifecycle service: the consume loop on its own thread; graceful shutdown
/// (SIGTERM/SIGINT) lets it finish and commit the current batch, then leave the group.
public final class ApplierService: Service, Sendable {
    private let settings: Settings
    private let logger: Logger
    private let stopWhenCaughtUp: Bool
    private let stop = StopSignal()
    private let result = ResultBox()

    private let health: HealthState

    public init(settings: Settings, logger: Logger, stopWhenCaughtUp: Bool, health: HealthState = HealthState()) {
        self.health = health
        self.settings = settings
        self.logger = logger
        self.stopWhenCaughtUp = stopWhenCaughtUp
    }

    public func run() async throws {
        let (settings, logger, stop, stopWhenCaughtUp, result, health) = (self.settings, self.logger, self.stop, self.stopWhenCaughtUp, self.result, self.health)
        let counts = try await runBlockingService(name: "cdcr-consume-loop", stop: stop) {
            let loop = ConsumeLoop(settings: settings, logger: logger, stop: stop, stopWhenCaughtUp: stopWhenCaughtUp, health: health)
            return try loop.run()
        }
        result.set(counts)
    }

    /// What the run did, once `run` has returned.
    public var summary: RunSummary? { result.get() }
}

private final class ResultBox: Sendable {
    private let value = Mutex<RunSummary?>(nil)
    func set(_ c: RunSummary) { value.withLock { $0 = c } }
    func get() -> RunSummary? { value.withLock { $0 } }
}

import Synchronization
