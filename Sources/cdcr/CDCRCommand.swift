import ArgumentParser
import CDCR
import Foundation
import Logging

@main
struct CDCRCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cdcr",
        abstract: "cdc-reconciler: apply CDC streams idempotently, fill their gaps, watch their lag, reconcile tables.",
        version: CDCRVersion.current,
        subcommands: [RunCommand.self, InitCommand.self, SourceCommand.self, RelayCommand.self, ReplayCommand.self, LagCommand.self, DevKafkaCommand.self, DevProduceCommand.self, VerifyCommand.self, CheckCommand.self, RepairCommand.self, RepairUndoCommand.self, AuditCommand.self, ReconcileCommand.self, ReviewCommand.self, ReportCommand.self, BackfillCommand.self, BenchCommand.self]
    )

    /// A peer that closes a socket mid-write must never end the process: with SIGPIPE ignored a
    /// write to it fails with EPIPE, which each writer handles (libpq and librdkafka do so already).
    static func main() async {
        signal(SIGPIPE, SIG_IGN)
        do {
            var command = try parseAsRoot()
            if var command = command as? any AsyncParsableCommand {
                try await command.run()
            } else {
                try command.run()
            }
        } catch {
            exit(withError: error)
        }
    }
}

/// Options every subcommand takes. Flags override `CDCR_*` environment variables, which override
/// the config file, which overrides the defaults.
struct GlobalOptions: ParsableArguments {
    @Option(help: "JSON config file (see config/cdcr.example.json).")
    var config: String?

    @Option(help: "Kafka bootstrap servers, host:port[,…] (CDCR_BROKERS).")
    var brokers: String?

    @Option(help: "Consumer group id (CDCR_GROUP).")
    var group: String?

    @Option(name: .customLong("topic"), help: "Topic to consume; repeatable (CDCR_TOPICS, comma-separated).")
    var topics: [String] = []

    @Option(help: "Target PostgreSQL libpq URL (CDCR_TARGET_URL).")
    var target: String?

    @Option(help: "Source PostgreSQL libpq URL (CDCR_SOURCE_URL).")
    var source: String?

    @Option(name: .customLong("kafka-property"), help: "librdkafka property key=value; repeatable (TLS, SASL…).")
    var kafkaProperties: [String] = []

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical (CDCR_LOG_LEVEL).")
    var logLevel: String?

    @Option(name: .customLong("deny-schema"), help: "A target schema events may never write, besides cdcr's own and PostgreSQL's catalogs; repeatable (CDCR_DENY_SCHEMAS).")
    var denySchemas: [String] = []

    var overrides: SettingsOverrides {
        var o = SettingsOverrides()
        o.brokers = brokers
        o.group = group
        o.topics = topics
        o.targetURL = target
        o.sourceURL = source
        o.kafkaProperties = kafkaProperties
        o.logLevel = logLevel
        o.denySchemas = denySchemas
        return o
    }

    /// Loads settings, or stops the program with a message naming the bad setting.
    func settings(_ adjust: (inout SettingsOverrides) -> Void = { _ in }) throws -> Settings {
        var o = overrides
        adjust(&o)
        do {
            return try SettingsLoader.load(file: config, overrides: o)
        } catch {
            throw ValidationError(error.description)
        }
    }
}

/// Logging to stderr at the configured level; bootstrapped once per process.
enum Logs {
    nonisolated(unsafe) private static var bootstrapped = false

    static func logger(_ settings: Settings, label: String = "cdcr") -> Logger {
        if !bootstrapped {
            bootstrapped = true
            let level = Logger.Level(rawValue: settings.logLevel) ?? .info
            LoggingSystem.bootstrap { label in
                var h = StreamLogHandler.standardError(label: label)
                h.logLevel = level
                return h
            }
        }
        return Logger(label: label)
    }
}

enum CDCRVersion {
    static let current = "0.1.0"
}

/// Exits with status 1 and a one-line message for errors the operator must act on.
func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("cdcr: error: \(message)\n".utf8))
    exit(1)
}

/// Exits like `fail`, but with 64 (EX_USAGE, as for a bad flag) when `error` is a configuration error.
func fail(_ error: any Error) -> Never {
    if error is ConfigError {
        FileHandle.standardError.write(Data("cdcr: error: \(error)\n".utf8))
        exit(64)
    }
    fail("\(error)")
}
