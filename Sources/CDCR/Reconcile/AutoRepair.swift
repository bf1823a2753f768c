import CDCCore
import CDCPostgres
import Logging

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

    func apply(_ rows: [RowFinding], ids: [Int64], diff: TableDiff, policy: TablePolicy, store: PGConnection) throws -> AutoRepairResult {
        var result = AutoRepairResult()
        guard !rows.isEmpty else { return result }
        let repairer = Repairer(run: run, settings: settings, logger: logger, allowDelete: policy.allowDelete)
        result.repairRunID = repairer.runID
        let outcome = try repairer.execute(VerifyFindings.repairDiff(like: diff, rows: rows))
        let applied = try appliedKeys(runID: repairer.runID, table: diff.target, keyNames: diff.keyNames)
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
    func appliedKeys(runID: String, table: TableName, keyNames: [String]) throws -> Set<KeyTexts> {
        let rows = try run.target.query("SELECT row_key::text FROM cdcr.repair_log WHERE run_id = $1 AND table_name = $2",
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
