import CDCCore
import CDCPostgres
import Foundation
import Logging

/// What repairing one key did.
public enum KeyRepairOutcome: Sendable, Equatable {
    /// The key still differed and was fixed (`insert`, `update` or `delete`), logged in `cdcr.repair_log`.
    case repaired(String)
    /// Equal on both sides when re-read: nothing to do.
    case alreadyEqual
    /// Only in the target, and deleting was not allowed: left as it is.
    case keptExtra
    /// The target refused the fix; the reason.
    case failed(String)

    /// `repaired`, `already_equal`, `kept_extra`, `failed`.
    public var label: String {
        switch self {
        case .repaired: "repaired"
        case .alreadyEqual: "already_equal"
        case .keptExtra: "kept_extra"
        case .failed: "failed"
        }
    }

    /// The key is done: fixed, or nothing left to fix.
    public var isSettled: Bool {
        if case .repaired = self { return true }
        return self == .alreadyEqual
    }
}

/// What `KeyRepair.repair` did to one table.
public struct KeyRepairResult: Sendable {
    public let table: TableName
    /// The repair run (`cdcr.repair_log`, `cdcr repair-undo RUN`).
    public let runID: String
    /// Per key given, in the order given (as canonical texts).
    public var outcomes: [(key: KeyTexts, outcome: KeyRepairOutcome)] = []
    /// The repairer's counts.
    public var summary: RepairResult
}

/// Repairs a given set of row keys of one table now: re-reads those keys on both sides (they may
/// have changed since they were found), and repairs the ones that still differ through the repair
/// path (`Repairer`: row locks, ledger, version guard, `cdcr.repair_log` with before-images, undo).
/// Every key repaired by one `KeyRepair` shares its run ID, so one `cdcr repair-undo` puts them all back.
public final class KeyRepair {
    let run: VerifyRun
    let repairer: Repairer
    let allowDelete: Bool

    public var runID: String { repairer.runID }

    public init(run: VerifyRun, settings: Settings, logger: Logger = Logger(label: "cdcr.repair"), allowDelete: Bool) {
        self.run = run
        self.allowDelete = allowDelete
        repairer = Repairer(run: run, settings: settings, logger: logger, allowDelete: allowDelete)
    }

    /// The source table and its target table, resolved against both catalogs.
    public func pair(source: TableName, target: TableName) throws -> TablePair {
        try TablePair.resolve(source: source, target: target, only: nil, sourceConn: run.source, targetConn: run.target)
    }

    /// A stored key object (`{"id": "7"}`) as key texts in `pair`'s key-column order.
    public static func keyTexts(fromJSON json: String, pair: TablePair) throws -> KeyTexts {
        guard let object = try? JSONParser.parse(json), object.objectMembers != nil else {
            throw VerifyError("row key \(json) is not a JSON object")
        }
        return try pair.keyColumns.map { c in
            switch object[c.name] {
            case let .string(s)?: return s
            case let v? where v != .null: return v.serialized
            default: throw VerifyError("row key \(json) has no value for key column \(c.name) of \(pair.source.name)")
            }
        }
    }

    /// Re-reads `keys` of `source` → `target` on both sides and repairs those that still differ.
    public func repair(source: TableName, target: TableName, keys: [KeyTexts]) throws -> KeyRepairResult {
        let pair = try pair(source: source, target: target)
        let canonical = try canonicalize(keys, pair: pair)
        var seen = Set<KeyTexts>()
        let unique = canonical.filter { seen.insert($0).inserted }
        let s = VerifySide(.source, conn: run.source, pair: pair, predicate: nil, floatTolerance: nil)
        let t = VerifySide(.target, conn: run.target, pair: pair, predicate: nil, floatTolerance: nil)
        let verifier = TableVerifier(pair: pair, source: s, target: t, floatTolerance: nil, maxListed: max(1, unique.count))
        let diff = try verifier.runKeys(unique)
        var result = KeyRepairResult(table: source, runID: runID, summary: RepairResult(table: source))
        var logged: [KeyTexts: String] = [:]
        let listed = try VerifyFindings.rows(of: diff)
        if !listed.isEmpty {
            try BookkeepingSchema.install(on: run.target)
            let before = try run.target.query("SELECT coalesce(max(id), 0)::text FROM cdcr.repair_log").scalar ?? "0"
            result.summary = try repairer.execute(diff)
            logged = try loggedActions(pair, after: before)
        }
        let failed = Dictionary(result.summary.failed.map { ($0.key, $0.reason) }, uniquingKeysWith: { a, _ in a })
        let differing = Dictionary(listed.map { ($0.key, $0.difference) }, uniquingKeysWith: { a, _ in a })
        var outcomeOf: [KeyTexts: KeyRepairOutcome] = [:]
        for key in unique {
            let outcome: KeyRepairOutcome
            if let action = logged[key] {
                outcome = .repaired(action)
            } else if let reason = failed[key.joined(separator: ",")] {
                outcome = .failed(reason)
            } else if differing[key] == .extra && !allowDelete {
                outcome = .keptExtra
            } else {
                // Not listed as differing, or equal when the repairer re-read it under its locks.
                outcome = .alreadyEqual
            }
            outcomeOf[key] = outcome
        }
        result.outcomes = canonical.map { ($0, outcomeOf[$0] ?? .alreadyEqual) }
        return result
    }

    /// The keys as the verifier's canonical texts (computed by the source database from the typed
    /// values), so `007` and `7` name the same integer key; a text that is not a value of the key
    /// column's type is refused by name.
    func canonicalize(_ keys: [KeyTexts], pair: TablePair) throws -> [KeyTexts] {
        guard !keys.isEmpty else { return [] }
        let n = pair.keyCount
        if let bad = keys.first(where: { $0.count != n }) {
            throw VerifyError("key \(bad.joined(separator: ",")) has \(bad.count) values; \(pair.source.name) has \(n) key columns")
        }
        let types = pair.keyColumns.map { pair.source.columns[pair.source.columnIndex($0.name)!].sqlType }
        let arrays = types.enumerated().map { "$\($0 + 1)::\($1)[]" }.joined(separator: ", ")
        let names = pair.keyColumns.map { quoteIdentifier($0.name) }.joined(separator: ", ")
        let canonical = pair.keyColumns.map { $0.canonicalText(.source, alias: "u") }.joined(separator: ", ")
        let params: [String?] = (0..<n).map { k in pgArrayLiteral(keys.map { $0[k] }) }
        do {
            return try run.source.query(
                "SELECT \(canonical) FROM unnest(\(arrays)) WITH ORDINALITY AS u(\(names), cdcr_ordinal) ORDER BY cdcr_ordinal", params)
                .rows.map { $0.map { $0 ?? "" } }
        } catch {
            throw VerifyError("keys of \(pair.source.name) are not values of its key columns (\(types.joined(separator: ", "))): \(error.message)")
        }
    }

    /// Key → action of the fixes this run logged for the pair's target table after log entry `after`.
    func loggedActions(_ pair: TablePair, after: String) throws -> [KeyTexts: String] {
        var params: [String?] = [runID, pair.target.name.description, after]
        let keys = pair.keyColumns.map { c -> String in
            params.append(c.name)
            return "row_key ->> $\(params.count)"
        }
        let rows = try run.target.query("""
            SELECT action, \(keys.joined(separator: ", ")) FROM cdcr.repair_log
            WHERE run_id = $1 AND table_name = $2 AND id > $3::bigint ORDER BY id
            """, params).rows
        var out: [KeyTexts: String] = [:]
        for r in rows { out[r[1...].map { $0 ?? "" }] = r[0] ?? "" }
        return out
    }
}
