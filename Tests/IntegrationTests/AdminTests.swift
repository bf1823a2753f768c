import CDCCore
import CDCKafka
import CDCPostgres
import CDCR
import Foundation
import Testing

func httpGet(port: Int, path: String) -> (status: Int, body: String)? { httpRequest(port: port, method: "GET", path: path) }

/// A minimal HTTP/1.1 client over a loopback socket: (status, body), or nil when nothing answers.
func httpRequest(port: Int, method: String, path: String, headers: [String] = [], body: String = "") -> (status: Int, body: String)? {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var tv = timeval(tv_sec: 10, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = in_port_t(UInt16(port).bigEndian)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    let ok = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
    guard ok == 0 else { return nil }
    let extra = (headers + (body.isEmpty ? [] : ["Content-Type: application/json", "Content-Length: \(body.utf8.count)"])).map { $0 + "\r\n" }.joined()
    let request = Array("\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\(extra)\r\n\(body)".utf8)
    _ = request.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    var data: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n <= 0 { break }
        data.append(contentsOf: buffer[0..<n])
    }
    let text = String(decoding: data, as: UTF8.self)
    guard let statusLine = text.split(separator: "\r\n").first, let code = Int(statusLine.split(separator: " ").dropFirst().first ?? "") else { return nil }
    let body = text.range(of: "\r\n\r\n").map { String(text[$0.upperBound...]) } ?? ""
    return (code, body)
}

@Suite("admin HTTP server", .serialized)
struct AdminTests {
    @Test("/healthz, /metrics counting applied events, /readyz following PostgreSQL, /lag")
    func endpoints() throws {
        let pg = try TestPostgres()  // its own cluster: this test stops it
        let kafka = try TestKafka()
        let target = try pg.createDatabase()
        try kafka.createTopic("adm")
        _ = try kafka.produce(fixture: "\(Fixtures.root)/native/sequence.jsonl", topic: "adm")
        let port = freePort()
        let applier = try CDCRProcess.start(["run", "--brokers", kafka.brokers, "--topic", "adm", "--group", "adm", "--target", target,
                                             "--admin-listen", "127.0.0.1:\(port)", "--kafka-property", "log_level=3"])
        defer { applier.signal(SIGKILL); applier.wait(timeout: .seconds(10)) }
        #expect(waitUntil(timeout: .seconds(30)) { ledgerCount(target) == 7 }, "\(applier.stderr.suffix(2000))")
        #expect(httpGet(port: port, path: "/healthz")?.status == 200)

        // Outcomes are counted once the batch's offsets are committed, just after its transaction.
        var metrics: (status: Int, body: String) = (0, "")
        func value(_ prefix: String) -> Double? {
            metrics.body.split(separator: "\n").first { $0.hasPrefix(prefix) }.flatMap { Double($0.split(separator: " ").last ?? "") }
        }
        #expect(waitUntil(timeout: .seconds(10)) {
            metrics = httpGet(port: port, path: "/metrics") ?? (0, "")
            return value(#"cdcr_events_total{topic="adm",table="public.orders",operation="update",outcome="stale"}"#) != nil
                && value(#"cdcr_events_total{topic="adm",table="public.orders",operation="insert",outcome="duplicate"}"#) == 2
        })
        #expect(metrics.status == 200)
        #expect(value(#"cdcr_events_total{topic="adm",table="public.orders",operation="insert",outcome="duplicate"}"#) == 2, "\(metrics.body.prefix(3000))")
        #expect(value(#"cdcr_events_total{topic="adm",table="public.orders",operation="update",outcome="stale"}"#) == 1)
        #expect(value(#"cdcr_build_info{version="#) == 1)
        #expect(metrics.body.contains("cdcr_batch_duration_seconds_bucket"))
        // Every consumed message's latency (Kafka timestamp → target commit) is observed once.
        let consumed = metrics.body.split(separator: "\n").filter { $0.hasPrefix("cdcr_events_total{") }
            .compactMap { Double($0.split(separator: " ").last ?? "") }.reduce(0, +)
        #expect(consumed > 0 && value("cdcr_apply_latency_seconds_count ") == consumed, "\(metrics.body.prefix(3000))")
        #expect(metrics.body.contains(#"cdcr_apply_latency_seconds_bucket{le="0.001"}"#), "buckets from 1 ms")
        #expect(metrics.body.contains("cdcr_source_latency_seconds_count"))
        #expect(metrics.body.contains("# TYPE cdcr_events_total counter"))
        let lint = try promtoolCheckMetrics(metrics.body)
        #expect(lint.status == 0, "promtool check metrics: \(lint.output)")

        #expect(waitUntil(timeout: .seconds(15)) { httpGet(port: port, path: "/readyz")?.status == 200 })
        pg.crash()
        #expect(waitUntil(timeout: .seconds(15)) { httpGet(port: port, path: "/readyz")?.status == 503 }, "not ready without the target")
        try pg.start()
        #expect(waitUntil(timeout: .seconds(15)) { httpGet(port: port, path: "/readyz")?.status == 200 }, "ready again")

        let lag = try #require(httpGet(port: port, path: "/lag"))
        #expect(lag.status == 200)
        let report = try JSONParser.parse(lag.body.trimmingCharacters(in: .whitespacesAndNewlines))
        #expect(report["group"] == .string("adm") && report["total_lag"]?.int64Value == 0, "\(lag.body)")
        let after = try #require(httpGet(port: port, path: "/metrics"))
        #expect(after.body.contains(#"cdcr_consumer_group_status{group="adm"} 0"#), "the lag sample feeds the status gauges")
        #expect(after.body.contains(#"cdcr_consumer_lag_messages{topic="adm",partition="0"} 0"#))
    }

