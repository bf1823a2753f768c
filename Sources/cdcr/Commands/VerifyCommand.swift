import ArgumentParser
import CDCCore
import CDCR
import Foundation

/// Options shared by `verify` and `repair`: what to compare and how.
struct CompareOptions: ParsableArguments {
    @Option(name: .customLong("table"), help: "Source table to compare, schema.table; repeatable (default: verify.tables, else tables).")
    var tables: [String] = []

    @Option(help: "Only these non-key columns, comma-separated (default: every column both sides have).")
    var columns: String?

    @Option(name: .customLong("where"), help: "SQL predicate over the table's columns restricting the rows compared on both sides.")
    var predicate: String?

    @Option(parsing: .unconditional, help: "Floating-point columns are equal when they differ by at most this much.")
    var floatTolerance: Double?

    @Option(parsing: .unconditional, help: "Re-check differing rows after this many seconds, so changes in flight are not reported as drift.")
    var settle: Double?

    @Option(parsing: .unconditional, help: "List at most this many differing rows per table (repair fixes them per round); further ones are counted only, so memory stays bounded.")
    var maxDifferences: Int?

    @Option(parsing: .unconditional, help: "A run of key ranges present on one side only with more rows than this is reported as a range with its count, not key by key.")
    var summarizeRows: Int64?

    @Option(parsing: .unconditional, help: ArgumentHelp("Rows per range compared row by row.", visibility: .hidden))
    var leafRows: Int64?

    @Option(parsing: .unconditional, help: ArgumentHelp("Rows per range aimed at by the first split.", visibility: .hidden))
    var rootRows: Int64?

    func options(_ settings: Settings) throws -> VerifyOptions {
        var o = VerifyOptions()
        o.tables = settings.comparedTables(flags: tables)
        guard !o.tables.isEmpty else {
            throw ValidationError("no table to compare: give --table NAME, or verify.tables (or tables) in the config")
        }
        if let columns {
            o.columns = columns.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
            guard !(o.columns ?? []).isEmpty else { throw ValidationError("--columns names no column") }
        }
        if let predicate {
            guard !predicate.trimmingCharacters(in: .whitespaces).isEmpty else { throw ValidationError("--where is empty") }
            o.predicate = predicate
        }
        o.floatTolerance = floatTolerance ?? settings.verify.floatTolerance
        if let t = o.floatTolerance, !(t >= 0 && t.isFinite) { throw ValidationError("--float-tolerance must be a number ≥ 0") }
        o.settleSeconds = settle ?? settings.verify.settleSeconds
        guard o.settleSeconds >= 0 && o.settleSeconds.isFinite else { throw ValidationError("--settle must be a number of seconds ≥ 0") }
        if let maxDifferences {
            guard maxDifferences >= 1 else { throw ValidationError("--max-differences must be at least 1") }
            o.maxDifferences = maxDifferences
        }
        if let summarizeRows {
            guard summarizeRows >= 0 else { throw ValidationError("--summarize-rows must not be negative") }
            o.summarizeRows = summarizeRows
        }
        if let leafRows {
            guard leafRows >= 1 else { throw ValidationError("--leaf-rows must be at least 1") }
            o.policy.leafRows = leafRows
        }
        if let rootRows {
            guard rootRows >= 1 else { throw ValidationError("--root-rows must be at least 1") }
            o.policy.rowsPerRootRange = rootRows
        }
        return o
    }
}

struct VerifyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Compare tables between source and target: missing, extra and different rows.",
        discussion: """
            Counts and row-hash sums are computed inside both databases at once over key ranges; differing ranges \
            are split and compared again; only small ranges are compared row by row. Values compare by meaning \
            (numeric scale, timestamptz instants, json/jsonb values). Exit codes: 0 consistent, 2 differences found, 1 error.
            """
    )
    @OptionGroup var global: GlobalOptions
    @OptionGroup var compare: CompareOptions
    @Flag(help: "Print the report as JSON (every differing row).")
    var json = false
    @Option(help: "Also write the report to FILE.md (Markdown) or FILE.html.")
    var report: String?
    @Option(parsing: .unconditional, help: "Differing rows listed per table in the terminal and file reports.")
    var limit = 50
    @OptionGroup var mode: VerifyModeOptions

    func validate() throws {
        if let report, !(report.hasSuffix(".md") || report.hasSuffix(".html")) {
            throw ValidationError("--report '\(report)' must end in .md or .html")
        }
        if limit < 0 { throw ValidationError("--limit must not be negative") }
    }

    func run() throws {
        let settings = try global.settings()
        var options = try compare.options(settings)
        try mode.apply(to: &options, settings: settings)
        let progress = TerminalProgress(enabled: !json)
        let result: VerifyReport
        do {
            let run = try VerifyRun(settings: settings, options: options, logger: Logs.logger(settings, label: "cdcr.verify"))
            defer { run.close() }
            result = try run.verifyAll { table, message in progress.show("\(table): \(message)") }
            progress.clear()
        } catch {
            progress.clear()
            fail(error)
        }
        if json {
            // Streamed: every listed difference, read from the spill, without the report in memory.
            do {
                try result.writeJSON { FileHandle.standardOutput.write(Data($0.utf8)) }
                FileHandle.standardOutput.write(Data("\n".utf8))
            } catch { fail(error) }
        } else {
            print(result.text(limit: limit))
        }
        if let report {
            let body = report.hasSuffix(".html") ? result.html(limit: limit) : result.markdown(limit: limit)
            do { try body.write(toFile: report, atomically: true, encoding: .utf8) } catch { fail("cannot write --report \(report): \(error)") }
        }
        if !result.isConsistent { throw ExitCode(2) }
    }
}

