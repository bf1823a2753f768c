import CDCCore
import CDCPostgres
import Foundation
import Logging

/// What `cdcr verify` (and `cdcr repair`) compare and how.
public struct VerifyOptions: Sendable {
    /// Source tables to compare (each goes to its `table_map` target).
    public var tables: [TableName] = []
    /// Non-key columns to compare; nil compares every column the two sides share.
    public var columns: [String]?
    /// A boolean SQL expression over the table's columns, applied on both sides.
    public var predicate: String?
    public var floatTolerance: Double?
    public var settleSeconds: Double = 0
    public var policy = DescentPolicy()
    /// Differing rows listed (and repaired per round) at most; beyond, they are counted only, so
    /// the listing (spilled to disk, see `DifferenceSpill`) stays bounded however far the tables drifted.
    public var maxDifferences = VerifyOptions.defaultMaxDifferences
    public static let defaultMaxDifferences = 100_000
    /// A run of adjacent key ranges present on one side only, holding more rows than this, is
    /// reported as one range with its row count instead of key by key (`repair` copies it range by range).
    public var summarizeRows: Int64 = VerifyOptions.defaultSummarizeRows
    public static let defaultSummarizeRows: Int64 = 1_000
    /// False counts extra target rows without listing them, so they take no room from the rows a
    /// repair that keeps extra rows (no `--allow-delete`) will fix.
    public var listExtra = true
    /// Compare a random sample of keys and estimate the mismatch rate (`--sample`, `--margin`).
    public var sample: SampleOptions?
    /// Compare only the keys changed since a time or the last successful run (`--since`).
    public var incremental: IncrementalOptions?

    public init() {}
}

/// The result of a verify run over several tables.
public struct VerifyReport: Sendable {
    public var tables: [TableDiff] = []
    public var duration: Duration = .zero

    public init() {}

    public var missing: Int { tables.reduce(0) { $0 + $1.missing } }
    public var extra: Int { tables.reduce(0) { $0 + $1.extra } }
    public var different: Int { tables.reduce(0) { $0 + $1.different } }
    public var unlisted: Int { tables.reduce(0) { $0 + $1.unlisted } }
    public var isConsistent: Bool { tables.allSatisfy(\.isConsistent) }
}

/// Opens read-only sessions on both databases and compares table after table.
public final class VerifyRun {
    public let source: PGConnection
    public let target: PGConnection
    let settings: Settings
    let options: VerifyOptions
    let logger: Logger

    /// Connects to both sides, checks they are recent enough and hash alike.
    public init(settings: Settings, options: VerifyOptions, logger: Logger = Logger(label: "cdcr.verify")) throws {
        self.logger = logger
        guard let sourceURL = settings.sourceURL else { throw VerifyError("no source database configured (--source / CDCR_SOURCE_URL)") }
        guard let targetURL = settings.targetURL else { throw VerifyError("no target database configured (--target / CDCR_TARGET_URL)") }
        self.settings = settings
        self.options = options
        let (s, t) = try concurrently({ try Self.open(sourceURL, name: "cdcr-verify") }, { try Self.open(targetURL, name: "cdcr-verify") })
        source = s
        target = t
        try checkHashesAgree()
    }

    public func close() {
        source.close()
        target.close()
    }

    /// A verify session: canonical text forms (UTC, ISO dates, exact floats) and no JIT, whose
    /// compilation costs more than these scans' expressions save.
    static func open(_ url: String, name: String) throws -> PGConnection {
        let conn = try TargetConnection.open(url, applicationName: name)
        try conn.execute("SET jit = off")
        let version = Int(try conn.query("SHOW server_version_num").scalar ?? "0") ?? 0
        if version < 130_000 {
            throw VerifyError("PostgreSQL \(version / 10_000) is too old for cdcr verify (needs 13 or later: trim_scale, extended hash functions)")
        }
        return conn
    }

    /// The checksums are only comparable if both servers compute the same hashes (same byte order).
    func checkHashesAgree() throws {
        let probe = """
            SELECT concat_ws(',', hashtextextended('cdcr', 1), hash_numeric_extended(12.50, 2), jsonb_hash_extended('{"a":[1,"x"]}', 3),
                uuid_hash_extended('6f1c2d3e-0000-4000-8000-00000000abcd', 4), timestamp_hash_extended('2026-11-24 10:00:00.5', 5),
                hashfloat8extended(0.1, 6), hashint8extended(7, 7), hashint4extended(42, 8))
            """
        let (a, b) = try concurrently({ [source] in try source.query(probe).scalar }, { [target] in try target.query(probe).scalar })
        if a != b {
            throw VerifyError("the source and target servers compute different hash values (different byte order or build); checksums cannot be compared")
        }
    }

