import ArgumentParser
import CDCCore
import CDCR
import Foundation

struct LagCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lag",
        abstract: "Consumer lag of the configured group per partition, with Burrow-style statuses.",
        discussion: """
            Works whether or not the applier runs. Samples are kept in the target (cdcr.lag_samples) when --target is set, \
            so repeated calls build the history the statuses need. Exit code: 0, or 2 when --fail-on's level is reached.
            """
    )
    @OptionGroup var global: GlobalOptions
    @Flag(help: "Print JSON.")
    var json = false
    @Flag(help: "Refresh in place until interrupted.")
    var watch = false
    @Option(parsing: .unconditional, help: "Seconds between refreshes with --watch.")
    var interval = 5
    @Option(parsing: .unconditional, help: "Sliding window of the status rules, seconds.")
    var window = 300
    @Option(help: "Exit 2 when the group status reaches this level: warn or err.")
    var failOn: String?

    func validate() throws {
        if let failOn, !["warn", "err"].contains(failOn) { throw ValidationError("--fail-on must be warn or err, not '\(failOn)'") }
        if window < 1 { throw ValidationError("--window must be at least 1 second") }
        if interval < 1 { throw ValidationError("--interval must be at least 1 second") }
    }

    func run() throws {
        let settings = try global.settings()
        var report: LagReport
        do {
            let monitor = try LagMonitor(settings: settings, windowSeconds: Double(window))
            defer { monitor.close() }
            report = try monitor.sample()
            while watch {
                FileHandle.standardOutput.write(Data("\u{1B}[H\u{1B}[2J".utf8))
                print(render(report))
                sleep(UInt32(interval))
                report = try monitor.sample()
            }
        } catch {
            fail(error)
        }
        print(json ? report.json : render(report))
        if let failOn {
            let level: GroupStatus = failOn == "warn" ? .warn : .err
            if report.status >= level { throw ExitCode(2) }
        }
    }

    private func render(_ r: LagReport) -> String {
        let header = ["topic", "partition", "committed", "end", "lag", "lag_s", "status"]
        let rows = r.partitions.map { p in
            [p.topic, "\(p.partition)", p.committed >= 0 ? "\(p.committed)" : "-", "\(p.end)", "\(p.lag)",
             p.lagSeconds.map { String(format: "%.1f", $0) } ?? "?", p.status.rawValue]
        }
        var lines = textTable([header] + rows, leftAligned: [0, 6])
        let worst = r.worst.map { "\($0.topic)/\($0.partition) (\($0.lag), \($0.status.rawValue))" } ?? "-"
        lines.append("group \(r.group): \(r.status.rawValue)   total lag \(r.totalLag)   worst \(worst)")
        return lines.joined(separator: "\n")
    }
}
