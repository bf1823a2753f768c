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
