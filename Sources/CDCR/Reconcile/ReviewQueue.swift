import CDCCore
import CDCPostgres
import Foundation
import Logging

/// What `ReviewQueue.apply` did to one approved item.
public struct AppliedItem: Sendable {
    public let id: Int64
    public let table: TableName
    public let keyText: String
    public let outcome: KeyRepairOutcome
}

/// What `ReviewQueue.apply` did.
public struct ReviewApplyResult: Sendable {
    /// The repair run the fixes are logged under (`cdcr repair-undo RUN`).
    public let runID: String
    public var items: [AppliedItem] = []

    /// Items now marked applied (repaired, or equal when re-read).
    public var applied: Int { items.count { $0.outcome.isSettled } }
    /// Items still approved and not applied: refused by the target, or extra rows kept.
    public var pending: Int { items.count - applied }
}

/// The review queue (docs/RECONCILE.md, "Review queue"): listing, approving, rejecting and applying
/// discrepancies. Only `open` and `queued` items can be decided; every decision records who and when
/// (and why, for a rejection). Approved items are applied through `KeyRepair`.
public enum ReviewQueue {
    /// Items matching `filter`, newest first (by default the queue: open and queued).
    public static func list(_ filter: ReviewFilter, limit: Int = 1_000, on conn: PGConnection) throws -> [Discrepancy] {
        var f = filter
        if f.statuses.isEmpty && f.ids.isEmpty { f.statuses = [.open, .queued] }
        let (conditions, params) = f.sql(firstParam: 2)
        let ids = try conn.query("SELECT id::text FROM cdcr.discrepancies WHERE \(conditions) ORDER BY id DESC LIMIT $1",
                                 [String(limit)] + params).rows.compactMap { $0[0].flatMap { Int64($0) } }
        guard !ids.isEmpty else { return [] }
        return try ReconcileStore.list(ids: ids, limit: ids.count, on: conn)
    }

    /// Approves items for repair. All or nothing: every ID must exist, be open or queued, and be of a
    /// kind repair can fix (missing, extra, different). Returns the IDs approved.
    @discardableResult
    public static func approve(_ ids: [Int64], by: String, on conn: PGConnection) throws -> [Int64] {
        try decide(ids, on: conn) { item in
            guard item.kind.isRowLevel else {
                return "is a \(item.kind.rawValue) finding, which repair cannot fix; reject it with a reason (and fix it by hand)"
            }
            return nil
        } apply: { c, ids in
            try ReconcileStore.resolve(ids, as: .approved, by: by, on: c)
        }
    }

    /// Approves every open or queued row-level item matching `filter`. Returns the IDs approved.
    @discardableResult
    public static func approve(matching filter: ReviewFilter, by: String, on conn: PGConnection) throws -> [Int64] {
        var f = filter
        if let bad = f.statuses.first(where: { $0 != .open && $0 != .queued }) {
            throw ReviewError(.usage, "status=\(bad.rawValue): only open and queued items can be approved")
        }
        if let bad = f.kinds.first(where: { !$0.isRowLevel }) {
            throw ReviewError(.usage, "kind=\(bad.rawValue): repair cannot fix such findings; reject them instead")
        }
        if f.statuses.isEmpty { f.statuses = [.open, .queued] }
        if f.kinds.isEmpty { f.kinds = DiscrepancyKind.allCases.filter(\.isRowLevel) }
        return try conn.transaction { c in
            let (conditions, params) = f.sql()
            let ids = try c.query("SELECT id::text FROM cdcr.discrepancies WHERE \(conditions) ORDER BY id FOR UPDATE", params)
                .rows.compactMap { $0[0].flatMap { Int64($0) } }
            try ReconcileStore.resolve(ids, as: .approved, by: by, on: c)
            return ids
        }
    }

    /// Rejects items: the target is kept as it is. `reason` is required. All or nothing.
    @discardableResult
    public static func reject(_ ids: [Int64], reason: String, by: String, on conn: PGConnection) throws -> [Int64] {
        let reason = reason.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !reason.isEmpty else { throw ReviewError(.usage, "a rejection needs a reason (--reason TEXT)") }
        return try decide(ids, on: conn) { _ in nil } apply: { c, ids in
            try ReconcileStore.resolve(ids, as: .rejected, reason: reason, by: by, on: c)
        }
    }