    @Test("POST /replay needs the token, rejects bad bodies, and runs a job whose summary matches cdcr replay")
    func replayJob() throws {
        let pg = try TestPostgres.sharedCluster()
        let kafka = try TestKafka()
        let (source, target, src) = try pg.sourceAndTarget(capturing: ["public.orders", "public.order_items"])
        try sourceWorkload(src, statements: 300, seed: 21)
        let window = [try utcInstant(src, "-1 hour"), try utcInstant(src, "1 hour")]
        try kafka.createTopic("rj")
        let port = freePort()
        let applier = try CDCRProcess.start(["run", "--brokers", kafka.brokers, "--topic", "rj", "--group", "rj", "--source", source, "--target", target,
                                             "--no-gap-fill", "--admin-listen", "127.0.0.1:\(port)", "--kafka-property", "log_level=3"],
                                            env: ["CDCR_ADMIN_TOKEN": "s3cret-token"])
        defer { applier.signal(SIGKILL); applier.wait(timeout: .seconds(10)) }
        #expect(waitUntil(timeout: .seconds(20)) { httpGet(port: port, path: "/healthz")?.status == 200 })
        let body = "{\"from\":\"\(window[0])\",\"to\":\"\(window[1])\",\"tables\":[\"public.orders\"],\"dry_run\":true}"
        #expect(httpRequest(port: port, method: "POST", path: "/replay", body: body)?.status == 401)
        #expect(httpRequest(port: port, method: "POST", path: "/replay", headers: ["Authorization: Bearer wrong"], body: body)?.status == 401)
        let auth = ["Authorization: Bearer s3cret-token"]
        #expect(httpRequest(port: port, method: "POST", path: "/replay", headers: auth, body: "{not json")?.status == 400)
        // A browser on another site, even one that holds the token, is refused (docs: admin API).
        #expect(httpRequest(port: port, method: "POST", path: "/replay", headers: auth + ["Sec-Fetch-Site: cross-site"], body: body)?.status == 403)
        #expect(httpRequest(port: port, method: "POST", path: "/replay", headers: auth, body: "{\"from\":\"yesterday\",\"to\":\"now\"}")?.status == 400)
        let started = try #require(httpRequest(port: port, method: "POST", path: "/replay", headers: auth, body: body))
        #expect(started.status == 202, "\(started.body)")
        let id = try #require(try JSONParser.parse(started.body.trimmingCharacters(in: .whitespacesAndNewlines))["id"]?.stringValue)
        var job: JSONValue = .null
        #expect(waitUntil(timeout: .seconds(30)) {
            job = (try? JSONParser.parse(httpGet(port: port, path: "/replay/\(id)")?.body ?? "")) ?? .null
            return job["status"] == .string("done")
        }, "\(job.serialized)")
        let cli = try CDCRProcess.run(["replay", "--from", window[0], "--to", window[1], "--table", "public.orders", "--dry-run", "--json",
                                       "--source", source, "--target", target])
        let expected = try JSONParser.parse(cli.stdout.trimmingCharacters(in: .whitespacesAndNewlines))
        #expect(job["summary"]?["total"] == expected["total"], "\(job.serialized) vs \(expected.serialized)")
        #expect(job["summary"]?["tables"] == expected["tables"])
        #expect(httpGet(port: port, path: "/replay/nope")?.status == 404)
        #expect(ledgerCount(target) == 0, "a dry-run job applies nothing")
    }

    @Test("the status page loads in headless Chromium without console errors and shows the partitions (screenshot kept)")
    func statusPage() throws {
        guard let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            Issue.record("chromium is not installed (scripts/test.sh installs Debian's chromium)")
            return
        }
        let pg = try TestPostgres.sharedCluster()
        let kafka = try TestKafka()
        let target = try pg.createDatabase()
        try kafka.createTopic("page", partitions: 2)
        _ = try kafka.produce(fixture: "\(Fixtures.root)/native/sequence.jsonl", topic: "page")
        let port = freePort()
        let applier = try CDCRProcess.start(["run", "--brokers", kafka.brokers, "--topic", "page", "--group", "page", "--target", target,
                                             "--admin-listen", "127.0.0.1:\(port)", "--kafka-property", "log_level=3"])
        defer { applier.signal(SIGKILL); applier.wait(timeout: .seconds(10)) }
        #expect(waitUntil(timeout: .seconds(30)) { ledgerCount(target) == 7 })
        // Two samples so the lag chart has a line.
        _ = httpGet(port: port, path: "/")
        let html = try #require(httpGet(port: port, path: "/"))
        #expect(html.status == 200 && html.body.contains("<svg id=lagchart") && html.body.contains("<polyline"))
        #expect(html.body.contains("<p id=latency>latency (Kafka message time → target commit") && html.body.contains(" p99 <b>"),
                "the status page shows the apply latency: \(html.body.prefix(2000))")
        #expect(!html.body.contains("<script") && !html.body.contains("http://") && !html.body.contains("https://"), "no external assets, no scripts")

        let shot = Fixtures.projectRoot + "/.build/status-page.png"
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("cdcr-chromium-\(UUID().uuidString)").path
        let args = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--user-data-dir=\(dir)", "--enable-logging=stderr", "--v=0",
                    "--window-size=1100,900"]
        let dom = shell(args + ["--dump-dom", "http://127.0.0.1:\(port)/"])
        #expect(dom.output.contains("id=\"partitions\"") || dom.output.contains("id=partitions"), "\(dom.output.suffix(2000))")
        #expect(dom.output.contains("<td>page</td><td>0</td>") && dom.output.contains("<td>page</td><td>1</td>"))
        #expect(!dom.output.contains("Uncaught") && !dom.output.contains("CONSOLE(") , "console errors: \(dom.output.suffix(2000))")
        let png = shell(args + ["--screenshot=\(shot)", "http://127.0.0.1:\(port)/"])
        #expect(png.status == 0 && FileManager.default.fileExists(atPath: shot), "\(png.output.suffix(1000))")
        let size = (try? FileManager.default.attributesOfItem(atPath: shot)[.size] as? Int) ?? 0
        #expect(size > 10_000, "a rendered page, not a blank image")
    }

    @Test("listening beyond loopback without a token is refused at start-up")
    func nonLoopbackNeedsToken() throws {
        let r = try CDCRProcess.run(["run", "--target", "postgresql://x@127.0.0.1:1/x", "--admin-listen", "0.0.0.0:\(freePort())"])
        #expect(r.status != 0)
        #expect(r.stderr.contains("admin.token") && r.stderr.contains("CDCR_ADMIN_TOKEN"))
    }
}
