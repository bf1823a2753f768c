import ArgumentParser
import CDCCore
import CDCR
import Foundation
import Logging
import ServiceLifecycle

struct ReconcileCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reconcile",
        abstract: "Reconcile jobs (reconcile.jobs): run one now, list them, or run them on their schedules.",
        discussion: """
            --job NAME runs a job now (trigger manual) and records it in cdcr.reconcile_runs and cdcr.discrepancies; \
            --list shows every job with its last run and result and its next run; --serve runs the scheduler alone \
            (cdcr run also runs it when jobs are configured). See docs/RECONCILE.md. Exit codes of --job, as verify: \
            0 nothing left to look at (consistent, or every difference repaired), 2 discrepancies remain open or queued, \
            1 the run failed, ran out of its budget, or the job is running elsewhere; 64 a bad configuration (also one found only against the catalogs, such as a newest-wins column that does not exist: the run is recorded as error).
            """
    )
    @OptionGroup var global: GlobalOptions
    @Option(help: "Run this job now.")
    var job: String?
    @Flag(help: "List the jobs: schedule, last run and result, next run.")
    var list = false
    @Flag(help: "Run the jobs on their schedules until SIGTERM/SIGINT.")
    var serve = false
    @Flag(help: "Print as JSON.")
    var json = false
    @Option(help: "With --serve: admin HTTP server address HOST:PORT for /metrics (default 127.0.0.1:9464; CDCR_ADMIN_LISTEN).")
    var adminListen: String?
    @Flag(help: "With --serve: do not start the admin HTTP server.")
    var noAdmin = false

    func validate() throws {
        let modes = [job != nil, list, serve].filter { $0 }.count
        if modes != 1 { throw ValidationError("give exactly one of --job NAME, --list, --serve") }
        if !serve && (adminListen != nil || noAdmin) { throw ValidationError("--admin-listen and --no-admin go with --serve") }
    }

    func run() async throws {
        let settings = try global.settings { $0.adminListen = adminListen }
        guard settings.targetURL != nil else { throw ValidationError("--target (or CDCR_TARGET_URL) is required") }
        let logger = Logs.logger(settings, label: "cdcr.reconcile")
        if let job { try runJob(job, settings: settings, logger: logger) }
        if list { listJobs(settings: settings, logger: logger) }
        if serve {
            guard !settings.reconcile.jobs.isEmpty else { throw ValidationError("no reconcile.jobs in the config: nothing to schedule") }
            var services: [ServiceGroupConfiguration.ServiceConfiguration] = [
                .init(service: BlockingLoopService.reconcile(settings: settings, logger: logger)),
            ]
            if !noAdmin {
                // /metrics for the reconcile metrics; the lag sampler only samples when /lag is asked.
                CDCRMetrics.recordBuildInfo(version: CDCRVersion.current)
                services.append(.init(service: AdminServer.make(settings: settings, registry: CDCRMetrics.registry, health: HealthState(),
                                                                lag: LagSampler(settings: settings), logger: logger)))
            }
            let group = ServiceGroup(configuration: .init(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
            do { try await group.run() } catch { fail(error) }
        }
    }

    func runJob(_ name: String, settings: Settings, logger: Logger) throws {
        guard let job = settings.reconcile.job(named: name) else {
            let known = settings.reconcile.jobs.map(\.name)
            throw ValidationError("--job: no job named \"\(name)\" in reconcile.jobs (\(known.isEmpty ? "none configured" : known.joined(separator: ", ")))")
        }
        let outcome: ReconcileOutcome
        do {
            guard let o = try ReconcileJobRun(job: job, settings: settings, logger: logger).run(trigger: .manual, scheduledFor: nil) else {
                fail("job \(name) did not run")
            }
            outcome = o
        } catch {
            fail(error)
        }
        let c = outcome.counts
        if json {
            print("{\"run_id\":\(JSONValue.string(outcome.runID).serialized),\"job\":\(JSONValue.string(name).serialized),"
                + "\"status\":\"\(outcome.status.rawValue)\",\"found\":\(c.found),\"new\":\(c.newFound),\"auto_repaired\":\(c.autoRepaired),"
                + "\"queued\":\(c.queued),\"resolved_by_stream\":\(c.resolvedByStream),\"remaining\":\(outcome.remaining),"
                + "\"mass_drift\":[\(outcome.massDrift.map { JSONValue.string($0.description).serialized }.joined(separator: ","))],"
                + "\"error\":\(outcome.error.map { JSONValue.string($0).serialized } ?? "null")}")
        } else {
            print("\(name) run \(outcome.runID): \(outcome.status.rawValue); found \(c.found) (\(c.newFound) new), auto-repaired \(c.autoRepaired), "
                + "queued \(c.queued), resolved by the stream \(c.resolvedByStream); \(outcome.remaining) open or queued")
            for t in outcome.massDrift { print("  ! mass drift in \(t): nothing repaired, everything queued for review") }
            if let e = outcome.error { print("  ! \(e)") }
        }
        if outcome.configProblem { throw ExitCode(64) }
        switch outcome.status {
        case .error, .timeout, .running: throw ExitCode(1)
        case .ok, .drift: if outcome.remaining > 0 { throw ExitCode(2) }
        }
    }

    func listJobs(settings: Settings, logger: Logger) {
        let rows: [(job: ReconcileJob, last: ReconcileRunRecord?, decision: ScheduleDecision)]
        do {
            let scheduler = ReconcileScheduler(settings: settings, logger: logger)
            let conn = try TargetConnection.open(settings.targetURL!, applicationName: "cdcr-reconcile")
            defer { conn.close() }
            try BookkeepingSchema.install(on: conn)
            rows = try scheduler.decisions().map { ($0.job, try ReconcileStore.runs(job: $0.job.name, limit: 1, on: conn).first, $0.decision) }
        } catch {
            fail(error)
        }
        func next(_ d: ScheduleDecision) -> String {
            switch d {
            case let .wait(until): until == Int64.max ? "never" : CivilTime.timestampString(micros: until * 1_000_000, zone: "Z")
            case let .run(_, catchUp): catchUp ? "due now (catch-up)" : "due now"
            }
        }
        if json {
            print("[" + rows.map { r in
                let last = r.last.map { l in
                    "{\"run_id\":\(JSONValue.string(l.runID).serialized),\"trigger\":\"\(l.trigger.rawValue)\",\"started_at\":\(JSONValue.string(l.startedAt).serialized),"
                        + "\"finished_at\":\(l.finishedAt.map { JSONValue.string($0).serialized } ?? "null"),\"status\":\"\(l.status.rawValue)\","
                        + "\"found\":\(l.counts.found),\"auto_repaired\":\(l.counts.autoRepaired),\"queued\":\(l.counts.queued)}"
                } ?? "null"
                return "{\"job\":\(JSONValue.string(r.job.name).serialized),\"kind\":\"\(r.job.kind.rawValue)\",\"schedule\":\(JSONValue.string(r.job.schedule.description).serialized),"
                    + "\"repair\":\"\(r.job.repair.rawValue)\",\"last_run\":\(last),\"next_run\":\(JSONValue.string(next(r.decision)).serialized)}"
            }.joined(separator: ",") + "]")
            return
        }
        var table = [["JOB", "KIND", "SCHEDULE", "REPAIR", "LAST RUN", "RESULT", "NEXT RUN"]]
        for r in rows {
            let result = r.last.map { l in "\(l.status.rawValue) (found \(l.counts.found), repaired \(l.counts.autoRepaired), queued \(l.counts.queued))" } ?? "-"
            table.append([r.job.name, r.job.kind.rawValue, r.job.schedule.description, r.job.repair.rawValue, r.last?.startedAt ?? "never", result, next(r.decision)])
        }
        print(textTable(table, leftAligned: Set(0..<7)).joined(separator: "\n"))
    }
}
