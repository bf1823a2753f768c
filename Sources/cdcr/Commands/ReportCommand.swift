import ArgumentParser
import CDCCore
import CDCR
import Foundation

struct ReportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "Reports over the reconcile history kept in the target.",
        subcommands: [DailyReportCommand.self]
    )
}

struct DailyReportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "daily",
        abstract: "A day's reconcile report: per table and kind found, auto-repaired, queued, resolved; trends; audit status.",
        discussion: """
            The day is a UTC calendar day (default: today). Rules for the trend and the audit status (ok, partial, \
            overload, reject): docs/RECONCILE.md, "Reports". Exit codes: 0 printed (whatever the audit status), 1 error, \
            64 bad flags.
            """
    )
    @OptionGroup var global: GlobalOptions
    @Option(help: "The day, YYYY-MM-DD (UTC; default today).")
    var date: String?
    @Flag(exclusivity: .exclusive, help: "Output format (default Markdown).")
    var format: ReportFormat = .md
    @Option(parsing: .unconditional, help: "Open or queued items per table from which the audit says overload.")
    var overloadRows = DailyReport.defaultOverloadLimit

    enum ReportFormat: String, EnumerableFlag {
        case json, md, html
    }

    func validate() throws {
        guard overloadRows >= 1 else { throw ValidationError("--overload-rows must be at least 1") }
    }

    func run() throws {
        let settings = try global.settings()
        let report = withReviewTarget(settings) { try DailyReport.build(date: date, overloadLimit: overloadRows, on: $0) }
        switch format {
        case .json: print(report.jsonValue.serialized)
        case .md: print(report.markdown, terminator: "")
        case .html: print(report.html)
        }
    }
}
