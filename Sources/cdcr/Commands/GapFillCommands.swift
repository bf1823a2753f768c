import ArgumentParser
import CDCCore
import CDCPostgres
import CDCR
import Foundation
import Logging

struct SourceCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "source",
        abstract: "Manage the change log in the source database.",
        subcommands: [Install.self, Uninstall.self, Prune.self]
    )

    struct Install: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create cdcr.change_log and capture triggers on the tables (idempotent).")
        @OptionGroup var global: GlobalOptions
        @Option(help: "Comma-separated tables, schema.table (a bare name means public).")
        var tables: String

        func run() throws {
            let settings = try global.settings()
            guard let url = settings.sourceURL else { throw ValidationError("--source (or CDCR_SOURCE_URL) is required") }
            let names = tables.split(separator: ",").map { TableName(parsing: $0.trimmingCharacters(in: .whitespaces)) }
            guard !names.isEmpty else { throw ValidationError("--tables names no table") }
            do {
                let conn = try PGConnection.connect(url)
                let installed = try SourceChangeLog.install(on: conn, tables: names)
                print("change log installed; capturing \(installed.map(\.name.description).joined(separator: ", "))")
            } catch {
                fail(error)
            }
        }
    }

    struct Prune: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Delete change-log rows older than the retention that every relay has published.",
            discussion: "cdcr run prunes hourly when it gap-fills; this is for sources read only by relay and replay.")
        @OptionGroup var global: GlobalOptions
        @Option(parsing: .unconditional, help: "Keep this many days (default: change_log_retention_days, else ledger_retention_days).")
        var olderThanDays: Int?

        func run() throws {
            let settings = try global.settings()
            guard let url = settings.sourceURL else { throw ValidationError("--source (or CDCR_SOURCE_URL) is required") }
            let days = olderThanDays ?? settings.effectiveChangeLogRetentionDays
            if days == 0 {
                print("change_log_retention_days is 0: the change log is kept forever (pass --older-than-days to prune anyway)")
                return
            }
            guard days >= settings.ledgerRetentionDays else {
                throw ValidationError("--older-than-days must be at least ledger_retention_days (\(settings.ledgerRetentionDays)): replays within it need those changes")
            }
            do {
                let conn = try PGConnection.connect(url)
                defer { conn.close() }
                let n = try SourceChangeLog.prune(on: conn, olderThanDays: days)
                print("pruned \(n) change-log rows older than \(days) days")
            } catch {
                fail(error)
            }
        }
    }

    struct Uninstall: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove the capture triggers and the change log.")
        @OptionGroup var global: GlobalOptions

        func run() throws {
            let settings = try global.settings()
            guard let url = settings.sourceURL else { throw ValidationError("--source (or CDCR_SOURCE_URL) is required") }
            do {
                try SourceChangeLog.uninstall(on: try PGConnection.connect(url))
                print("change log removed")
            } catch {
                fail(error)
            }
        }
    }
}

struct RelayCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "relay",
        abstract: "Publish the source change log to the first --topic as native events, at least once."
    )
    @OptionGroup var global: GlobalOptions
    @Flag(help: "Publish what is committed now, then exit.")
    var once = false
    @Option(parsing: .unconditional, help: "Pause between passes, ms.")
    var intervalMs = 500

    func run() throws {
        let settings = try global.settings()
        guard let url = settings.sourceURL else { throw ValidationError("--source (or CDCR_SOURCE_URL) is required") }
        let logger = Logs.logger(settings, label: "cdcr.relay")
        let stop = StopSignal()
        for sig in [SIGTERM, SIGINT] { signal(sig) { _ in RelayCommand.stopRequested.stop() } }
        var backoff = Backoff(capMs: settings.retryMaxBackoffMs)
        var relay: Relay?
        var unclearFailures = 0  // in a row: a relay that keeps failing so stops with the error
        while !stop.isStopped && !Self.stopRequested.isStopped {
            do {
                if relay == nil { relay = try Relay(source: try PGConnection.connect(url), settings: settings, logger: logger) }
                try relay!.pass()
                backoff.reset()
                unclearFailures = 0
                if once { break }
                Self.stopRequested.sleep(ms: intervalMs)
            } catch {
                switch ErrorClassifier.classify(error) {
                case .transient: unclearFailures = 0
                case .unclear where unclearFailures < settings.unclearErrorRetries: unclearFailures += 1
                default: fail(error)
                }
                logger.warning("relay pass failed, retrying", metadata: ["error": "\(error)"])
                relay?.close()
                relay = nil
                Self.stopRequested.sleep(ms: backoff.next())
            }
        }
        relay?.close()
    }

    static let stopRequested = StopSignal()
}

