import CDCCore
import CDCKafka
import CDCPostgres
import Foundation
import Logging

/// What a replay did, per table and in total.
public struct ReplayCounts: Sendable, Equatable {
    public var inWindow = 0, alreadyApplied = 0, appliedNow = 0, stale = 0, failed = 0

    public init() {}

    mutating func add(_ o: EventOutcome) {
        inWindow += 1
        switch o {
        case .applied: appliedNow += 1
        case .duplicate: alreadyApplied += 1
        case .stale: stale += 1
        case .deadLettered: failed += 1
        case .skipped: break
        }
    }

    public var json: String {
        "{\"in_window\":\(inWindow),\"already_applied\":\(alreadyApplied),\"applied_now\":\(appliedNow),\"stale\":\(stale),\"failed\":\(failed)}"
    }
}

public struct ReplayReport: Sendable {
    public var tables: [String: ReplayCounts] = [:]
    public var total = ReplayCounts()

    public init() {}

    /// The JSON of `cdcr replay --json` (and of a replay job's summary in the admin API).
    public func json(from: String, to: String, dryRun: Bool) -> String {
        let tables = tables.keys.sorted().map { "\(JSONValue.string($0).serialized):\(self.tables[$0]!.json)" }.joined(separator: ",")
        return "{\"from\":\(JSONValue.string(from).serialized),\"to\":\(JSONValue.string(to).serialized),\"dry_run\":\(dryRun),\"tables\":{\(tables)},\"total\":\(total.json)}"
    }
}

/// One replay over a window, end to end: connections, the retention check, progress. Used by
/// `cdcr replay` and the admin API's `POST /replay`.
public enum ReplayRun {
    public static func execute(
        settings: Settings, logger: Logger, from: String, to: String, tables: [TableName], dryRun: Bool,
        progress: @escaping (_ done: Int, _ total: Int) -> Void = { _, _ in }
    ) throws -> ReplayReport {
        let (fromMicros, toMicros) = try window(settings: settings, from: from, to: to)
        let source = try PGConnection.connect(settings.sourceURL!)
        defer { source.close() }
        let target = try TargetConnection.open(settings.targetURL!, applicationName: "cdcr-replay", applying: true)
        defer { target.close() }
        try BookkeepingSchema.install(on: target)
        let replayer = Replayer(source: source, applier: BatchApplier(conn: target, settings: settings, logger: logger),
                                settings: settings, logger: logger) { try DeadLetterWriter(settings: settings) }
        defer { replayer.close() }
        try replayer.check(fromMicros: fromMicros, toMicros: toMicros, nowMicros: Int64(Date().timeIntervalSince1970 * 1_000_000))
        try SourceChangeLog.requireInstalled(on: source)
        let window = (CivilTime.timestampString(micros: fromMicros) + "Z", CivilTime.timestampString(micros: toMicros) + "Z")
        var total = 0
        return try replayer.run(from: window.0, to: window.1, tables: tables, dryRun: dryRun,
                                total: { total = $0; progress(0, $0) }) { progress($0, total) }
    }
}

extension ReplayRun {
    /// The window's bounds in microseconds; refuses a missing database or a malformed time before
    /// anything runs (the admin API calls it to answer 400 at once).
    public static func window(settings: Settings, from: String, to: String) throws(ReplayRefused) -> (from: Int64, to: Int64) {
        guard settings.sourceURL != nil else { throw ReplayRefused(description: "no source database configured (--source / CDCR_SOURCE_URL)") }
        guard settings.targetURL != nil else { throw ReplayRefused(description: "no target database configured (--target / CDCR_TARGET_URL)") }
        guard let fromMicros = CivilTime.parseInstant(from) else { throw ReplayRefused(description: "from '\(from)' is not an ISO-8601 time") }
        guard let toMicros = CivilTime.parseInstant(to) else { throw ReplayRefused(description: "to '\(to)' is not an ISO-8601 time") }
        return (fromMicros, toMicros)
    }
}

/// A replay could not start: the window, or the ledger's retention, says no.
public struct ReplayRefused: Error, CustomStringConvertible {
    public let description: String
}

/// Replays the source change log over a time window through the applier's path (ledger, version
/// guard): changes the target already has are duplicates, older ones stale, the rest applied.
public final class Replayer {
    private let source: PGConnection
    private let applier: BatchApplier
    /// Opened on the first failed change only, so a replay that needs no dead letters needs no broker.
    private let makeDeadLetters: () throws -> DeadLetterWriter?
    private var deadLetters: DeadLetterWriter?
    private let settings: Settings
    private let logger: Logger
    /// Changes per chunk (and per applier transaction); defaults to the applier's batch size.
    public var chunkSize: Int

    public init(source: PGConnection, applier: BatchApplier, settings: Settings, logger: Logger,
                deadLetters: @escaping () throws -> DeadLetterWriter? = { nil }) {
        self.source = source
        self.applier = applier
        self.makeDeadLetters = deadLetters
        self.settings = settings
        self.logger = logger
        self.chunkSize = settings.batchMaxEvents
    }