/// One progress line on a terminal (stderr), rewritten in place; silent when stderr is not a terminal.
final class TerminalProgress {
    let enabled: Bool

    init(enabled: Bool) { self.enabled = enabled && isatty(2) == 1 }

    func show(_ line: String) {
        guard enabled else { return }
        FileHandle.standardError.write(Data("\r\u{1B}[K\(line.prefix(150))".utf8))
    }

    func clear() {
        if enabled { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
    }
}

struct RepairCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "repair",
        abstract: "Make target tables equal to the source (the truth) for the rows verify finds different.",
        discussion: """
            --dry-run (the default) reports what would change; --print writes reviewable SQL; --execute applies the \
            fixes through the applier (ledger, version guard) in batches and records each in cdcr.repair_log with its \
            before- and after-image. Extra target rows are deleted only with --allow-delete. Exit codes: 0 done (or \
            nothing to do), 1 error, 2 the target still differs (fixes refused, or extra rows kept).
            """
    )
    @OptionGroup var global: GlobalOptions
    @OptionGroup var compare: CompareOptions
    @Flag(exclusivity: .exclusive, help: "What to do.")
    var mode: RepairModeFlag = .dryRun
    @Flag(help: "Delete target rows that are not in the source.")
    var allowDelete = false
    @Flag(help: "Print the summary as JSON.")
    var json = false

    func run() throws {
        let settings = try global.settings()
        var options = try compare.options(settings)
        // Extra rows a repair keeps are only counted, so they never crowd the rows it fixes out of
        // the --max-differences listing.
        options.listExtra = allowDelete
        let logger = Logs.logger(settings, label: "cdcr.repair")
        let progress = TerminalProgress(enabled: !json && mode != .print)
        var results: [RepairResult] = []
        var runID = ""
        do {
            let run = try VerifyRun(settings: settings, options: options, logger: logger)
            defer { run.close() }
            let repairer = Repairer(run: run, settings: settings, logger: logger, allowDelete: allowDelete)
            runID = repairer.runID
            for table in options.tables {
                let diff = try run.verify(table) { progress.show("\(table): \($0)") }
                progress.clear()
                switch mode {
                case .dryRun: results.append(repairer.dryRun(diff))
                case .print:
                    try repairer.sql(diff) { print($0, terminator: "") }
                    results.append(repairer.dryRun(diff))
                case .execute:
                    results.append(try repairer.executeInRounds(diff, verifyAgain: { try run.verify(table) { progress.show("\(table): \($0)") } },
                                                                progress: { progress.show("\(table): \($0)") }))
                    progress.clear()
                }
            }
        } catch {
            progress.clear()
            fail(error)
        }
        if mode != .print {
            print(json ? jsonSummary(results, runID: runID) : textSummary(results, runID: runID))
        }
        let stillDiffers = results.contains { !$0.failed.isEmpty || $0.notReached > 0 || ($0.keptExtra > 0 && mode == .execute) }
        if stillDiffers { throw ExitCode(2) }
    }

    private func textSummary(_ results: [RepairResult], runID: String) -> String {
        let verb = mode == .execute ? "" : "would "
        var lines = results.map { r in
            var line = "\(r.table): \(verb)insert \(r.inserted), \(verb)update \(r.updated), \(verb)delete \(r.deleted)"
            if r.keptExtra > 0 { line += ", \(r.keptExtra) extra rows kept (--allow-delete deletes them)" }
            if r.alreadyEqual > 0 { line += ", \(r.alreadyEqual) already equal when re-read" }
            if !r.failed.isEmpty { line += ", \(r.failed.count) refused" }
            if r.notReached > 0 { line += ", \(r.notReached) differing rows not reached (raise --max-differences)" }
            return line + (r.failed.isEmpty ? "" : "\n" + r.failed.prefix(20).map { "  ! \($0.key): \($0.reason)" }.joined(separator: "\n"))
        }
        switch mode {
        case .dryRun: lines.append("dry run: nothing was changed (--execute applies, --print shows the SQL)")
        case .execute: lines.append("run \(runID): \(results.reduce(0) { $0 + $1.changed }) rows changed, logged in cdcr.repair_log")
        case .print: break
        }
        return lines.joined(separator: "\n")
    }

    private func jsonSummary(_ results: [RepairResult], runID: String) -> String {
        let tables = results.map { r in
            "{\"table\":\(JSONValue.string(r.table.description).serialized),\"inserted\":\(r.inserted),\"updated\":\(r.updated),\"deleted\":\(r.deleted),"
                + "\"kept_extra\":\(r.keptExtra),\"already_equal\":\(r.alreadyEqual),\"not_reached\":\(r.notReached),\"failed\":["
                + r.failed.map { "{\"key\":\(JSONValue.string($0.key).serialized),\"reason\":\(JSONValue.string($0.reason).serialized)}" }.joined(separator: ",") + "]}"
        }
        return "{\"mode\":\"\(mode.rawValue)\",\"run_id\":\(mode == .execute ? JSONValue.string(runID).serialized : "null"),\"tables\":[\(tables.joined(separator: ","))]}"
    }
}

