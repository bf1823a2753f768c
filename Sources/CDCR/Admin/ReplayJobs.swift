import CDCCore
import Foundation
import Logging
import Synchronization

/// Replay jobs started through `POST /replay`: each runs on its own thread; `GET /replay/{id}`
/// reads its progress and, when done, the same summary `cdcr replay --json` prints.
public final class ReplayJobs: Sendable {
    public struct Job: Sendable {
        public let id: String
        public let from: String
        public let to: String
        public let tables: [String]
        public let dryRun: Bool
        public var status = "running"
        public var done = 0
        public var total = 0
        public var summary: String?
        public var error: String?

        public var json: String {
            "{\"id\":\"\(id)\",\"status\":\"\(status)\",\"from\":\(JSONValue.string(from).serialized),\"to\":\(JSONValue.string(to).serialized)," +
                "\"tables\":[\(tables.map { JSONValue.string($0).serialized }.joined(separator: ","))],\"dry_run\":\(dryRun)," +
                "\"progress\":{\"done\":\(done),\"total\":\(total)},\"summary\":\(summary ?? "null"),\"error\":\(error.map { JSONValue.string($0).serialized } ?? "null")}"
        }
    }

    private let jobs = Mutex<[String: Job]>([:])
    private let settings: Settings
    private let logger: Logger

    public init(settings: Settings, logger: Logger) {
        self.settings = settings
        self.logger = logger
    }

    public func job(_ id: String) -> Job? { jobs.withLock { $0[id] } }

    /// Every job (for the status page).
    public var all: [Job] { jobs.withLock { Array($0.values) } }

    /// Validates the request and starts the job; returns its id.
    public func start(from: String, to: String, tables: [String], dryRun: Bool) throws(ReplayRefused) -> String {
        _ = try ReplayRun.window(settings: settings, from: from, to: to)
        let id = UUID().uuidString.lowercased()
        jobs.withLock { $0[id] = Job(id: id, from: from, to: to, tables: tables, dryRun: dryRun) }
        let (settings, logger) = (self.settings, self.logger)
        let thread = Thread { [self] in
            do {
                let report = try ReplayRun.execute(settings: settings, logger: logger, from: from, to: to,
                                                   tables: tables.map(TableName.init(parsing:)), dryRun: dryRun) { done, total in
                    self.jobs.withLock { $0[id]?.done = done; $0[id]?.total = total }
                }
                jobs.withLock {
                    $0[id]?.status = "done"
                    $0[id]?.summary = report.json(from: from, to: to, dryRun: dryRun)
                }
            } catch {
                logger.warning("replay job failed", metadata: ["id": "\(id)", "error": "\(error)"])
                jobs.withLock {
                    $0[id]?.status = "failed"
                    $0[id]?.error = "\(error)"
                }
            }
        }
        thread.name = "cdcr-replay-job"
        thread.start()
        return id
    }
}