struct ReplayCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "replay",
        abstract: "Replay the source change log over a time window through the applier (ledger, version guard).",
        discussion: "Exit codes: 0 done, 1 error, 2 done but some changes failed (dead-lettered)."
    )
    @OptionGroup var global: GlobalOptions
    @Option(help: "Window start, ISO-8601 (inclusive).")
    var from: String
    @Option(help: "Window end, ISO-8601 (exclusive).")
    var to: String
    @Option(name: .customLong("table"), help: "Only this source table; repeatable.")
    var tables: [String] = []
    @Flag(help: "Apply nothing; report what would be applied.")
    var dryRun = false
    @Flag(help: "Print the report as JSON.")
    var json = false

    func run() throws {
        let settings = try global.settings()
        guard settings.sourceURL != nil else { throw ValidationError("--source (or CDCR_SOURCE_URL) is required") }
        guard settings.targetURL != nil else { throw ValidationError("--target (or CDCR_TARGET_URL) is required") }
        guard CivilTime.parseInstant(from) != nil else { throw ValidationError("--from '\(from)' is not an ISO-8601 time") }
        guard CivilTime.parseInstant(to) != nil else { throw ValidationError("--to '\(to)' is not an ISO-8601 time") }
        let logger = Logs.logger(settings, label: "cdcr.replay")
        let report: ReplayReport
        var progress: Progress?
        do {
            report = try ReplayRun.execute(settings: settings, logger: logger, from: from, to: to, tables: tables.map(TableName.init(parsing:)),
                                           dryRun: dryRun) { done, total in
                if progress == nil { progress = Progress(total: total, enabled: !json) }
                progress?.update(done)
            }
            progress?.finish()
        } catch let refused as ReplayRefused {
            fail("replay refused: \(refused)")
        } catch {
            fail(error)
        }
        print(json ? report.json(from: from, to: to, dryRun: dryRun) : table(report))
        if report.total.failed > 0 { throw ExitCode(2) }
    }

    private func table(_ report: ReplayReport) -> String {
        let header = ["table", "in window", "already applied", dryRun ? "would apply" : "applied now", "stale", "failed"]
        var rows = report.tables.keys.sorted().map { name -> [String] in
            let c = report.tables[name]!
            return [name, "\(c.inWindow)", "\(c.alreadyApplied)", "\(c.appliedNow)", "\(c.stale)", "\(c.failed)"]
        }
        let t = report.total
        rows.append(["total", "\(t.inWindow)", "\(t.alreadyApplied)", "\(t.appliedNow)", "\(t.stale)", "\(t.failed)"])
        var lines = textTable([header] + rows, leftAligned: [0])
        if dryRun { lines.append("dry run: nothing was applied") }
        return lines.joined(separator: "\n")
    }
}

/// A progress bar on a terminal (stderr), plain lines otherwise.
final class Progress {
    let total: Int
    let enabled: Bool
    let tty = isatty(2) == 1
    private var lastLine = 0

    init(total: Int, enabled: Bool) {
        self.total = total
        self.enabled = enabled
    }

    func update(_ done: Int) {
        guard enabled, total > 0 else { return }
        let pct = min(100, done * 100 / total)
        if tty {
            let width = 30
            let filled = width * pct / 100
            FileHandle.standardError.write(Data("\rreplaying [\(String(repeating: "#", count: filled))\(String(repeating: " ", count: width - filled))] \(pct)% \(done)/\(total)".utf8))
        } else if done - lastLine >= max(1, total / 10) || done == total {
            lastLine = done
            FileHandle.standardError.write(Data("replayed \(done) of \(total) changes\n".utf8))
        }
    }

    func finish() {
        if enabled && tty && total > 0 { FileHandle.standardError.write(Data("\n".utf8)) }
    }
}
