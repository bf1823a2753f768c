import CDCCore
@testable import CDCR
import Foundation
import Testing

@Suite("reconcile configuration")
struct ReconcileConfigTests {
    func load(_ json: String) throws -> Settings {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("cdcr-rec-\(UUID().uuidString).json").path
        try json.write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        return try SettingsLoader.load(file: path, environment: [:], overrides: SettingsOverrides())
    }

    @Test("the example config's jobs and policies load")
    func example() throws {
        let s = try SettingsLoader.load(file: Fixtures.projectRoot + "/config/cdcr.example.json", environment: [:], overrides: SettingsOverrides())
        let r = s.reconcile
        #expect(r.jobs.map(\.name) == ["quick", "nightly", "weekly-deep"])
        #expect(r.jobs[0].schedule == .every(seconds: 300) && r.jobs[0].kind == .quick && r.jobs[0].repair == .off)
        #expect(r.jobs[1].kind == .full && r.jobs[1].repair == .auto && r.jobs[1].budgetSeconds == 7_200)
        #expect(r.jobs[2].schedule.description == "0 3 * * sun" && r.jobs[2].kind == .deep)
        let orders = r.policy(for: TableName(parsing: "public.orders"))
        #expect(orders.policy == .newestWins && orders.column == "updated_at" && orders.maxAutoRepairRows == 500 && !orders.allowDelete)
        let other = r.policy(for: TableName(parsing: "public.unnamed"))
        #expect(other == TablePolicy() && other.maxAutoRepairRows == 1_000 && other.maxAutoRepairPercent == 1)
    }

