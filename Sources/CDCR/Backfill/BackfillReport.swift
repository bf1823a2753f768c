import CDCCore
import Foundation

/// What `cdcr backfill` does and how.
public struct BackfillOptions: Sendable {
    public var tables: [TableName] = []
    /// Rows per chunk (one source snapshot, one target transaction, one checkpoint).
    public var chunkRows = 10_000
    /// Rows per second at most, over the run (nil: as fast as it goes).
    public var maxRowsPerSecond: Double?
    /// Tables backfilled at once, each on its own connections.
    public var parallel = 1
    /// A boolean SQL expression over the table's columns: only matching rows are copied (and no
    /// target row is deleted, since a row outside the predicate cannot be told from a deleted one).
    public var predicate: String?
    public var restart = false
    public var dryRun = false
    /// nil: `change-log` when the source has `cdcr.change_log`, else `lsn`.
    public var versionSource: VersionSource?
    /// Per-chunk verification, and how long to let in-flight stream changes settle before a
    /// difference counts.
    public var verify = true
    public var settleSeconds = 2.0
    public var settleRounds = 5
    /// How long a chunk waits at most for older source transactions to end.
    public var horizonTimeout: Duration = .seconds(600)
    /// How long a lost source or target is waited out (reconnecting with backoff, then resuming from
    /// the last committed checkpoint) before the run fails.
    public var outageTimeout: Duration = .seconds(900)
    /// Target connections writing chunks at once (disjoint key ranges; commits stay in key order).
    public var writers = 2

    /// What `writers` may be (the CLI's `--writers`, the admin API's `writers`).
    public static let writerRange = 1...8
    /// The longest `outageTimeout` in seconds, a year: beyond, the duration in milliseconds would
    /// overflow (and trap). The CLI and the admin API check against it.
    public static let maxOutageTimeoutSeconds = 86_400 * 365

    public init() {}
}

/// Progress of one table, for a terminal line or a plain log line.
public struct BackfillProgress: Sendable {
    public let table: TableName
    public let rowsDone: Int64
    public let estimatedRows: Int64
    public let rowsPerSecond: Double

    public init(table: TableName, rowsDone: Int64, estimatedRows: Int64, rowsPerSecond: Double) {
        self.table = table
        self.rowsDone = rowsDone
        self.estimatedRows = estimatedRows
        self.rowsPerSecond = rowsPerSecond
    }

    public var ratio: Double { estimatedRows > 0 ? min(1, Double(rowsDone) / Double(estimatedRows)) : 0 }
    public var etaSeconds: Double? {
        guard rowsPerSecond > 0, estimatedRows > rowsDone else { return nil }
        return Double(estimatedRows - rowsDone) / rowsPerSecond
    }

    public var line: String {
        let eta = etaSeconds.map { " ETA " + Self.clock($0) } ?? ""
        return "\(table): \(rowsDone) of ~\(estimatedRows) rows (\(Int(ratio * 100)) %), \(Int(rowsPerSecond)) rows/s\(eta)"
    }

    /// The line with a bar in front, for a terminal: `[#####...............] public.orders: …`.
    public func barLine(width: Int = 20) -> String {
        let filled = max(0, min(width, Int(ratio * Double(width))))
        return "[" + String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled) + "] " + line
    }

    /// Seconds as `42 s`, `3:07` (minutes) or `1:02:05` (hours).
    static func clock(_ seconds: Double) -> String {
        let s = Int(seconds.rounded())
        if s < 60 { return "\(s) s" }
        let (h, m, r) = (s / 3600, s / 60 % 60, s % 60)
        func two(_ n: Int) -> String { n < 10 ? "0\(n)" : "\(n)" }
        return h > 0 ? "\(h):\(two(m)):\(two(r))" : "\(m):\(two(r))"
    }
}

