import Foundation
import Testing

/// The deployment files cannot be run here (no Docker engine), so they are checked statically.
@Suite("deployment files")
struct DeploymentTests {
    @Test("compose, Dockerfile, Prometheus config, dashboard and alerts are consistent")
    func staticChecks() {
        let r = shell(["python3", Fixtures.projectRoot + "/scripts/check-deploy.py"])
        #expect(r.status == 0, "\(r.output)")
        #expect(r.output.contains("deployment files OK"))
    }

    @Test("the alert rules pass promtool check rules")
    func alertRules() {
        let r = shell(["promtool", "check", "rules", Fixtures.projectRoot + "/config/alerts.yml"])
        #expect(r.status == 0, "\(r.output)")
        #expect(r.output.contains("SUCCESS: 13 rules found"))
    }

    @Test("the stall alert fires on a batch waiting past two minutes, and not on a flowing stream (promtool test rules)")
    func stallAlert() {
        let r = shell(["promtool", "test", "rules", Fixtures.projectRoot + "/config/alerts.test.yml"])
        #expect(r.status == 0, "\(r.output)")
        #expect(r.output.contains("SUCCESS"))
    }
}

/// `promtool check metrics` over an exposition text; returns its status and output.
func promtoolCheckMetrics(_ text: String) throws -> (status: Int32, output: String) {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("cdcr-metrics-\(UUID().uuidString).txt").path
    try text.write(toFile: path, atomically: true, encoding: .utf8)
    defer { try? FileManager.default.removeItem(atPath: path) }
    return shell(["sh", "-c", "promtool check metrics < '\(path)'"])
}
