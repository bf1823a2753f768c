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
