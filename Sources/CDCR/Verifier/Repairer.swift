import CDCCore
import CDCPostgres
import Foundation
import Logging

/// How `cdcr repair` acts on the differences verify found.
public enum RepairMode: String, Sendable, CaseIterable {
    /// Report what would change; change nothing (the default).
    case dryRun = "dry-run"
    /// Write reviewable SQL that would make the target equal to the source.
    case print
    /// Apply the fixes through the applier (version guard, ledger), logging each in cdcr.repair_log.
    case execute
}

/// What repair did (or would do) to one table.
public struct RepairResult: Sendable {
    public let table: TableName
    public var inserted = 0, updated = 0, deleted = 0
    /// Extra target rows left alone because `--allow-delete` was not given.
    public var keptExtra = 0
    /// Rows that no longer differed when re-read at repair time.
    public var alreadyEqual = 0
    /// Fixes the target refused, with the reason.
    public var failed: [(key: String, reason: String)] = []
    /// Differing rows never listed because a repair round made no progress (see `executeInRounds`).
    public var notReached = 0

    public init(table: TableName) { self.table = table }

    public var changed: Int { inserted + updated + deleted }
}

/// Makes target rows equal to the source for the keys verify reported. The source is the truth:
/// missing rows are inserted, different rows overwritten, extra rows deleted only when allowed.
///
/// `--execute` works in batches, each in one target transaction that locks the rows (row versions
/// first, then the table, as the applier does), re-reads the source, applies the fixes through the
/// applier's path (ledger entry, version guard: a repair always applies and leaves the row's stored
/// version as it was, so a late older change still loses) and writes before/after images to
/// `cdcr.repair_log`. A change the applier makes meanwhile either commits before the lock (and the
/// source read sees it) or waits for the batch and then applies on top.
public final class Repairer {
    let run: VerifyRun
    let settings: Settings
    let logger: Logger
    public let runID: String
    let allowDelete: Bool
    var batchSize = 500
    /// Asked before a failed batch is retried; false stops the repair with the batch's error (a
    /// reconcile run past its time budget must not retry what its statement timeout cut off).
    var mayRetry: () -> Bool = { true }

    public init(run: VerifyRun, settings: Settings, logger: Logger, allowDelete: Bool) {
        self.run = run
        self.settings = settings
        self.logger = logger
        self.allowDelete = allowDelete
        runID = sortableRunID("repair")
    }

    /// What would change, from the diff alone.
    public func dryRun(_ diff: TableDiff) -> RepairResult {
        var result = RepairResult(table: diff.source)
        result.inserted = diff.missing
        result.updated = diff.different
        if allowDelete { result.deleted = diff.extra } else { result.keptExtra = diff.extra }
        return result
    }

    /// Repairs a table completely: fixes the differences `diff` lists, and while verify had to leave
    /// some unlisted (`--max-differences`), verifies again and fixes those — memory holds one round's
    /// keys at a time. Stops when a round changes nothing (only refused rows or kept extra rows left).
    public func executeInRounds(_ first: TableDiff, verifyAgain: () throws -> TableDiff, progress: (String) -> Void = { _ in }) throws -> RepairResult {
        var diff = first
        var total = RepairResult(table: diff.source)
        var failed: [String: String] = [:]
        while true {
            progress("repairing \(diff.listed + diff.rangeRows) of \(diff.listed + diff.rangeRows + diff.unlisted) differing rows")
            let round = try execute(diff)
            total.inserted += round.inserted; total.updated += round.updated; total.deleted += round.deleted
            total.alreadyEqual += round.alreadyEqual
            // The same extra rows are met again each round, listed or only counted.
            total.keptExtra = round.keptExtra + (allowDelete ? 0 : diff.unlistedExtra)
            for f in round.failed { failed[f.key] = f.reason }
            let pending = unlistedToFix(diff)
            guard pending > 0 else { break }
            guard round.changed > 0 else {
                // The listing held only rows that stay (refused ones): the unlisted ones are out of
                // reach until --max-differences makes room.
                total.notReached = pending
                break
            }
            diff = try verifyAgain()
        }
        total.failed = failed.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
        return total
    }

