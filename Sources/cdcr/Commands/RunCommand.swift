import ArgumentParser
import CDCCore
import CDCR
import Foundation
import Logging
import ServiceLifecycle

struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Consume change events from Kafka and apply them to the target, idempotently."
    )

    @OptionGroup var global: GlobalOptions

    @Flag(help: "Exit 0 once every assigned partition is applied and committed up to its end offset.")
    var stopWhenCaughtUp = false

    @Option(help: "Event format: auto (detect per message), native or debezium (CDCR_FORMAT).")
    var format: String?

    @Option(help: "Poison events: dead-letter (default) or halt (CDCR_ON_POISON).")
    var onPoison: String?

    @Option(help: "Dead-letter topic (default <topic>.dlq) (CDCR_DLQ_TOPIC).")
    var dlqTopic: String?

    @Option(parsing: .unconditional, help: "Most events per batch (CDCR_BATCH_MAX_EVENTS).")
    var batchMaxEvents: Int?

    @Option(parsing: .unconditional, help: "Longest wait to fill a batch, ms (CDCR_BATCH_MAX_WAIT_MS).")
    var batchMaxWaitMs: Int?

    @Option(parsing: .unconditional, help: "Retries of a batch that failed for an unclear reason (SQLSTATE 58, XX, …) before its changes are isolated and the failing ones dead-lettered (default 3; CDCR_UNCLEAR_ERROR_RETRIES).")
    var unclearErrorRetries: Int?

    @Flag(help: "Apply Debezium truncate events (default: ignore and count them).")
    var applyTruncate = false

    @Option(parsing: .unconditional, help: "Gap filling: seconds between passes over the source change log (needs --source) (CDCR_GAP_FILL_INTERVAL).")
    var gapFillInterval: Int?

    @Option(parsing: .unconditional, help: "Gap filling: length of the window each pass replays, seconds (CDCR_GAP_FILL_WINDOW).")
    var gapFillWindow: Int?

    @Option(parsing: .unconditional, help: "Gap filling: how long ago the window ends, seconds (CDCR_GAP_FILL_SETTLE).")
    var gapFillSettle: Int?

    @Flag(help: "Do not run the gap filler even when a source is configured.")
    var noGapFill = false

    @Flag(help: "Do not run the reconcile jobs (reconcile.jobs) even when some are configured.")
    var noReconcile = false

    @Option(help: "Admin HTTP server address HOST:PORT (default 127.0.0.1:9464; CDCR_ADMIN_LISTEN). Token: admin.token / CDCR_ADMIN_TOKEN.")
    var adminListen: String?

    @Flag(help: "Do not start the admin HTTP server.")
    var noAdmin = false

    func run() async throws {
        let settings = try global.settings { o in
            o.format = format
            o.onPoison = onPoison
            o.dlqTopic = dlqTopic
            o.batchMaxEvents = batchMaxEvents
            o.batchMaxWaitMs = batchMaxWaitMs
            o.unclearErrorRetries = unclearErrorRetries
            if applyTruncate { o.applyTruncate = true }
            o.gapFillInterval = gapFillInterval
            o.gapFillWindow = gapFillWindow
            o.gapFillSettle = gapFillSettle
            o.adminListen = adminListen
        }
        guard settings.targetURL != nil else { throw ValidationError("--target (or CDCR_TARGET_URL) is required") }
        let logger = Logs.logger(settings)
        let registry = CDCRMetrics.registry
        CDCRMetrics.recordBuildInfo(version: CDCRVersion.current)
        let health = HealthState()
        let applier = ApplierService(settings: settings, logger: logger, stopWhenCaughtUp: stopWhenCaughtUp, health: health)
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = [
            .init(service: applier, successTerminationBehavior: .gracefullyShutdownGroup),
        ]
        if !noAdmin {
            let lag = LagSampler(settings: settings)
            services.append(.init(service: AdminServer.make(settings: settings, registry: registry, health: health, lag: lag, logger: logger)))
            services.append(.init(service: LagSamplerService(sampler: lag, logger: logger)))
        }
        if settings.sourceURL != nil && settings.gapFill.enabled && !noGapFill {
            services.append(.init(service: BlockingLoopService.gapFill(settings: settings, logger: logger), successTerminationBehavior: .gracefullyShutdownGroup))
        }
        if settings.sourceURL != nil && !settings.reconcile.jobs.isEmpty && !noReconcile {
            services.append(.init(service: BlockingLoopService.reconcile(settings: settings, logger: logger)))
        }
        let group = ServiceGroup(configuration: .init(
            services: services,
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger
        ))
        do {
            try await group.run()
        } catch is StoppedDuringRetry {
            logger.warning("stopped during an outage; nothing uncommitted was lost")
        } catch {
            fail(error)
        }
        if stopWhenCaughtUp, let summary = applier.summary { print(summary.json) }
    }
}

struct InitCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "init",
        abstract: "Create or upgrade the cdcr bookkeeping schema in the target (idempotent)."
    )

    @OptionGroup var global: GlobalOptions

    func run() throws {
        let settings = try global.settings()
        guard let url = settings.targetURL else { throw ValidationError("--target (or CDCR_TARGET_URL) is required") }
        do {
            let conn = try TargetConnection.open(url)
            let (from, to) = try BookkeepingSchema.install(on: conn)
            print(from == to ? "bookkeeping schema cdcr is up to date (version \(to))" : "bookkeeping schema cdcr upgraded from version \(from) to \(to)")
        } catch {
            fail(error)
        }
    }
}