    @Test("bad values stop naming the setting", arguments: [
        (#"{"jobs": [{"name": "a", "schedule": "every 5m", "kind": "quick"}, {"name": "b", "schedule": "61 * * * *", "kind": "full"}]}"#,
         "reconcile.jobs[1].schedule", "minute 61"),
        (#"{"jobs": [{"name": "a", "schedule": "* * * *", "kind": "quick"}]}"#, "reconcile.jobs[0].schedule", "5"),
        (#"{"jobs": [{"name": "a", "schedule": "@daily", "kind": "huge"}]}"#, "reconcile.jobs[0].kind", "quick, full, deep"),
        (#"{"jobs": [{"name": "a", "schedule": "@daily", "kind": "full", "repair": "yes"}]}"#, "reconcile.jobs[0].repair", "off, auto, review"),
        (#"{"jobs": [{"name": "a", "schedule": "@daily", "kind": "full", "budget": "soon"}]}"#, "reconcile.jobs[0].budget", "unit"),
        (#"{"jobs": [{"name": "a", "schedule": "@daily", "kind": "full"}, {"name": "a", "schedule": "@daily", "kind": "full"}]}"#,
         "reconcile.jobs[1].name", "duplicate"),
        (#"{"jobs": [{"schedule": "@daily", "kind": "full"}]}"#, "reconcile.jobs[0].name", "required"),
        (#"{"jobs": [{"name": "a b", "schedule": "@daily", "kind": "full"}]}"#, "reconcile.jobs[0].name", "letters"),
        (#"{"jobs": [{"name": "a", "schedule": "@daily", "kind": "full", "tabels": []}]}"#, "reconcile.jobs[0].tabels", "unknown"),
        (#"{"tables": {"public.t": {"policy": "newest-wins"}}}"#, "reconcile.tables.public.t.column", "newest-wins needs"),
        (#"{"tables": {"public.t": {"policy": "last-wins"}}}"#, "reconcile.tables.public.t.policy", "source-wins"),
        (#"{"tables": {"public.t": {"max_auto_repair_percent": 101}}}"#, "reconcile.tables.public.t.max_auto_repair_percent", "0 to 100"),
        (#"{"tables": {"public.t": {"max_auto_repair_rows": -1}}}"#, "reconcile.tables.public.t.max_auto_repair_rows", "≥ 0"),
        (#"{"tables": {"public.t": {"allow_delete": "yes"}}}"#, "reconcile.tables.public.t.allow_delete", "true or false"),
        (#"{"schedules": []}"#, "reconcile.schedules", "unknown"),
    ])
    func refused(_ section: String, _ setting: String, _ message: String) {
        #expect {
            _ = try load("{\"reconcile\": \(section)}")
        } throws: { error in
            guard let e = error as? ConfigError else { return false }
            return e.setting.hasPrefix(setting + " (in ") && e.message.contains(message)
        }
    }
}

@Suite("conflict policies and guard rails (decisions, no database)")
struct ConflictPolicyTests {
    func rows(_ kinds: [RowDifference]) -> [RowFinding] { kinds.enumerated().map { RowFinding(key: [String($0)], difference: $1) } }

    let mixed: [RowDifference] = [.missing, .different(columns: ["v"]), .extra, .different(columns: ["v"])]

    @Test("repair off leaves, review and manual queue, target-wins reports: none repairs")
    func modes() {
        var policy = TablePolicy()
        let off = ConflictPolicy.plan(rows(mixed), policy: policy, repair: .off, tableRows: 1_000, unlisted: 0) { _ in false }
        #expect(off.toRepair == 0 && off.decisions.allSatisfy { if case .leave = $0 { true } else { false } })
        let review = ConflictPolicy.plan(rows(mixed), policy: policy, repair: .review, tableRows: 1_000, unlisted: 0) { _ in false }
        #expect(review.decisions.allSatisfy { if case .queue = $0 { true } else { false } })
        policy.policy = .manual
        #expect(ConflictPolicy.plan(rows(mixed), policy: policy, repair: .auto, tableRows: 1_000, unlisted: 0) { _ in false }
            .decisions.allSatisfy { if case .queue = $0 { true } else { false } })
        policy.policy = .targetWins
        #expect(ConflictPolicy.plan(rows(mixed), policy: policy, repair: .auto, tableRows: 1_000, unlisted: 0) { _ in false }
            .decisions.allSatisfy { if case .leave = $0 { true } else { false } })
    }

    @Test("source-wins repairs but queues extra rows without allow_delete; newest-wins leaves newer target rows")
    func repairs() {
        var policy = TablePolicy()
        let plan = ConflictPolicy.plan(rows(mixed), policy: policy, repair: .auto, tableRows: 1_000, unlisted: 0) { _ in true }
        #expect(plan.decisions[0] == .repair && plan.decisions[1] == .repair && plan.decisions[3] == .repair && plan.massDrift == nil)
        #expect(plan.decisions[2] == .queue("extra row: deleting it needs allow_delete"))
        policy.allowDelete = true
        policy.policy = .newestWins
        policy.column = "updated_at"
        let newest = ConflictPolicy.plan(rows(mixed), policy: policy, repair: .auto, tableRows: 1_000, unlisted: 0) { $0 == 3 }
        #expect(newest.decisions[0] == .repair && newest.decisions[1] == .repair && newest.decisions[2] == .repair)
        #expect(newest.decisions[3] == .leave("newest-wins: the target row is newer (updated_at), left as it is"))
    }

    @Test("guard rails: above the row limit or the percentage nothing is repaired; unlisted rows count")
    func guardRails() {
        var policy = TablePolicy()
        policy.maxAutoRepairRows = 3
        policy.maxAutoRepairPercent = 10
        let three = rows([.missing, .missing, .missing])
        #expect(ConflictPolicy.plan(three, policy: policy, repair: .auto, tableRows: 100, unlisted: 0) { _ in false }.toRepair == 3)
        let over = ConflictPolicy.plan(three, policy: policy, repair: .auto, tableRows: 100, unlisted: 1) { _ in false }
        #expect(over.toRepair == 0 && over.massDrift?.contains("max_auto_repair_rows (3)") == true)
        #expect(over.decisions.allSatisfy { $0 == .queue(over.massDrift!) })
        // 3 of 20 rows is 15 %, above 10 %.
        let percent = ConflictPolicy.plan(three, policy: policy, repair: .auto, tableRows: 20, unlisted: 0) { _ in false }
        #expect(percent.toRepair == 0 && percent.massDrift?.contains("max_auto_repair_percent (10.0 % of 20 rows)") == true)
        // Rows that are queued anyway (extra without allow_delete) do not count towards the limit.
        let withExtra = ConflictPolicy.plan(rows([.missing, .missing, .missing, .extra]), policy: policy, repair: .auto, tableRows: 100, unlisted: 0) { _ in false }
        #expect(withExtra.toRepair == 3 && withExtra.massDrift == nil)
        // Defaults: 1,000 rows and 1 %.
        let defaults = TablePolicy()
        #expect(ConflictPolicy.plan(rows(Array(repeating: .missing, count: 10)), policy: defaults, repair: .auto, tableRows: 1_000, unlisted: 0) { _ in false }.toRepair == 10)
        #expect(ConflictPolicy.plan(rows(Array(repeating: .missing, count: 11)), policy: defaults, repair: .auto, tableRows: 1_000, unlisted: 0) { _ in false }.massDrift != nil)
        #expect(ConflictPolicy.plan(rows(Array(repeating: .missing, count: 1_001)), policy: defaults, repair: .auto, tableRows: 1_000_000, unlisted: 0) { _ in false }.massDrift?.contains("1000") == true)
    }
}