    /// Rows verify only counted that this repair would change (extra rows only with `--allow-delete`).
    func unlistedToFix(_ diff: TableDiff) -> Int {
        diff.unlistedMissing + diff.unlistedDifferent + (allowDelete ? diff.unlistedExtra : 0)
    }

    /// Applies the fixes of `diff` in batches. Throws only errors that stop the run (connection,
    /// locks that keep failing); refused rows are counted in `failed`.
    public func execute(_ diff: TableDiff) throws -> RepairResult {
        let pair = try TablePair.resolve(source: diff.source, target: diff.target, only: nil, sourceConn: run.source, targetConn: run.target)
        try BookkeepingSchema.install(on: run.target)
        let applier = BatchApplier(conn: run.target, settings: settings, logger: logger)
        var result = RepairResult(table: diff.source)
        func repair(_ keys: [KeyTexts]) throws {
            var attempt = 0
            while true {
                do {
                    let r = try run.target.transaction { _ in try repairBatch(keys, pair: pair, applier: applier) }
                    result.merge(r)
                    return
                } catch {
                    attempt += 1
                    switch ErrorClassifier.classify(error) {
                    case .transient where attempt < 5 && mayRetry(), .unclear where attempt <= settings.unclearErrorRetries && mayRetry(): break
                    default: throw error
                    }
                    logger.warning("repair batch failed, retrying", metadata: ["table": "\(diff.source)", "error": "\(error)"])
                    Thread.sleep(forTimeInterval: 0.2 * Double(attempt))
                }
            }
        }
        try diff.differenceBatches(of: batchSize) { try repair($0.map(\.key)) }
        // A summarised range is copied (or deleted) page by page in key order: each page is a batch
        // like the listed ones (locks, fresh source rows, ledger, repair log), so undo covers it too.
        // A range where nearly all rows differ: the source's keys first (copied or updated), then the
        // target's keys the source lacks (deleted).
        for r in diff.ranges {
            if r.side != .target { try forEachKeyPage(of: r, on: .source, pair: pair) { try repair($0) } }
            guard r.side != .source else { continue }
            if !allowDelete {
                result.keptExtra += Int(r.extra)
                continue
            }
            try forEachKeyPage(of: r, on: .target, pair: pair) { keys in
                if r.side == nil { try repair(try self.absentFromSource(keys, pair: pair)) } else { try repair(keys) }
            }
        }
        return result
    }

    /// The keys of a summarised range, `batchSize` at a time in key order, read from `side` as it
    /// is now (the source for missing and differing rows, the target for extra ones).
    func forEachKeyPage(of r: RangeDifference, on side: Side, pair: TablePair, _ body: ([KeyTexts]) throws -> Void) throws {
        let reader = self.reader(side, pair: pair)
        var after: KeyTexts?
        while true {
            let keys = try reader.keyPage(in: r.range, after: after, limit: batchSize)
            guard let last = keys.last else { return }
            try body(keys)
            after = last
        }
    }

    /// `side`'s database read as verify reads it (the run's `--where`).
    private func reader(_ side: Side, pair: TablePair) -> VerifySide {
        VerifySide(side, conn: side == .source ? run.source : run.target, pair: pair, predicate: run.options.predicate, floatTolerance: nil)
    }

    /// Those of `keys` with no row in the source (now).
    func absentFromSource(_ keys: [KeyTexts], pair: TablePair) throws -> [KeyTexts] {
        let present = try reader(.source, pair: pair).rows(keys)
        return keys.filter { present[$0] == nil }
    }