    /// Refuses windows the ledger can no longer vouch for.
    public func check(fromMicros: Int64, toMicros: Int64, nowMicros: Int64) throws {
        guard fromMicros < toMicros else { throw ReplayRefused(description: "--from must be before --to") }
        let horizon = nowMicros - Int64(settings.ledgerRetentionDays) * 86_400_000_000
        if fromMicros < horizon {
            throw ReplayRefused(description: """
                the window starts before the ledger retention (\(settings.ledgerRetentionDays) days): ledger entries and \
                delete tombstones older than that may be pruned, so a replay could re-apply changes or resurrect deleted rows. \
                Reconcile that period row by row instead (cdcr verify, then cdcr repair), or start --from within the retention.
                """)
        }
    }

    /// Streams the window in change_id order, in chunks, and applies (or, dry, only evaluates) them.
    /// `total` hears how many changes the window holds before the first is applied.
    public func run(from: String, to: String, tables: [TableName], dryRun: Bool, total: (Int) -> Void = { _ in },
                    progress: (Int) -> Void = { _ in }) throws -> ReplayReport {
        let (filter, params) = Self.filter(from: from, to: to, tables: tables)
        return try run(filter: filter, params: params, dryRun: dryRun, total: total, progress: progress)
    }

    /// Replays the change-log rows matching `filter` (a WHERE clause over cdcr.change_log with
    /// `params` bound as $1…), in change_id order.
    ///
    /// Pipelined like the consume loop: chunk n+1 is read from the source, decoded and prepared while
    /// chunk n is applied to the target (two connections, two threads); chunks still apply in order.
    func run(filter: String, params: [String?], dryRun: Bool, total: (Int) -> Void = { _ in }, progress: (Int) -> Void = { _ in }) throws -> ReplayReport {
        var report = ReplayReport()
        let me = UncheckedSendable(self)  // the two threads touch disjoint state: source vs applier
        let window = try SourceChangeLog.Window(on: source, filter: filter, params: params)
        total(window.count)
        var chunk = try fetch(window, after: window.start, tables: applier.knownTables)
        if let first = chunk, !first.prepared.unknownTables.isEmpty {
            // Learn the window's first tables now, so the first chunk is prepared like the others.
            applier.learn(first.prepared.unknownTables)
            chunk = Chunk(entries: first.entries, items: first.items, prepared: PreparedBatch.make(first.items, tables: applier.knownTables, settings: settings))
        }
        while let current = chunk {
            let tables = applier.knownTables
            let started = ContinuousClock.now
            let (outcomes, next) = try concurrently(
                { try me.value.applier.apply(current.items, prepared: current.prepared, dryRun: dryRun, isolateUnclear: true) },
                { UncheckedSendable(try me.value.fetch(window, after: current.last, tables: tables)) })
            chunk = next.value
            var dead: [(KafkaMessage, PoisonError, changeID: String?)] = []
            for (e, o) in zip(current.entries, outcomes) {
                report.tables[e.table, default: ReplayCounts()].add(o)
                report.total.add(o)
                if case let .deadLettered(p) = o, !dryRun {
                    let m = KafkaMessage(topic: "cdcr.change_log", partition: -1, offset: e.changeID, key: Array(e.key.utf8), value: Array(e.nativeJSON.utf8), timestampMillis: nil)
                    dead.append((m, p, String(e.changeID)))
                }
            }
            if !dead.isEmpty {
                if deadLetters == nil { deadLetters = try makeDeadLetters() }
                // One dead-letter topic for the pipeline: the stream's (`<first topic>.dlq` or dlq_topic).
                try deadLetters?.write(dead, to: settings.deadLetterTopic(for: settings.topics[0]))
            }
            progress(report.total.inWindow)
            if logger.logLevel <= .debug {
                logger.debug("replayed chunk", metadata: [
                    "changes": "\(current.entries.count)", "took": "\(ContinuousClock.now - started)", "phases": "\(BatchApplier.describe(applier.phases))",
                ])
            }
        }
        return report
    }

    /// One chunk of the window: the change-log rows after change ID `after`, decoded and prepared.
    private struct Chunk {
        let entries: [SourceChangeLog.Entry]
        let items: [Result<DecodedMessage, PoisonError>]
        let prepared: PreparedBatch
        var last: Int64 { entries.last!.changeID }
    }

    /// Reads, decodes and prepares the next chunk of `window`; nil at its end.
    private func fetch(_ window: SourceChangeLog.Window, after last: Int64, tables: [TableName: TargetTable]) throws -> Chunk? {
        let entries = try window.chunk(after: last, limit: chunkSize, on: source)
        guard !entries.isEmpty else { return nil }
        let items: [Result<DecodedMessage, PoisonError>] = parallelMap(entries) { e in
            do { return .success(.change(try e.event())) } catch { return .failure(PoisonError(.undecodable, "change_log row \(e.changeID): \(error)")) }
        }
        return Chunk(entries: entries, items: items, prepared: PreparedBatch.make(items, tables: tables, settings: settings))
    }

    /// Closes the dead-letter producer, if one was opened.
    public func close() { deadLetters?.close() }

    static func filter(from: String, to: String, tables: [TableName]) -> (String, [String?]) {
        var sql = "committed_at >= $1::timestamptz AND committed_at < $2::timestamptz"
        var params: [String?] = [from, to]
        if !tables.isEmpty {
            sql += " AND table_name = ANY($3::text[])"
            params.append(pgArrayLiteral(tables.map(\.description)))
        }
        return (sql, params)
    }
}