/// What a backfill did to one table.
public struct BackfillTableReport: Sendable {
    public let source: TableName
    public let target: TableName
    public var runID = ""
    public var versionSource: VersionSource = .changeLog
    /// The whole backfill of the table, earlier runs of it included (a resumed run adds to them).
    public var counts = BackfillCounts()
    /// This run alone.
    public var thisRun = BackfillCounts()
    public var resumed = false
    public var alreadyDone = false
    /// Stopped by SIGTERM after a committed chunk: rerun to continue.
    public var stopped = false
    public var done = false
    public var dryRun = false
    /// Keys still differing after settling, with what differs (first ones), and how many in all.
    public var differing: [(key: KeyTexts, difference: RowDifference)] = []
    public var failedKeys: [(KeyTexts, String)] = []
    public var keyNames: [String] = []
    public var duration: Duration = .zero

    public init(source: TableName, target: TableName) {
        self.source = source
        self.target = target
    }

    /// Done, and every row copied and checked.
    public var isClean: Bool { counts.failed == 0 && differing.isEmpty }

    func describe(_ key: KeyTexts) -> String { zip(keyNames, key).map { "\($0)=\($1)" }.joined(separator: ", ") }
}

/// The result of a backfill run over its tables.
public struct BackfillReport: Sendable {
    public var tables: [BackfillTableReport] = []
    public var duration: Duration = .zero

    public init() {}

    /// 0 done and verified (or stopped cleanly), 2 rows failed or still differ.
    public var exitCode: Int32 { tables.allSatisfy(\.isClean) ? 0 : 2 }

    public var text: String {
        var out = ""
        for t in tables {
            let c = t.counts
            let state = t.alreadyDone ? "already complete (use --restart to copy again)"
                : t.stopped ? "stopped; run again to continue" : t.dryRun ? "dry run: nothing written" : t.done ? "done" : "incomplete"
            out += "\(t.source) → \(t.target): \(state)\(t.resumed ? " (resumed run \(t.runID))" : "")\n"
            out += "  rows read \(c.rowsRead), inserted \(c.inserted), updated \(c.updated), skipped (target newer) \(c.skipped), deleted \(c.deleted), failed \(c.failed)\n"
            out += "  chunks \(c.chunks), verified \(c.verified), still differing rows \(t.differing.count), versions from \(t.versionSource.rawValue), \(String(format: "%.1f", t.duration.seconds)) s\n"
            for (key, reason) in t.failedKeys.prefix(20) { out += "  failed \(t.describe(key)): \(reason)\n" }
            for d in t.differing.prefix(20) { out += "  \(d.difference.symbol) \(t.describe(d.key))\n" }
            if t.differing.count > 20 { out += "  … \(t.differing.count - 20) more differing rows\n" }
        }
        return out
    }

    public var json: String {
        func counts(_ c: BackfillCounts) -> JSONValue {
            .object([("chunks", .number(String(c.chunks))), ("rows_read", .number(String(c.rowsRead))), ("inserted", .number(String(c.inserted))),
                     ("updated", .number(String(c.updated))), ("skipped", .number(String(c.skipped))), ("deleted", .number(String(c.deleted))),
                     ("failed", .number(String(c.failed))), ("verified", .number(String(c.verified)))])
        }
        let items: [JSONValue] = tables.map { t in
            .object([
                ("source", .string(t.source.description)), ("target", .string(t.target.description)), ("run_id", .string(t.runID)),
                ("version_source", .string(t.versionSource.rawValue)), ("done", .bool(t.done)), ("stopped", .bool(t.stopped)),
                ("resumed", .bool(t.resumed)), ("already_done", .bool(t.alreadyDone)), ("dry_run", .bool(t.dryRun)),
                ("total", counts(t.counts)), ("this_run", counts(t.thisRun)),
                ("differing", .number(String(t.differing.count))),
                ("differing_keys", .array(t.differing.prefix(100).map { .string("\($0.difference.symbol) \(t.describe($0.key))") })),
                ("failed_keys", .array(t.failedKeys.prefix(100).map { .string("\(t.describe($0.0)): \($0.1)") })),
                ("duration_seconds", .number(String(format: "%.3f", t.duration.seconds))),
            ])
        }
        return JSONValue.object([("tables", .array(items)), ("exit_code", .number(String(exitCode))),
                                 ("duration_seconds", .number(String(format: "%.3f", duration.seconds)))]).serialized
    }
}