    /// `keys` classified against both sides now: missing in the target, different, or extra; equal ones left out.
    func classified(_ keys: [KeyTexts], pair: TablePair) throws -> [ListedDifference] {
        let s = try reader(.source, pair: pair).rows(keys), t = try reader(.target, pair: pair).rows(keys)
        let comparator = RowComparator(columns: pair.columns, floatTolerance: nil)
        return keys.compactMap { key in comparator.compare(source: s[key], target: t[key]).map { (key: key, difference: $0) } }
    }

    private func repairBatch(_ keys: [KeyTexts], pair: TablePair, applier: BatchApplier) throws -> RepairResult {
        var result = RepairResult(table: pair.source.name)
        let rows = RepairRows(pair: pair)
        let before = try rows.lockImages(keys, on: run.target)
        let sourceNow = try rows.sourceRows(keys, on: run.source)
        let comparator = RowComparator(columns: pair.columns, floatTolerance: nil)

        var items: [Result<DecodedMessage, PoisonError>] = []
        var planned: [(key: KeyTexts, action: String, changeID: String)] = []
        for key in keys {
            let source = sourceNow[key]
            let target = before[key]
            guard comparator.compare(source: source?.canonical, target: target?.canonical) != nil else {
                result.alreadyEqual += 1
                continue
            }
            let changeID = "\(runID):\(pair.target.name):\(key.joined(separator: ","))"
            let keyValues = zip(pair.keyColumns, key).map { ($0.name, ColumnValue.text($1)) }
            if let source {
                let row = zip(rows.writtenColumns, source.raw).map { ($0, $1.map(ColumnValue.text) ?? .null) }
                items.append(.success(.change(ChangeEvent(changeID: changeID, table: pair.source.name, operation: target == nil ? .insert : .update,
                                                         key: keyValues, row: row, version: nil, timestampMicros: nil, format: .native))))
                planned.append((key, target == nil ? "insert" : "update", changeID))
            } else if allowDelete {
                items.append(.success(.change(ChangeEvent(changeID: changeID, table: pair.source.name, operation: .delete,
                                                         key: keyValues, row: nil, version: nil, timestampMicros: nil, format: .native))))
                planned.append((key, "delete", changeID))
            } else {
                result.keptExtra += 1
            }
        }
        guard !items.isEmpty else { return result }
        let outcomes = try applier.applyInOpenTransaction(items, isolateUnclear: true)
        var logged: [(key: KeyTexts, action: String, changeID: String)] = []
        for (plan, outcome) in zip(planned, outcomes) {
            switch outcome {
            case .applied:
                logged.append(plan)
                switch plan.action {
                case "insert": result.inserted += 1
                case "update": result.updated += 1
                default: result.deleted += 1
                }
            case let .deadLettered(p):
                result.failed.append((plan.key.joined(separator: ","), p.description))
            default:
                result.failed.append((plan.key.joined(separator: ","), "not applied: \(outcome.label)"))
            }
        }
        let after = try rows.images(logged.map(\.key), on: run.target)
        try rows.log(logged, before: before, after: after, runID: runID, on: run.target)
        return result
    }