    /// Verifies one table.
    public func verify(_ sourceName: TableName, progress: @escaping (String) -> Void = { _ in }) throws -> TableDiff {
        let targetName = settings.targetTable(for: sourceName)
        // The source first: a bad predicate stops here, before anything runs on the target.
        if try Catalog.load(sourceName, on: source) != nil {
            try VerifySide.checkPredicate(options.predicate, table: sourceName, side: .source, on: source)
        }
        let pair = try TablePair.resolve(source: sourceName, target: targetName, only: options.columns, sourceConn: source, targetConn: target)
        let s = VerifySide(.source, conn: source, pair: pair, predicate: options.predicate, floatTolerance: options.floatTolerance)
        let t = VerifySide(.target, conn: target, pair: pair, predicate: options.predicate, floatTolerance: options.floatTolerance)
        try VerifySide.checkPredicate(options.predicate, table: targetName, side: .target, on: target)
        let verifier = TableVerifier(pair: pair, source: s, target: t, policy: options.policy, floatTolerance: options.floatTolerance,
                                     maxListed: options.maxDifferences, listExtra: options.listExtra,
                                     summarizeRows: options.summarizeRows, logger: logger, progress: progress)
        if let sample = options.sample { return try verifier.runSample(sample) }
        if let incremental = options.incremental { return try verifyChanged(pair, incremental, verifier: verifier) }
        return try verifier.run(settleSeconds: options.settleSeconds)
    }

    /// `--since`: compares the keys changed since the bound; with `last` and no recorded run, the
    /// whole table. A run that finds the table consistent records where the next one starts.
    func verifyChanged(_ pair: TablePair, _ incremental: IncrementalOptions, verifier: TableVerifier) throws -> TableDiff {
        let (source, target) = (self.source, self.target)
        try CheckState.requireInstalled(on: target)
        // Taken before anything is read, so the next run starting here misses nothing.
        let (s, t) = try concurrently({ try CheckState.watermark(on: source) }, { try CheckState.watermark(on: target) })
        let through = SinceBound(source: s, target: t)
        let since: SinceBound?
        switch incremental.since {
        case let .time(text):
            let instant = try Self.instant(text, on: source)
            since = SinceBound(source: instant, target: instant)
        case .last:
            since = try CheckState.last(pair.source.name, on: target)
        }
        // A backfill that recorded range watermarks since wrote rows without row versions: the
        // changed keys cannot name them, so the table is compared in full.
        let backfilled = try since.map { try BackfillState.rangesRecorded(pair.target.name, since: $0.target, on: target) } ?? false
        var diff: TableDiff
        if let since, !backfilled {
            let column = incremental.changedColumn(for: pair.source.name)
            let (keys, summary, notes) = try ChangedKeys.collect(pair: pair, source: source, target: target, since: since, changedColumn: column)
            diff = try verifier.runKeys(keys, settleSeconds: options.settleSeconds)
            diff.notes += notes
            diff.incremental = summary
        } else {
            diff = try verifier.run(settleSeconds: options.settleSeconds)
            var summary = IncrementalSummary()
            summary.examined = Int(diff.sourceRows) + diff.extra
            summary.since = since
            summary.fullBecause = backfilled ? .backfill : .noState
            diff.incremental = summary
            diff.notes.append(backfilled
                ? "a backfill copied rows into \(pair.target.name) since then (range watermarks, no row versions): compared in full"
                : "no earlier successful run of \(pair.source.name) in cdcr.check_state: compared in full")
        }
        if diff.isConsistent {
            try CheckState.record(pair.source.name, target: pair.target.name, through: through, mode: since == nil || backfilled ? "full" : "incremental",
                                  keysExamined: diff.incremental?.examined ?? 0, on: target)
        }
        return diff
    }

    /// `--since TIME` as the database reads it (any `timestamptz` input).
    static func instant(_ text: String, on conn: PGConnection) throws -> String {
        do {
            return try conn.query("SELECT $1::timestamptz::text", [text]).scalar ?? text
        } catch {
            throw VerifyError("--since '\(text)' is not a time (or 'last'): \(error.message)")
        }
    }

    /// Verifies every table of the options, in order.
    public func verifyAll(progress: @escaping (TableName, String) -> Void = { _, _ in }) throws -> VerifyReport {
        let started = ContinuousClock.now
        var report = VerifyReport()
        for name in options.tables {
            report.tables.append(try verify(name) { progress(name, $0) })
        }
        report.duration = ContinuousClock.now - started
        return report
    }
}
