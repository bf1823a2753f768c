import CDCCore
import CDCKafka
import CDCPostgres
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Issue #14: on a stream that is not saturated, a change reaches the target in milliseconds,
/// not after a batch timer.
@Suite("latency", .serialized)
struct LatencyTests {
    @Test("single events on an idle applier are in the target within 150 ms (median), whatever the batch wait")
    func idleApplierAppliesAtOnce() throws {
        let pg = try TestPostgres.sharedCluster()
        let kafka = try TestKafka()
        let target = try pg.createDatabase()
        let conn = try PGConnection.connect(target)
        defer { conn.close() }
        try kafka.createTopic("lat")
        func order(_ id: Int) -> OutgoingMessage {
            let json = #"{"change_id": "lat-\#(id)", "table": "public.orders", "operation": "INSERT", "key": {"id": \#(id)}, "data": {"id": \#(id), "status": "new"}}"#
            return OutgoingMessage(topic: "lat", partition: 0, key: nil, value: Array(json.utf8))
        }
        // The daemon, with a batch wait of 1 s: the old design held a lone change until the wait was
        // up (on average half of it), natural batching sends it at once. librdkafka's mock broker
        // answers an empty fetch only after fetch.wait.max.ms (100 ms in cdcr), even when a message
        // arrives meanwhile (rdkafka_mock_handlers.c says so); a real broker answers at once. 10 ms
        // keeps that artifact out of what is measured here.
        let child = try CDCRProcess.start(["run", "--brokers", kafka.brokers, "--topic", "lat", "--group", "lat", "--target", target,
                                           "--no-admin", "--batch-max-wait-ms", "1000",
                                           "--kafka-property", "log_level=3", "--kafka-property", "fetch.wait.max.ms=10"])
        defer {
            child.signal(SIGTERM)
            child.wait(timeout: .seconds(30))
        }
        // Joined and applying: a first event arrives (the group join takes seconds on the mock broker).
        try kafka.send([order(1)])
        try #require(try waitUntil(timeout: .seconds(60)) { try Expect.count(conn, "SELECT count(*) FROM public.orders WHERE id = 1") == 1 },
                     "the applier never applied the first event: \((try? String(contentsOfFile: child.errPath, encoding: .utf8))?.suffix(2000) ?? "")")

        // Then single events on the idle applier, each after a pause longer than the batch wait.
        // Ten of them: the old design waited out what was left of its window (uniform over 0–1 s),
        // so a median under 150 ms, or all ten under 500 ms (0.1 %), would not happen by chance.
        var latencies: [Duration] = []
        for id in 2...11 {
            usleep(310_000)
            let sent = ContinuousClock.now
            try kafka.send([order(id)])
            var visible = false
            while ContinuousClock.now - sent < .seconds(5) {
                if try conn.query("SELECT 1 FROM public.orders WHERE id = $1", [String(id)]).rows.count == 1 {
                    visible = true
                    break
                }
                usleep(2_000)
            }
            #expect(visible, "event \(id) not applied within 5 s")
            latencies.append(ContinuousClock.now - sent)
        }
        let ms = latencies.map { Int(($0.seconds * 1_000).rounded()) }
        // Produced (acknowledged by the broker) → committed in the target, polled every 2 ms.
        // Measured on the 2-core development machine: 11–24 ms each with other builds running
        // (load 4–6); 29–198 ms, median 60, at load 9 (a release build and two test runs beside
        // it). The median is what a loaded machine cannot push far; single events it can.
        #expect(ms.sorted()[ms.count / 2] < 150, "median send → committed in the target: \(ms) ms")
        #expect(ms.allSatisfy { $0 < 500 }, "each send → committed in the target under half the batch wait: \(ms) ms")
    }
}