    /// Reviewable SQL making the target equal to the source for `diff` (values read from the source
    /// now), passed to `write` a batch at a time.
    public func sql(_ diff: TableDiff, write: (String) -> Void) throws {
        let pair = try TablePair.resolve(source: diff.source, target: diff.target, only: nil, sourceConn: run.source, targetConn: run.target)
        let rows = RepairRows(pair: pair)
        let table = pair.target
        var out = "-- cdcr repair --print: \(diff.source) → \(diff.target), \(diff.listed + diff.rangeRows) differing rows\n"
        out += "-- Applying this by hand bypasses cdcr's ledger, version guard and repair log; prefer cdcr repair --execute.\n"
        if unlistedToFix(diff) > 0 { out += "-- \(unlistedToFix(diff)) more differing rows are beyond --max-differences and not in this script.\n" }
        func literal(_ value: String?, _ column: String) -> String {
            guard let value else { return "NULL" }
            let type = table.columns[table.columnIndex(column)!].sqlType
            return "'" + value.replacingOccurrences(of: "'", with: "''") + "'::" + type
        }
        func keyTuple(_ key: KeyTexts) -> String {
            "(" + zip(pair.keyColumns, key).map { literal($1, $0.name) }.joined(separator: ", ") + ")"
        }
        func whereKey(_ key: KeyTexts) -> String {
            zip(pair.keyColumns, key).map { "\(quoteIdentifier($0.name)) = \(literal($1, $0.name))" }.joined(separator: " AND ")
        }
        func statements(_ batch: [ListedDifference]) throws {
            let source = try rows.sourceRows(batch.map(\.key), on: run.source)
            for (key, d) in batch {
                switch d {
                case .missing:
                    guard let s = source[key] else { out += "-- \(key.joined(separator: ",")): gone from the source since verify\n"; continue }
                    out += "INSERT INTO \(table.name.quoted) (\(rows.writtenColumns.map(quoteIdentifier).joined(separator: ", "))) VALUES ("
                        + zip(rows.writtenColumns, s.raw).map { literal($1, $0) }.joined(separator: ", ") + ");\n"
                case let .different(columns):
                    guard let s = source[key] else { out += "-- \(key.joined(separator: ",")): gone from the source since verify\n"; continue }
                    let sets = columns.compactMap { c -> String? in
                        guard let i = rows.writtenColumns.firstIndex(of: c) else { return nil }
                        return "\(quoteIdentifier(c)) = \(literal(s.raw[i], c))"
                    }
                    out += "UPDATE \(table.name.quoted) SET \(sets.joined(separator: ", ")) WHERE \(whereKey(key));\n"
                case .extra:
                    out += allowDelete ? "DELETE FROM \(table.name.quoted) WHERE \(whereKey(key));\n"
                        : "-- extra row \(whereKey(key)) kept (--allow-delete deletes it)\n"
                }
            }
            write(out)
            out = ""
        }
        try diff.differenceBatches(of: batchSize, statements)
        for r in diff.ranges {
            if r.side == .source {
                // Rows of another database: one INSERT per row, read page by page.
                out += "-- \(r.rows) rows only in the source, as one range:\n"
                try forEachKeyPage(of: r, on: .source, pair: pair) { keys in try statements(keys.map { ($0, .missing) }) }
            } else if r.side == nil {
                out += "-- \(r.rows) rows differing in one range (\(r.missing) missing, \(r.extra) extra, \(r.different) different):\n"
                try forEachKeyPage(of: r, on: .source, pair: pair) { keys in try statements(try self.classified(keys, pair: pair)) }
                try forEachKeyPage(of: r, on: .target, pair: pair) { keys in try statements(try self.absentFromSource(keys, pair: pair).map { ($0, .extra) }) }
            } else {
                let keys = "(" + pair.keyColumns.enumerated().map { quoteIdentifier($1.name) + (pair.keyCollateC[$0] ? " COLLATE \"C\"" : "") }
                    .joined(separator: ", ") + ")"
                let bounds = [r.range.lo.map { "\(keys) >= \(keyTuple($0))" }, r.range.hi.map { "\(keys) < \(keyTuple($0))" }].compactMap { $0 }
                let predicate = (bounds.isEmpty ? ["true"] : bounds).joined(separator: " AND ") + (run.options.predicate.map { " AND (\($0))" } ?? "")
                out += allowDelete ? "-- \(r.rows) rows only in the target, as one range:\nDELETE FROM \(table.name.quoted) WHERE \(predicate);\n"
                    : "-- \(r.rows) extra rows where \(predicate) kept (--allow-delete deletes them)\n"
            }
        }
        write(out)
    }
}

extension RepairResult {
    mutating func merge(_ o: RepairResult) {
        inserted += o.inserted; updated += o.updated; deleted += o.deleted
        keptExtra += o.keptExtra; alreadyEqual += o.alreadyEqual; failed += o.failed
    }
}
