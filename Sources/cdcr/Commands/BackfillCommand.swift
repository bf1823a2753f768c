import ArgumentParser
import CDCCore
import CDCR
import Dispatch
import Foundation

struct BackfillCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "backfill",
        abstract: "Copy tables' existing rows from the source into the target, verified and resumable, while the stream runs.",
        discussion: """
            Walks each table in primary-key order in chunks, each read in its own short REPEATABLE READ snapshot of the \
            source and applied through the applier's version guard, stamped with a low watermark so the live stream's \
            changes always win over older copies (docs/BACKFILL.md). Each chunk is checkpointed in cdcr.backfill_state \
            in the same transaction: a rerun continues after the last committed chunk (--restart starts over). After each \
            chunk its key range is compared by checksums; differences are re-checked after --settle seconds. A lost \
            database is waited out (--outage-timeout): cdcr reconnects and resumes from the last checkpoint. SIGTERM \
            finishes the chunks in hand and exits 0. Exit codes: 0 done and verified, 2 rows failed or still differ, 1 error.
            """
    )
    @OptionGroup var global: GlobalOptions
    @Option(name: .customLong("table"), help: "Source table to backfill, schema.table; repeatable.")
    var tables: [String] = []
    @Option(parsing: .unconditional, help: "Rows per chunk (one snapshot, one target transaction, one checkpoint).")
    var chunkRows = 10_000
    @Option(parsing: .unconditional, help: "Copy at most this many rows per second.")
    var maxRowsPerSecond: Double?
    @Option(parsing: .unconditional, help: "Tables backfilled at once.")
    var parallel = 1
    @Option(name: .customLong("where"), help: "SQL predicate: copy only the matching rows (then no target row is deleted).")
    var predicate: String?
    @Option(help: "Versions the stream uses: change-log (cdcr.change_log's change_id) or lsn (Debezium's source.lsn). Default: change-log when the source has cdcr.change_log.")
    var versionSource: String?
    @Option(parsing: .unconditional, help: "Seconds to let stream changes in flight settle before a differing row counts.")
    var settle = 2.0
    @Option(parsing: .unconditional, help: "Target sessions writing chunks at once (disjoint key ranges; checkpoints still commit in key order).")
    var writers = 2
    @Option(parsing: .unconditional, help: "Seconds a lost source or target is waited out (reconnecting, then resuming from the last checkpoint) before the run fails.")
    var outageTimeout = 900.0
    @Flag(help: "Start over, forgetting the checkpoints.")
    var restart = false
    @Flag(help: "Read and count, and apply in transactions that are rolled back: nothing is written.")
    var dryRun = false
    @Flag(help: "Skip the per-chunk checksum comparison.")
    var noVerify = false
    @Flag(help: "Print the summary as JSON.")
    var json = false

    func validate() throws {
        if tables.isEmpty { throw ValidationError("no table to backfill: give --table NAME") }
        if chunkRows < 1 { throw ValidationError("--chunk-rows must be at least 1") }
        if let r = maxRowsPerSecond, !(r > 0 && r.isFinite) { throw ValidationError("--max-rows-per-second must be a number > 0") }
        if parallel < 1 { throw ValidationError("--parallel must be at least 1") }
        if !(settle >= 0 && settle <= 86_400) { throw ValidationError("--settle must be a number of seconds from 0 to 86400") }
        let w = BackfillOptions.writerRange, most = BackfillOptions.maxOutageTimeoutSeconds
        if !w.contains(writers) { throw ValidationError("--writers must be between \(w.lowerBound) and \(w.upperBound)") }
        if !(outageTimeout >= 0 && outageTimeout <= Double(most)) { throw ValidationError("--outage-timeout must be a number of seconds from 0 to \(most) (a year)") }
        if let predicate, predicate.trimmingCharacters(in: .whitespaces).isEmpty { throw ValidationError("--where is empty") }
        if let versionSource, VersionSource(rawValue: versionSource) == nil {
            throw ValidationError("--version-source must be one of \(VersionSource.allCases.map(\.rawValue).joined(separator: ", "))")
        }
    }

    func run() throws {
        let settings = try global.settings()
        var options = BackfillOptions()
        options.tables = tables.map(TableName.init(parsing:))
        options.chunkRows = chunkRows
        options.maxRowsPerSecond = maxRowsPerSecond
        options.parallel = parallel
        options.predicate = predicate
        options.restart = restart
        options.dryRun = dryRun
        options.versionSource = versionSource.flatMap(VersionSource.init(rawValue:))
        options.verify = !noVerify
        options.settleSeconds = settle
        options.writers = writers
        options.outageTimeout = .milliseconds(Int64(outageTimeout * 1000))

        let stop = StopSignal()
        let signals = [SIGTERM, SIGINT].map { sig -> any DispatchSourceSignal in
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler {
                FileHandle.standardError.write(Data("\ncdcr: stopping after the current chunk\n".utf8))
                stop.stop()
            }
            source.resume()
            return source
        }
        defer { signals.forEach { $0.cancel() } }

        // Progress: one line rewritten in place on a terminal, plain log lines otherwise.
        let terminal = !json && isatty(2) == 1
        let progress = TerminalProgress(enabled: terminal)
        let logger = Logs.logger(settings, label: "cdcr.backfill")
        let backfiller = Backfiller(settings: settings, options: options, logger: logger, stop: stop) { p in
            if terminal {
                FileHandle.standardError.write(Data("\r\u{1B}[K\(p.barLine().prefix(160))".utf8))
            } else {
                logger.info("\(p.line)")
            }
        }
        let report: BackfillReport
        do {
            report = try backfiller.run()
            progress.clear()
        } catch {
            progress.clear()
            fail(error)
        }
        print(json ? report.json : report.text, terminator: json ? "\n" : "")
        if report.exitCode != 0 { throw ExitCode(report.exitCode) }
    }
}
