import ArgumentParser
import CDCCore
import CDCPostgres
import CDCR
import Foundation

struct ReviewCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "review",
        abstract: "The review queue: discrepancies waiting for a person to approve (repair) or reject (keep the target).",
        discussion: """
            Exit codes: 0 done; 1 error; 2 (apply) some approved items are still not applied (refused by the target, \
            or extra rows kept without --allow-delete); 3 refused: an ID does not exist, or is not open or queued, or \
            its kind cannot be repaired (nothing was changed); 64 bad flags or filter. See docs/RECONCILE.md.
            """,
        subcommands: [ReviewList.self, ReviewShow.self, ReviewApprove.self, ReviewReject.self, ReviewApply.self]
    )
}

/// The OS user running cdcr: the default `--by`.
func osUser() -> String {
    if let pw = getpwuid(getuid()), let name = pw.pointee.pw_name { return String(cString: name) }
    return ProcessInfo.processInfo.environment["USER"] ?? "uid-\(getuid())"
}

/// Runs `body` on a target connection with the bookkeeping schema installed; review errors exit
/// with their documented codes.
func withReviewTarget<T>(_ settings: Settings, _ body: (PGConnection) throws -> T) -> T {
    guard let url = settings.targetURL else { reviewFail(ReviewError(.usage, "--target (or CDCR_TARGET_URL) is required")) }
    do {
        let conn = try TargetConnection.open(url, applicationName: "cdcr-review")
        defer { conn.close() }
        try BookkeepingSchema.install(on: conn)
        return try body(conn)
    } catch {
        reviewFail(error)
    }
}

func reviewFail(_ error: any Error) -> Never {
    guard let e = error as? ReviewError else { fail(error) }
    FileHandle.standardError.write(Data("cdcr: error: \(e.description)\n".utf8))
    exit(e.code == .usage ? 64 : 3)
}

struct ReviewList: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List review items (by default the queue: open and queued).")
    @OptionGroup var global: GlobalOptions
    @Option(help: "Only this source table, schema.table.")
    var table: String?
    @Option(help: "Only these statuses, comma-separated: open, queued, approved, rejected, auto_repaired, resolved_by_stream; or all.")
    var status: String?
    @Option(help: "A filter, e.g. kind=different,column=status (see docs/RECONCILE.md).")
    var matching: String?
    @Option(parsing: .unconditional, help: "At most this many items, newest first.")
    var limit = 200
    @Flag(help: "Print JSON.")
    var json = false

    func run() throws {
        let settings = try global.settings()
        guard limit >= 1 else { throw ValidationError("--limit must be at least 1") }
        var filter = ReviewFilter()
        do {
            if let matching { filter = try ReviewFilter(parsing: matching) }
            if let table { filter.tables = [TableName(parsing: table)] }
            if status == "all" {
                filter.statuses = Resolution.allCases
            } else if let status {
                filter.statuses = try status.split(separator: ",").map { v throws(ReviewError) in try ReviewFilter.status(String(v)) }
            }
        } catch {
            reviewFail(error)
        }
        let items = withReviewTarget(settings) { try ReviewQueue.list(filter, limit: limit, on: $0) }
        if json {
            print(JSONValue.object([("items", .array(items.map(\.jsonValue)))]).serialized)
            return
        }
        guard !items.isEmpty else {
            print("no review item matches")
            return
        }
        let rows = [["id", "table", "kind", "key", "columns", "status", "seen", "last seen", "by / reason"]] + items.map { i in
            [String(i.id), i.table.description, i.kind.rawValue, String(i.keyDescription.prefix(40)), i.columns.joined(separator: ","),
             i.resolution.rawValue + (i.resolution == .approved ? (i.appliedAt == nil ? " (to apply)" : " (applied)") : ""),
             String(i.timesSeen), i.lastSeenAt, [i.decidedBy, i.reason].compactMap { $0 }.joined(separator: ": ")]
        }
        for line in textTable(rows, leftAligned: [1, 2, 3, 4, 5, 7, 8]) { print(line) }
    }
}

