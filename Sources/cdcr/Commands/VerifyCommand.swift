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

    @Option(help: "Floating-point columns are equal when they differ by at most this much.")
    var floatTolerance: Double?

    @Option(help: "Re-check differing rows after this many seconds, so changes in flight are not reported as drift.")
    var settle: Double?

    @Option(help: ArgumentHelp("Rows per range compared row by row.", visibility: .hidden))
    var leafRows: Int64?

    @Option(help: ArgumentHelp("Rows per range aimed at by the first split.", visibility: .hidden))
    var rootRows: Int64?

    func options(_ settings: Settings) throws -> VerifyOptions {
        var o = VerifyOptions()
        o.tables = tables.isEmpty ? (settings.verify.tables ?? settings.tables ?? []) : tables.map(TableName.init(parsing:))
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
    @Option(help: "Differing rows listed per table in the terminal and file reports.")
    var limit = 50

    func validate() throws {
        if let report, !(report.hasSuffix(".md") || report.hasSuffix(".html")) {
            throw ValidationError("--report '\(report)' must end in .md or .html")
        }
        if limit < 0 { throw ValidationError("--limit must not be negative") }
    }

    func run() throws {
        let settings = try global.settings()
        let options = try compare.options(settings)
        let progress = TerminalProgress(enabled: !json)
        let result: VerifyReport
        do {
            let run = try VerifyRun(settings: settings, options: options)
            defer { run.close() }
            result = try run.verifyAll { table, message in progress.show("\(table): \(message)") }
            progress.clear()
        } catch {
            progress.clear()
            fail("\(error)")
        }
        print(json ? result.json : result.text(limit: limit))
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
