import CDCCore

/// What a run does with one differing row.
enum RowDecision: Equatable, Sendable {
    /// Repair it now (the target is made equal to the source).
    case repair
    /// Put it in the review queue, for this reason.
    case queue(String)
    /// Leave it `open` (reported), for this reason.
    case leave(String)
}

/// The decisions for one table's differing rows under its policy, the job's repair mode and the
/// guard rails; `massDrift` says why nothing was repaired when the rows to repair exceed the limits.
struct PolicyPlan: Sendable {
    var decisions: [RowDecision]
    var massDrift: String?

    var toRepair: Int { decisions.count { $0 == .repair } }
}

enum ConflictPolicy {
    /// Decides per row, in order:
    /// - `repair: off` leaves every row open, `repair: review` queues every row;
    /// - `manual` queues every row, `target-wins` leaves every row open (reported only);
    /// - `source-wins` and `newest-wins` repair, except: an extra row without `allow_delete` is
    ///   queued; under `newest-wins` a different row whose target `column` is newer is left open;
    /// - guard rails: when the rows to repair (plus rows verify only counted) exceed
    ///   `max_auto_repair_rows` or `max_auto_repair_percent` of the table's rows, none is
    ///   repaired and all of them are queued: mass drift is a bug to look at.
    /// `targetNewer(i)` is asked only for `newest-wins` different rows.
    static func plan(_ rows: [RowFinding], policy: TablePolicy, repair: JobRepair, tableRows: Int64, unlisted: Int,
                     targetNewer: (Int) -> Bool) -> PolicyPlan {
        switch repair {
        case .off: return PolicyPlan(decisions: rows.map { _ in .leave("the job's repair is off") })
        case .review: return PolicyPlan(decisions: rows.map { _ in .queue("the job's repair is review") })
        case .auto: break
        }
        switch policy.policy {
        case .manual: return PolicyPlan(decisions: rows.map { _ in .queue("manual: every difference is reviewed") })
        case .targetWins: return PolicyPlan(decisions: rows.map { _ in .leave("target-wins: the target is kept, reported only") })
        case .sourceWins, .newestWins: break
        }
        var decisions: [RowDecision] = rows.enumerated().map { i, row in
            if row.kind == .extra && !policy.allowDelete { return .queue("extra row: deleting it needs allow_delete") }
            if policy.policy == .newestWins, row.kind == .different, targetNewer(i) {
                return .leave("newest-wins: the target row is newer (\(policy.column ?? "")), left as it is")
            }
            return .repair
        }
        let wanted = decisions.count { $0 == .repair } + unlisted
        let percentLimit = Double(tableRows) * policy.maxAutoRepairPercent / 100
        var reason: String?
        if wanted > policy.maxAutoRepairRows {
            reason = "mass drift: \(wanted) rows to repair exceed max_auto_repair_rows (\(policy.maxAutoRepairRows))"
        } else if Double(wanted) > percentLimit {
            reason = "mass drift: \(wanted) rows to repair exceed max_auto_repair_percent (\(policy.maxAutoRepairPercent) % of \(tableRows) rows)"
        }
        if let reason {
            decisions = decisions.map { $0 == .repair ? .queue(reason) : $0 }
        }
        return PolicyPlan(decisions: decisions, massDrift: reason)
    }
}
