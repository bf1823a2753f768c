import CDCCore
import CDCPostgres
import Foundation
import Logging
import Synchronization

/// Backfills started through `POST /backfill`: each runs on its own thread (the backfill's libpq
/// calls block); `GET /backfill/{id}` reads its progress and, when it ended, the same summary
/// `cdcr backfill --json` prints. `DELETE /backfill/{id}` stops it after its current chunk.
public final class BackfillJobs: Sendable {
    public struct Job: Sendable {
        public let id: String
        public let tables: [String]
        public let dryRun: Bool
        public var status = "running"
        /// Per target table: rows done and the source's estimate.
        public var progress: [String: (done: Int64, estimated: Int64, rowsPerSecond: Double)] = [:]
        public var summary: String?
        public var exitCode: Int32?
        public var error: String?

        public var json: String {
            let p = progress.keys.sorted().map { t -> (String, JSONValue) in
                let v = progress[t]!
                return (t, .object([("done", .number(String(v.done))), ("estimated", .number(String(v.estimated))),
                                    ("rows_per_second", .number(String(Int(v.rowsPerSecond))))]))
            }
            let summaryJSON = summary.flatMap { try? JSONParser.parse($0) } ?? .null
            return JSONValue.object([
                ("id", .string(id)), ("status", .string(status)), ("tables", .array(tables.map { .string($0) })), ("dry_run", .bool(dryRun)),
                ("progress", .object(p)), ("exit_code", exitCode.map { .number(String($0)) } ?? .null), ("summary", summaryJSON),
                ("error", error.map { .string($0) } ?? .null),
            ]).serialized
        }
    }

    private let jobs = Mutex<[String: (Job, StopSignal)]>([:])
    private let settings: Settings
    private let logger: Logger

    public init(settings: Settings, logger: Logger) {
        self.settings = settings
        self.logger = logger
    }

    public func job(_ id: String) -> Job? { jobs.withLock { $0[id]?.0 } }

    /// Asks a running job to stop after its current chunk; false when there is no such job.
    public func stop(_ id: String) -> Bool {
        guard let signal = jobs.withLock({ $0[id]?.1 }) else { return false }
        signal.stop()
        return true
    }

    /// Checks what needs no database and starts the job; returns its id. Everything else (tables,
    /// keys, columns, types, `--where`) is checked by the job before it writes, and a refusal is
    /// the job's `error`.
    public func start(_ options: BackfillOptions) throws(BackfillError) -> String {
        guard !options.tables.isEmpty else { throw BackfillError("tables must name at least one table") }
        guard settings.sourceURL != nil else { throw BackfillError("no source database configured (source_url / CDCR_SOURCE_URL)") }
        guard options.chunkRows >= 1, options.parallel >= 1 else { throw BackfillError("chunk_rows and parallel must be at least 1") }
        if let r = options.maxRowsPerSecond, !(r > 0 && r.isFinite) { throw BackfillError("max_rows_per_second must be a number > 0") }
        let id = UUID().uuidString.lowercased()
        let stop = StopSignal()
        jobs.withLock { $0[id] = (Job(id: id, tables: options.tables.map(\.description), dryRun: options.dryRun), stop) }
        let (settings, logger) = (self.settings, self.logger)
        let thread = Thread { [self] in
            let backfiller = Backfiller(settings: settings, options: options, logger: logger, stop: stop) { p in
                self.jobs.withLock { $0[id]?.0.progress[p.table.description] = (p.rowsDone, p.estimatedRows, p.rowsPerSecond) }
            }
            do {
                let report = try backfiller.run()
                jobs.withLock {
                    $0[id]?.0.status = report.tables.contains { $0.stopped } ? "stopped" : "done"
                    $0[id]?.0.summary = report.json
                    $0[id]?.0.exitCode = report.exitCode
                }
            } catch {
                logger.warning("backfill job failed", metadata: ["id": "\(id)", "error": "\(error)"])
                jobs.withLock {
                    $0[id]?.0.status = "failed"
                    $0[id]?.0.exitCode = 1
                    $0[id]?.0.error = redactConnectionString("\(error)")
                }
            }
        }
        thread.name = "cdcr-backfill-job"
        thread.stackSize = 8 << 20
        thread.start()
        return id
    }
}
