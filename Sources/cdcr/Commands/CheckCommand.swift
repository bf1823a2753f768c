import ArgumentParser
import CDCCore
import CDCR
import Foundation

struct CheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Reconciliation checks beyond row equality: aggregates, queries, references, schema, freshness.",
        discussion: """
            Runs the checks of --rules FILE (see config/checks.example.json and docs/CHECKS.md) plus the defaults: the \
            schema check over the compared tables and every foreign key the source declares between them. Each check is \
            pushed down into both databases at once, in read-only transactions. Prints PASS / FAIL / ERROR per check with \
            its numbers and up to 10 examples per failure; stores the run in cdcr.check_runs and cdcr.check_results in the \
            target. Exit codes: 0 all pass, 2 some fail, 1 a check could not run, 64 a bad rules file.
            """
    )
    @OptionGroup var global: GlobalOptions
    @Option(help: "Rules file (JSON); without it only the default checks run.")
    var rules: String?
    @Option(name: .customLong("only"), help: "Run only the check of this name; repeatable.")
    var only: [String] = []
    @Option(name: .customLong("table"), help: "Compared source table, schema.table; repeatable (default: verify.tables, else tables).")
    var tables: [String] = []
    @Flag(help: "Print the report as JSON.")
    var json = false
    @Option(help: "Also write the report to FILE.md (Markdown) or FILE.html.")
    var report: String?
    @Option(parsing: .unconditional, help: ArgumentHelp("8 KB blocks per part of a split aggregate statement.", visibility: .hidden))
    var blocksPerPart: Int64?

    func validate() throws {
        if let blocksPerPart, blocksPerPart < 1 { throw ValidationError("--blocks-per-part must be at least 1") }
        if let report, !(report.hasSuffix(".md") || report.hasSuffix(".html")) {
            throw ValidationError("--report '\(report)' must end in .md or .html")
        }
    }

    func run() throws {
        let settings = try global.settings()
        var result: CheckReport
        var notStored: (any Error)?
        do {
            var checkRules = CheckRules()
            if let rules {
                guard let data = FileManager.default.contents(atPath: rules) else { throw ConfigError("--rules", "cannot read \(rules)") }
                checkRules = try CheckRules.parse(String(decoding: data, as: UTF8.self), file: rules)
            }
            let compared = settings.comparedTables(flags: tables)
            let run = try CheckRun(settings: settings, rules: checkRules, tables: compared, only: only, logger: Logs.logger(settings, label: "cdcr.check"))
            defer { run.close() }
            if let blocksPerPart { run.blocksPerPart = blocksPerPart }
            // Everything is refused here, before a check runs or anything is stored.
            try run.validate()
            let progress = TerminalProgress(enabled: !json)
            result = run.runAll { progress.show($0) }
            progress.clear()
            result.runID = CheckStore.newRunID()
            do { try CheckStore.save(result, rulesFile: rules, tables: compared, on: run.target) } catch { notStored = error }
        } catch {
            fail(error)
        }
        print(json ? result.json : result.text)
        if let report {
            do { try (report.hasSuffix(".html") ? result.html : result.markdown).write(toFile: report, atomically: true, encoding: .utf8) } catch {
                fail("cannot write --report \(report): \(error)")
            }
        }
        // The report is printed either way; a run that could not be stored is still an error.
        if let notStored { fail("the run was not stored in cdcr.check_runs: \(notStored)") }
        switch result.status {
        case .pass: break
        case .fail: throw ExitCode(2)
        case .error: throw ExitCode(1)
        }
    }
}
