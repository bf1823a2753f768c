import CDCCore
import CDCPostgres
import CDCR
import Foundation
import Testing

/// `GET /backfill/{id}` once the job's status is `status` (an expectation fails when it never is).
private func jobStatus(port: Int, id: String, awaiting status: String, timeout: Duration, sourceLocation: SourceLocation = #_sourceLocation) -> JSONValue {
    var job: JSONValue = .null
    let reached = waitUntil(timeout: timeout) {
        job = (try? JSONParser.parse(httpGet(port: port, path: "/backfill/\(id)")?.body ?? "")) ?? .null
        return job["status"] == .string(status)
    }
    #expect(reached, "\(job.serialized)", sourceLocation: sourceLocation)
    return job
}

@Suite("backfill as an admin job", .serialized)
struct BackfillAdminTests {
    @Test("POST /backfill needs the token, rejects bad bodies, runs the job; GET /backfill/{id} and the metrics show it")
    func backfillJob() throws {
        let pg = try TestPostgres.sharedCluster()
        let kafka = try TestKafka()
        let (source, target, src, tgt) = try backfillDatabases(pg)
        try populateOrders(src, rows: 1_500)
        try kafka.createTopic("bj")
        let port = freePort()
        let applier = try CDCRProcess.start(["run", "--brokers", kafka.brokers, "--topic", "bj", "--group", "bj", "--source", source, "--target", target,
                                             "--no-gap-fill", "--admin-listen", "127.0.0.1:\(port)", "--kafka-property", "log_level=3"] + kafka.clientFlags,
                                            env: ["CDCR_ADMIN_TOKEN": "s3cret-token"])
        defer { applier.signal(SIGKILL); applier.wait(timeout: .seconds(10)) }
        #expect(waitUntil(timeout: .seconds(20)) { httpGet(port: port, path: "/healthz")?.status == 200 })
        let body = #"{"tables":["public.orders"],"chunk_rows":200}"#
        let auth = ["Authorization: Bearer s3cret-token"]
        #expect(httpRequest(port: port, method: "POST", path: "/backfill", body: body)?.status == 401)
        #expect(httpRequest(port: port, method: "POST", path: "/backfill", headers: ["Authorization: Bearer wrong"], body: body)?.status == 401)
        #expect(httpRequest(port: port, method: "POST", path: "/backfill", headers: auth, body: "{not json")?.status == 400)
        #expect(httpRequest(port: port, method: "POST", path: "/backfill", headers: auth + ["Sec-Fetch-Site: cross-site"], body: body)?.status == 403)
        let badChunk = httpRequest(port: port, method: "POST", path: "/backfill", headers: auth, body: #"{"tables":["public.orders"],"chunk_rows":"many"}"#)
        #expect(badChunk?.status == 400 && (badChunk?.body.contains("chunk_rows") ?? false), "\(String(describing: badChunk))")
        #expect(httpRequest(port: port, method: "POST", path: "/backfill", headers: auth, body: #"{"tables":[]}"#)?.status == 400)
        // writers and outage_timeout: bounded as --writers and --outage-timeout are, named when wrong.
        for (bad, field) in [(#""writers":0"#, "writers"), (#""writers":9"#, "writers"), (#""writers":"two""#, "writers"),
                             (#""outage_timeout":-1"#, "outage_timeout"), (#""outage_timeout":"soon""#, "outage_timeout"),
                             (#""outage_timeout":1e300"#, "outage_timeout")] {
            let refused = httpRequest(port: port, method: "POST", path: "/backfill", headers: auth, body: #"{"tables":["public.orders"],"# + bad + "}")
            #expect(refused?.status == 400 && (refused?.body.contains(field) ?? false), "\(bad): \(String(describing: refused))")
        }

        // Both take effect: three writer sessions on the target; with outage_timeout 0 a lost
        // connection fails the job at once instead of being waited out.
        try src.execute("INSERT INTO public.order_items SELECT g / 4, g % 4, 'SKU' || g, g % 9, g / 10.0 FROM generate_series(1, 3000) g")
        let limited = try #require(httpRequest(port: port, method: "POST", path: "/backfill", headers: auth,
                                               body: #"{"tables":["public.order_items"],"chunk_rows":100,"max_rows_per_second":300,"writers":3,"outage_timeout":0}"#))
        #expect(limited.status == 202, "\(limited.body)")
        let limitedID = try #require(try JSONParser.parse(limited.body.trimmingCharacters(in: .whitespacesAndNewlines))["id"]?.stringValue)
        // The writers are the target sessions named cdcr-backfill (setup and checks have names of their own).
        let sessions = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'cdcr-backfill'"
        #expect(waitUntil(timeout: .seconds(20)) { (try? Expect.count(tgt, sessions)) == 3 }, "writer sessions: \(String(describing: try? Expect.count(tgt, sessions)))")
        try tgt.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND application_name LIKE 'cdcr-backfill%'")
        let cut = jobStatus(port: port, id: limitedID, awaiting: "failed", timeout: .seconds(30))
        #expect(cut["error"]?.stringValue?.contains("more than 0 s") == true, "\(cut.serialized)")

        // A job on a table the target lacks fails with the reason, writing nothing.
        let missing = try #require(httpRequest(port: port, method: "POST", path: "/backfill", headers: auth, body: #"{"tables":["public.nope"]}"#))
        #expect(missing.status == 202)
        let missingID = try #require(try JSONParser.parse(missing.body.trimmingCharacters(in: .whitespacesAndNewlines))["id"]?.stringValue)
        let failed = jobStatus(port: port, id: missingID, awaiting: "failed", timeout: .seconds(30))
        #expect(failed["error"]?.stringValue?.contains("public.nope does not exist in the source") == true, "\(failed.serialized)")

        let started = try #require(httpRequest(port: port, method: "POST", path: "/backfill", headers: auth, body: body))
        #expect(started.status == 202, "\(started.body)")
        let id = try #require(try JSONParser.parse(started.body.trimmingCharacters(in: .whitespacesAndNewlines))["id"]?.stringValue)
        let job = jobStatus(port: port, id: id, awaiting: "done", timeout: .seconds(60))
        #expect(job["exit_code"]?.int64Value == 0)
        #expect(job["progress"]?["public.orders"]?["done"]?.int64Value == 1_500)
        guard case let .array(tables)? = job["summary"]?["tables"] else { Issue.record("no summary: \(job.serialized)"); return }
        #expect(tables.first?["total"]?["inserted"]?.int64Value == 1_500 && tables.first?["total"]?["chunks"]?.int64Value == 8)
        #expect(try sameRows(src, tgt, ["public.orders"]) == 0)
        #expect(httpGet(port: port, path: "/backfill/nope")?.status == 404)

        let metrics = httpGet(port: port, path: "/metrics")?.body ?? ""
        #expect(metrics.contains(#"cdcr_backfill_rows_total{table="public.orders"} 1500"#), "\(metrics.split(separator: "\n").filter { $0.contains("backfill") })")
        #expect(metrics.contains(#"cdcr_backfill_progress_ratio{table="public.orders"} 1"#))
        #expect(metrics.contains("# HELP cdcr_backfill_rows_total"))
    }
}
