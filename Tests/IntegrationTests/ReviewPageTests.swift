import CDCCore
import CDCPostgres
import CDCR
import Foundation
import Testing

/// A PNG of at least `bytes` bytes (a rendered page, not a blank image).
func isPNG(_ path: String, atLeast bytes: Int) -> Bool {
    guard let data = FileManager.default.contents(atPath: path), data.count >= bytes else { return false }
    return data.prefix(8) == Data([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A])
}

@Suite("review API and page, status page reconciliation (headless Chromium)", .serialized)
struct ReviewPageTests {
    @Test("the review API needs the token and refuses bad or cross-site requests; the page's buttons approve, reject and apply (screenshots)")
    func reviewPage() throws {
        guard let binary = Chromium.binary else {
            Issue.record("chromium is not installed (scripts/test.sh installs Debian's chromium)")
            return
        }
        let pg = try TestPostgres.sharedCluster()
        let kafka = try TestKafka()
        let f = try ReviewFixture(pg)
        let id = { (key: String) in String(f.ids[key]!) }
        // Yesterday's finding too, so the chart has a line over two days.
        try f.tgt.execute("UPDATE cdcr.discrepancies SET first_seen_at = now() - interval '1 day' WHERE key_text = '11'")
        try kafka.createTopic("rv")
        let port = freePort()
        let token = "rev-s3cret"
        let applier = try CDCRProcess.start(["run", "--brokers", kafka.brokers, "--topic", "rv", "--group", "rv", "--no-gap-fill",
                                             "--admin-listen", "127.0.0.1:\(port)", "--kafka-property", "log_level=3"] + f.common,
                                            env: ["CDCR_ADMIN_TOKEN": token])
        defer { applier.signal(SIGKILL); applier.wait(timeout: .seconds(10)) }
        #expect(waitUntil(timeout: .seconds(30)) { httpGet(port: port, path: "/healthz")?.status == 200 }, "\(applier.stderr.suffix(2000))")

        // The API: token on reads too (items carry row values), JSON only, never cross-site.
        let auth = ["Authorization: Bearer \(token)"]
        #expect(httpGet(port: port, path: "/review")?.status == 401)
        let list = try #require(httpRequest(port: port, method: "GET", path: "/review?table=public.orders&status=queued", headers: auth))
        #expect(list.status == 200, "\(list.body)")
        guard case let .array(queued)? = try json(list.body)["items"] else { Issue.record("\(list.body)"); return }
        #expect(Set(queued.compactMap { $0["key_text"]?.stringValue }) == ["3", "5", "7"])
        // The daemon's review-queue gauge follows the table on each review request it answers.
        func openItems() -> Double? {
            httpGet(port: port, path: "/metrics")?.body.split(separator: "\n").first { $0.hasPrefix("cdcr_review_open_items ") }
                .flatMap { Double($0.dropFirst("cdcr_review_open_items ".count)) }
        }
        #expect(openItems() == 3)
        #expect(httpRequest(port: port, method: "GET", path: "/review?status=maybe", headers: auth)?.status == 400)
        #expect(httpRequest(port: port, method: "GET", path: "/review/424242", headers: auth)?.status == 404)
        let detail = try #require(httpRequest(port: port, method: "GET", path: "/review/\(id("9"))", headers: auth))
        #expect(try json(detail.body)["currently"] == .string("different"), "\(detail.body)")
        #expect(httpRequest(port: port, method: "POST", path: "/review/\(id("9"))/approve", body: "{}")?.status == 401)
        #expect(httpRequest(port: port, method: "POST", path: "/review/\(id("9"))/approve", headers: auth + ["Content-Type: text/plain"])?.status == 415)
        #expect(httpRequest(port: port, method: "POST", path: "/review/\(id("9"))/approve", headers: auth + ["Sec-Fetch-Site: cross-site"], body: "{}")?.status == 403)
        #expect(httpRequest(port: port, method: "POST", path: "/review/\(id("9"))/reject", headers: auth, body: "{\"by\":\"api\"}")?.status == 400,
                "a rejection needs a reason")
        let rejected = try #require(httpRequest(port: port, method: "POST", path: "/review/\(id("11"))/reject", headers: auth,
                                                body: "{\"by\":\"api\",\"reason\":\"amount fixed upstream\"}"))
        #expect(try rejected.status == 200 && json(rejected.body)["status"] == .string("rejected"), "\(rejected.body)")
        #expect(httpRequest(port: port, method: "POST", path: "/review/\(id("11"))/approve", headers: auth, body: "{}")?.status == 409,
                "a rejected item cannot be approved")
        #expect(try f.item("11").decidedBy == "api" && f.item("11").reason == "amount fixed upstream")

        // The status page: queue, runs, chart and table health; still no script.
        let status = try #require(httpGet(port: port, path: "/"))
        #expect(status.body.contains("<svg id=driftchart") && status.body.contains("<polyline class=series"), "\(status.body.suffix(3000))")
        #expect(status.body.contains("id=reconcile-runs") && status.body.contains(f.runID) && status.body.contains("id=table-health"))
        #expect(status.body.contains("<p id=review-queue>review queue: <b>3</b> queued, <b>1</b> open"), "\(status.body.suffix(3000))")
        #expect(!status.body.contains("<script"))

        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("cdcr-review-ui-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let browser = try Chromium(binary: binary, profile: dir + "/profile")
        try browser.open("http://127.0.0.1:\(port)/")
        #expect(try browser.evaluate("document.querySelectorAll('#driftchart polyline').length").int64Value == 1)
        try browser.screenshot(to: dir + "/status-page.png")
        #expect(isPNG(dir + "/status-page.png", atLeast: 20_000), "\(dir)/status-page.png")

        // The review page: nothing without the token; then typed, it lists, shows, and its buttons decide.
        try browser.open("http://127.0.0.1:\(port)/ui/review")
        #expect(browser.waitUntil { try browser.evaluate("document.getElementById('msg').textContent").stringValue?.contains("bearer token") == true })
        try browser.type("#token", token)
        try browser.type("#by", "dana")
        try browser.click("#save-token")
        let rows = "document.querySelectorAll('#items tr').length"
        #expect(browser.waitUntil { try browser.evaluate(rows).int64Value == 4 }, "open and queued: 3, 5, 7, 9")
        // The filter form: only missing rows, then any kind again.
        _ = try browser.evaluate("document.getElementById('f-kind').value = 'missing'")
        try browser.click("#filter")
        #expect(browser.waitUntil { try browser.evaluate(rows).int64Value == 1 })
        #expect(try browser.evaluate("document.querySelector('#items tr td:nth-child(4)').textContent") == .string("5"))
        _ = try browser.evaluate("document.getElementById('f-kind').value = ''")
        try browser.click("#filter")
        #expect(browser.waitUntil { try browser.evaluate(rows).int64Value == 4 })
        try browser.click("#show-\(id("3"))")
        #expect(browser.waitUntil { try browser.evaluate("document.querySelectorAll('#diff tr').length").int64Value ?? 0 > 2 })
        let marked = try browser.evaluate("Array.from(document.querySelectorAll('#diff tr.differs td:first-child')).map(function (e) { return e.textContent; })")
        #expect(marked == .array([.string("status")]), "\(marked.serialized)")
        try browser.screenshot(to: dir + "/review-page.png")
        #expect(isPNG(dir + "/review-page.png", atLeast: 20_000), "\(dir)/review-page.png")

        try browser.click("#approve")
        #expect(browser.waitUntil { try browser.evaluate("document.getElementById('msg').textContent").stringValue?.contains("is now approved") == true })
        #expect(try f.item("3").resolution == .approved && f.item("3").decidedBy == "dana")
        #expect(openItems() == 2, "approving took it off the queue")
        // The page reloads the list and the item after a decision; wait for both before the next click.
        #expect(browser.waitUntil {
            try browser.evaluate(rows).int64Value == 3
                && browser.evaluate("document.getElementById('d-state').textContent").stringValue?.hasPrefix("status approved by dana") == true
                && browser.evaluate("document.getElementById('actions').hidden") == .bool(true)
        })

        try browser.click("#show-\(id("9"))")
        #expect(browser.waitUntil { try browser.evaluate("document.getElementById('detail').dataset.id") == .string(id("9")) })
        try browser.click("#reject")
        #expect(browser.waitUntil { try browser.evaluate("document.getElementById('msg').textContent").stringValue?.contains("needs a reason") == true })
        #expect(try f.item("9").resolution == .open, "no reason, no rejection")
        try browser.type("#reason", "status lost is correct")
        try browser.click("#reject")
        #expect(browser.waitUntil { try browser.evaluate("document.getElementById('msg').textContent").stringValue?.contains("is now rejected") == true })
        #expect(try f.item("9").resolution == .rejected && f.item("9").reason == "status lost is correct" && f.item("9").decidedBy == "dana")

        try browser.click("#apply")
        #expect(browser.waitUntil { try browser.evaluate("document.getElementById('msg').textContent").stringValue?.contains("1 applied") == true },
                "\((try? browser.evaluate("document.getElementById('msg').textContent"))?.serialized ?? "")")
        #expect(try f.status(3) == "paid" && f.status(9) == "lost")
        let three = try f.item("3")
        #expect(three.appliedAt != nil)
        #expect(try f.tgt.query("SELECT count(*) FROM cdcr.repair_log WHERE run_id = $1 AND row_key ->> 'id' = '3'", [three.repairRunID]).scalar == "1")
        try browser.screenshot(to: dir + "/review-page-after.png")
        // The expected failures: the first listing, before the token was typed (401), and the
        // browser's own favicon request.
        let problems = browser.problems.filter { !$0.contains("401") && !$0.hasSuffix("/favicon.ico") }
        #expect(problems.isEmpty, "console errors, exceptions or CSP refusals: \(problems)")
    }
}