struct ReviewShow: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "show", abstract: "Show an item: source and target side by side (re-read now), differing columns marked with *.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "The item ID.")
    var id: Int64
    @Flag(help: "Print JSON.")
    var json = false

    func run() throws {
        let settings = try global.settings()
        let detail = withReviewTarget(settings) { target -> ReviewDetail in
            // Without a source, or when it does not answer, the stored values are shown (with a note).
            let run = settings.sourceURL == nil ? nil : try? VerifyRun(settings: settings, options: VerifyOptions())
            defer { run?.close() }
            var detail = try ReviewDetail.load(id, run: run, target: target)
            if run == nil && settings.sourceURL != nil { detail.notes.append("the source or target did not answer: stored values shown") }
            return detail
        }
        print(json ? detail.jsonValue.serialized : detail.text)
    }
}

struct ReviewApprove: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "approve", abstract: "Approve items for repair (open or queued ones of kind missing, extra or different).")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Item IDs.")
    var ids: [Int64] = []
    @Option(help: "Approve every open or queued row-level item matching FILTER, e.g. table=public.orders,kind=different,column=status.")
    var matching: String?
    @Option(help: "Who decides (default: the OS user).")
    var by: String?

    func validate() throws {
        if ids.isEmpty == (matching == nil) { throw ValidationError("give item IDs or --matching FILTER (one of them)") }
        if let by, by.trimmingCharacters(in: .whitespaces).isEmpty { throw ValidationError("--by is empty") }
    }

    func run() throws {
        let settings = try global.settings()
        let who = by ?? osUser()
        let approved = withReviewTarget(settings) { conn -> [Int64] in
            if let matching { return try ReviewQueue.approve(matching: try ReviewFilter(parsing: matching), by: who, on: conn) }
            return try ReviewQueue.approve(ids, by: who, on: conn)
        }
        print(approved.isEmpty ? "no open or queued item matches" :
              "approved by \(who): \(approved.map(String.init).joined(separator: ", ")) (cdcr review apply repairs them)")
    }
}

struct ReviewReject: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "reject", abstract: "Reject items: the target is kept as it is. --reason is required.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Item IDs.")
    var ids: [Int64]
    @Option(help: "Why the target is kept (required).")
    var reason: String?
    @Option(help: "Who decides (default: the OS user).")
    var by: String?

    func validate() throws {
        guard let reason, !reason.trimmingCharacters(in: .whitespaces).isEmpty else { throw ValidationError("--reason TEXT is required") }
        if let by, by.trimmingCharacters(in: .whitespaces).isEmpty { throw ValidationError("--by is empty") }
    }

    func run() throws {
        let settings = try global.settings()
        let who = by ?? osUser()
        let rejected = withReviewTarget(settings) { try ReviewQueue.reject(ids, reason: reason ?? "", by: who, on: $0) }
        print("rejected by \(who): \(rejected.map(String.init).joined(separator: ", ")); the target is kept")
    }
}

struct ReviewApply: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "apply", abstract: "Repair every approved item not yet applied (one repair run; cdcr repair-undo RUN puts it back).")
    @OptionGroup var global: GlobalOptions
    @Flag(help: "Delete extra target rows that were approved (without it they are kept and stay approved).")
    var allowDelete = false
    @Flag(help: "Print JSON.")
    var json = false

    func run() throws {
        let settings = try global.settings()
        let logger = Logs.logger(settings, label: "cdcr.review")
        let result: ReviewApplyResult
        do {
            let run = try VerifyRun(settings: settings, options: VerifyOptions(), logger: logger)
            defer { run.close() }
            try BookkeepingSchema.install(on: run.target)
            result = try ReviewQueue.apply(run: run, settings: settings, logger: logger, allowDelete: allowDelete)
        } catch {
            reviewFail(error)
        }
        print(json ? result.jsonValue.serialized : result.text)
        if result.pending > 0 { throw ExitCode(2) }
    }
}