/// `--dry-run | --print | --execute`.
enum RepairModeFlag: String, EnumerableFlag {
    case dryRun = "dry-run", print, execute

    static func name(for value: RepairModeFlag) -> NameSpecification { .customLong(value.rawValue) }
}

struct AuditCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audit",
        abstract: "Refresh cdcr.audit in the target: row counts of every table on both sides and a status.",
        discussion: "Status: ok (equal counts), partial (the target has fewer rows), overload (more), reject (none while the source has some)."
    )
    @OptionGroup var global: GlobalOptions
    @Option(name: .customLong("table"), help: "Source table; repeatable (default: verify.tables, else tables).")
    var tables: [String] = []
    @Flag(help: "Print the audit rows as JSON.")
    var json = false

    func run() throws {
        let settings = try global.settings()
        let names = settings.comparedTables(flags: tables)
        guard !names.isEmpty else { throw ValidationError("no table to audit: give --table NAME, or verify.tables (or tables) in the config") }
        let rows: [AuditRow]
        do {
            let run = try VerifyRun(settings: settings, options: VerifyOptions())
            defer { run.close() }
            rows = try Audit.refresh(run: run, settings: settings, tables: names)
        } catch {
            fail(error)
        }
        if json {
            print("[" + rows.map { r in
                "{\"table_schema\":\(JSONValue.string(r.table.schema).serialized),\"table_name\":\(JSONValue.string(r.table.name).serialized),"
                    + "\"src_row_count\":\(r.sourceRows),\"tgt_row_count\":\(r.targetRows),\"status\":\"\(r.status)\"}"
            }.joined(separator: ",") + "]")
        } else {
            for r in rows { print("\(r.table): source \(r.sourceRows), target \(r.targetRows): \(r.status)") }
        }
    }
}

struct RepairUndoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "repair-undo",
        abstract: "Put back the target rows a repair --execute run changed, from its before-images in cdcr.repair_log.",
        discussion: """
            Dry run by default; --execute applies. Newest fix first; a row changed since the repair (by the applier, a \
            replay or a person) is a conflict and left alone. Undone rows are logged under run undo-RUN. Exit codes: \
            0 done, 1 error (unknown run, already undone), 2 conflicts left rows as they were.
            """
    )
    @OptionGroup var global: GlobalOptions
    @Argument(help: "The repair run ID, as repair --execute printed it (repair-…).")
    var runID: String
    @Flag(help: "Apply the undo (default: dry run, which changes nothing).")
    var execute = false
    @Flag(help: "Print the summary as JSON.")
    var json = false

    func run() throws {
        let settings = try global.settings()
        guard let url = settings.targetURL else { throw ValidationError("--target (or CDCR_TARGET_URL) is required") }
        let result: UndoResult
        do {
            let conn = try TargetConnection.open(url, applicationName: "cdcr-repair-undo")
            defer { conn.close() }
            result = try RepairUndo.undo(runID: runID, on: conn, execute: execute)
        } catch {
            fail(error)
        }
        let verb = execute ? "" : "would "
        if json {
            let conflicts = result.conflicts.map { "{\"table\":\(JSONValue.string($0.table).serialized),\"key\":\($0.key)}" }.joined(separator: ",")
            print("{\"run_id\":\(JSONValue.string(runID).serialized),\"executed\":\(execute),\"undone\":{\"inserts\":\(result.undoneInserts),"
                + "\"updates\":\(result.undoneUpdates),\"deletes\":\(result.undoneDeletes)},\"conflicts\":[\(conflicts)]}")
        } else {
            print("\(runID): \(verb)undo \(result.undoneInserts) inserts, \(result.undoneUpdates) updates, \(result.undoneDeletes) deletes"
                + (result.conflicts.isEmpty ? "" : "; \(result.conflicts.count) rows changed since the repair, left as they are"))
            for c in result.conflicts.prefix(20) { print("  ! \(c.table) \(c.key)") }
            print(execute ? "logged in cdcr.repair_log as run \(result.undoRunID)" : "dry run: nothing was changed (--execute applies)")
        }
        if !result.conflicts.isEmpty { throw ExitCode(2) }
    }
}
