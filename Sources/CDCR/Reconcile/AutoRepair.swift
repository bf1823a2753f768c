import CDCCore
import CDCPostgres
import Logging

/// An automatic repair stopped by `underlying` after committing `repaired` rows (recorded as such).
struct PartialRepair: Error, CustomStringConvertible {
    let repaired: Int
    let underlying: any Error
    var description: String { "\(underlying)" }
}

/// What an automatic repair of one table did, per discrepancy.
struct AutoRepairResult {
    var repaired = 0
    /// Equal to the source when re-read under the repair's locks: the stream got there first.
    var alreadyEqual = 0
    var refused = 0
    var repairRunID = ""
}

/// Repairs the rows a policy chose through the existing repair path (`Repairer.execute`: ledger,
/// version guard, `cdcr.repair_log` with before-images, so `cdcr repair-undo RUN` undoes it), then
/// records each discrepancy's resolution: `auto_repaired` with the repair run, `queued` when the
/// target refused the fix, `resolved_by_stream` when the row was already equal at repair time.
struct AutoRepair {
    let run: VerifyRun
    let settings: Settings
    let logger: Logger
    /// False once the run's budget is spent: a failed batch is then not retried.
    var mayRetry: () -> Bool = { true }

    func apply(_ rows: [RowFinding], ids: [Int64], diff: TableDiff, policy: TablePolicy, store: PGConnection) throws -> AutoRepairResult {
        var result = AutoRepairResult()
        guard !rows.isEmpty else { return result }
        let repairer = Repairer(run: run, settings: settings, logger: logger, allowDelete: policy.allowDelete)
        repairer.mayRetry = mayRetry
        result.repairRunID = repairer.runID
        let outcome: RepairResult
        do {
            outcome = try repairer.execute(try VerifyFindings.repairDiff(like: diff, rows: rows))
        } catch {
            // Batches committed before the failure (a budget's statement timeout, a lost
            // connection) are in the repair log: their discrepancies are recorded as repaired,
            // the others stay open for the next run.
            let applied = try appliedKeys(runID: repairer.runID, table: diff.target, keyNames: diff.keyNames, on: store)
            let done = zip(rows, ids).filter { applied.contains($0.0.key) }.map(\.1)
            try ReconcileStore.resolve(done, as: .autoRepaired, policy: policy.policy.rawValue,
                                       reason: "repaired automatically (\(policy.policy.rawValue))", repairRunID: repairer.runID, on: store)
            throw PartialRepair(repaired: done.count, underlying: error)
        }
        let applied = try appliedKeys(runID: repairer.runID, table: diff.target, keyNames: diff.keyNames, on: store)
        let refused = Dictionary(outcome.failed.map { ($0.key, $0.reason) }, uniquingKeysWith: { a, _ in a })
        var repairedIDs: [Int64] = [], equalIDs: [Int64] = []
        for (row, id) in zip(rows, ids) {
            if applied.contains(row.key) {
                repairedIDs.append(id)
            } else if let reason = refused[row.key.joined(separator: ",")] {
                try ReconcileStore.resolve([id], as: .queued, policy: policy.policy.rawValue, reason: "automatic repair refused: \(reason)",
                                           repairRunID: repairer.runID, on: store)
                result.refused += 1
            } else {
                equalIDs.append(id)
            }
        }
        try ReconcileStore.resolve(repairedIDs, as: .autoRepaired, policy: policy.policy.rawValue,
                                   reason: "repaired automatically (\(policy.policy.rawValue))", repairRunID: repairer.runID, on: store)
        try ReconcileStore.resolve(equalIDs, as: .resolvedByStream, policy: policy.policy.rawValue,
                                   reason: "equal to the source when re-read at repair time", on: store)
        result.repaired = repairedIDs.count
        result.alreadyEqual = equalIDs.count
        if result.repaired > 0 {
            logger.notice("reconcile repaired rows automatically", metadata: [
                "table": "\(diff.target)", "rows": "\(result.repaired)", "repair_run": "\(repairer.runID)", "policy": "\(policy.policy.rawValue)",
            ])
        }
        return result
    }

    /// The keys `runID` logged as fixed in `cdcr.repair_log` for `table`.
    func appliedKeys(runID: String, table: TableName, keyNames: [String], on conn: PGConnection) throws -> Set<KeyTexts> {
        let rows = try conn.query("SELECT row_key::text FROM cdcr.repair_log WHERE run_id = $1 AND table_name = $2",
                                        [runID, table.description])
        var out = Set<KeyTexts>()
        for r in rows.rows {
            guard let text = r[0], let members = (try? JSONParser.parse(text))?.objectMembers else { continue }
            let byName = Dictionary(members.map { ($0.0, $0.1.stringValue ?? "") }, uniquingKeysWith: { a, _ in a })
            out.insert(keyNames.map { byName[$0] ?? "" })
        }
        return out
    }
}