    /// Locks the items, checks each (`problem` returns why it cannot be decided, or nil), and applies
    /// the decision to all of them, or to none.
    private static func decide(_ ids: [Int64], on conn: PGConnection, problem: (Discrepancy) -> String?,
                               apply: (PGConnection, [Int64]) throws -> Void) throws -> [Int64] {
        let unique = Array(Set(ids)).sorted()
        guard !unique.isEmpty else { throw ReviewError(.usage, "no item ID given") }
        return try conn.transaction { c in
            try c.query("SELECT 1 FROM cdcr.discrepancies WHERE id = ANY($1::bigint[]) FOR UPDATE", [pgArrayLiteral(unique.map(String.init))])
            let items = try ReconcileStore.list(ids: unique, limit: unique.count, on: c)
            let found = Set(items.map(\.id))
            let missing = unique.filter { !found.contains($0) }
            if !missing.isEmpty {
                throw ReviewError(.notFound, "no review item \(missing.map(String.init).joined(separator: ", ")) (nothing changed)")
            }
            var problems: [String] = []
            for item in items.sorted(by: { $0.id < $1.id }) {
                if item.resolution != .open && item.resolution != .queued {
                    problems.append("item \(item.id) is \(item.resolution.rawValue)\(item.decidedBy.map { " (by \($0))" } ?? ""): only open or queued items can be approved or rejected")
                } else if let p = problem(item) {
                    problems.append("item \(item.id) \(p)")
                }
            }
            if !problems.isEmpty { throw ReviewError(.conflict, problems.joined(separator: "; ") + " (nothing changed)") }
            try apply(c, unique)
            return unique
        }
    }

    /// Applies every approved, not yet applied item through `KeyRepair` (one repair run for all),
    /// and marks those repaired or found equal as applied with the repair run ID. Items the target
    /// refused, and extra rows without `allowDelete`, stay approved and are reported. Two applies
    /// never run at once (a session advisory lock on the target).
    public static func apply(run: VerifyRun, settings: Settings, logger: Logger, allowDelete: Bool, ids: [Int64]? = nil) throws -> ReviewApplyResult {
        let lock = "SELECT pg_try_advisory_lock(hashtext('cdcr.review.apply'))"
        guard try run.target.query(lock).scalar == "t" else {
            throw ReviewError(.conflict, "another review apply is running on this target")
        }
        defer { _ = try? run.target.query("SELECT pg_advisory_unlock(hashtext('cdcr.review.apply'))") }
        let approved = try run.target.query("""
            SELECT id::text FROM cdcr.discrepancies
            WHERE resolution = 'approved' AND applied_at IS NULL AND kind IN ('missing', 'extra', 'different')
              AND ($1::bigint[] IS NULL OR id = ANY($1::bigint[]))
            ORDER BY id
            """, [ids.map { pgArrayLiteral($0.map(String.init)) }]).rows.compactMap { $0[0].flatMap { Int64($0) } }
        let repair = KeyRepair(run: run, settings: settings, logger: logger, allowDelete: allowDelete)
        var result = ReviewApplyResult(runID: repair.runID)
        guard !approved.isEmpty else { return result }
        let items = try ReconcileStore.list(ids: approved, limit: approved.count, on: run.target).sorted { $0.id < $1.id }
        let groups = Dictionary(grouping: items) { [$0.table.description, $0.targetTable.description] }
        for (names, group) in groups.sorted(by: { $0.key.lexicographicallyPrecedes($1.key) }) {
            let (source, target) = (TableName(parsing: names[0]), TableName(parsing: names[1]))
            let pair: TablePair
            do {
                pair = try repair.pair(source: source, target: target)
            } catch let e as VerifyError {
                // A table dropped or changed since: its items wait, the other tables go on.
                result.items += group.map { AppliedItem(id: $0.id, table: source, keyText: $0.keyText, outcome: .failed(e.description)) }
                continue
            }
            var keyed: [(Discrepancy, KeyTexts)] = []
            for item in group {
                do {
                    keyed.append((item, try KeyRepair.keyTexts(fromJSON: item.rowKeyJSON ?? "null", pair: pair)))
                } catch {
                    result.items.append(AppliedItem(id: item.id, table: source, keyText: item.keyText, outcome: .failed("\(error)")))
                }
            }
            let repaired = try repair.repair(source: source, target: target, keys: keyed.map(\.1))
            var settled: [Int64] = []
            for ((item, _), (_, outcome)) in zip(keyed, repaired.outcomes) {
                result.items.append(AppliedItem(id: item.id, table: source, keyText: item.keyText, outcome: outcome))
                if outcome.isSettled { settled.append(item.id) }
            }
            try ReconcileStore.markApplied(settled, repairRunID: repair.runID, on: run.target)
        }
        result.items.sort { $0.id < $1.id }
        return result
    }
}
