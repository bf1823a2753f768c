import CDCCore
import CDCKafka
import CDCPostgres
import Foundation
import Testing

/// Topics written by a transactional producer (Debezium's exactly-once source support, Kafka
/// Streams) end every transaction with a commit marker: an offset no consumer ever receives.
@Suite("transactional topics")
struct TransactionalTopicTests {
    @Test("commit markers are committed past: --stop-when-caught-up exits, lag reaches 0")
    func markersCommittedPast() throws {
        let pg = try TestPostgres.sharedCluster()
        let kafka = try TestKafka()
        let target = try pg.createDatabase()
        try kafka.createTopic("txm", partitions: 2)
        let w = Workload(changes: 60, keys: 20, seed: 7)
        // Two "transactions" per partition, each closed by a marker; the log ends with one.
        for half in [w.changes[..<30], w.changes[30...]] {
            try kafka.send(half.map { w.message($0, topic: "txm", partitions: 2) })
            for p: Int32 in [0, 1] { try TransactionMarker.appendCommit(bootstrap: kafka.brokers, topic: "txm", partition: p) }
        }
        let run = try CDCRProcess.run(runArgs(brokers: kafka.brokers, topic: "txm", group: "txm", target: target), timeout: .seconds(60))
        #expect(run.status == 0, "the run must see it is at the end: \(run.stderr.suffix(1500))")
        let conn = try PGConnection.connect(target)
        #expect(try Expect.differences(conn, table: "public.orders", expected: w.expectedRows) == 0)
        let offsets = try kafka.offsets(group: "txm", topic: "txm", partitions: 2)
        #expect(offsets.committed == offsets.end, "committed past the last marker")
        #expect(!run.stderr.contains("deleted messages"), "markers are not messages lost to retention")

        let lag = try CDCRProcess.run(["lag", "--json", "--brokers", kafka.brokers, "--group", "txm", "--topic", "txm", "--target", target,
                                       "--kafka-property", "log_level=3"])
        let report = try JSONParser.parse(lag.stdout.trimmingCharacters(in: .whitespacesAndNewlines))
        #expect(report["total_lag"]?.int64Value == 0, "\(lag.stdout)")
    }
}
