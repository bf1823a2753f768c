import ServiceLifecycle

/// Runs a blocking service loop on its own thread until it returns. Both graceful shutdown
/// (SIGTERM/SIGINT) and task cancellation (a sibling service failed) raise `stop`, which the loop
/// checks at its next safe point; a cancelled task alone would never reach a thread.
func runBlockingService<T: Sendable>(name: String, stop: StopSignal, _ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withTaskCancellationHandler {
        try await withGracefulShutdownHandler {
            try await BlockingExecutor.run(name: name, body)
        } onGracefulShutdown: {
            stop.stop()
        }
    } onCancel: {
        stop.stop()
    }
}

/// A blocking loop as a lifecycle service: `body` runs on its own thread and returns when the
/// `StopSignal` it is given is raised (graceful shutdown, or a sibling service failed).
public final class BlockingLoopService: Service, Sendable {
    private let name: String
    private let body: @Sendable (StopSignal) throws -> Void
    private let stop = StopSignal()

    /// `name` names the thread.
    public init(name: String, _ body: @escaping @Sendable (StopSignal) throws -> Void) {
        self.name = name
        self.body = body
    }

    /// Runs `body` until it returns.
    public func run() async throws {
        let (body, stop) = (self.body, self.stop)
        try await runBlockingService(name: name, stop: stop) { try body(stop) }
    }
}
