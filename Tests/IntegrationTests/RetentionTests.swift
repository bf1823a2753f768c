import CDCCore
import CDCKafka
import CDCPostgres
@testable import CDCR
import Foundation
import Testing

@Suite("messages Kafka deleted before the applier read them")
struct RetentionTests {
    /// A native INSERT of order `id` (change ID and version `id`).
    static func insert(_ id: Int, status: String, topic: String) -> OutgoingMessage {
        let json = #"{"change_id": "\#(id)", "table": "public.orders", "operation": "INSERT", "key": {"id": \#(id)}, "data": {"id": \#(id), "status": "\#(status)"}, "version": \#(id)}"#
        return OutgoingMessage(topic: topic, partition: 0, key: nil, value: Array(json.utf8))
    }

    @Test("only skipped offsets below the log start count as lost; compaction and transaction markers do not")
    func watchRules() {
        var watch = RetentionWatch()
        let tp = TopicPartition(topic: "t", partition: 0)
        #expect(watch.read(tp, offset: 7) == nil, "no expectation yet: a new group starts anywhere")
        #expect(watch.read(tp, offset: 8) == nil)
        #expect(watch.read(tp, offset: 10) == 9..<10, "one offset skipped (a transaction marker, say)")
        watch.expect(tp, at: 20)
        #expect(watch.read(tp, offset: 35) == 20..<35)
        #expect(RetentionWatch.lost(20..<35, logStart: 15) == nil, "still in the log: compacted away, not lost")
        #expect(RetentionWatch.lost(20..<35, logStart: 30) == 20..<30, "the part below the log start is lost")
        #expect(RetentionWatch.lost(20..<35, logStart: 40) == 20..<35)
        watch.expect(tp, at: -1001)
        #expect(watch.read(tp, offset: 99) == nil, "no committed offset: nothing to compare with")
        watch.forget(tp)
        #expect(watch.read(tp, offset: 5) == nil)
    }

    @Test("a resume position no longer in the log is reported with the lost offsets, and applying goes on")
    func lostToRetention() throws {
        let pg = try TestPostgres.sharedCluster()
        let kafka = try TestKafka()
        let target = try pg.createDatabase()
        try kafka.createTopic("ret")
        func event(_ id: Int, status: String = "new") -> OutgoingMessage { Self.insert(id, status: status, topic: "ret") }
        // The mock broker makes a group that a member left wait out the session timeout before the
        // next member joins: keep it short, as each run below rejoins.
        let args = runArgs(brokers: kafka.brokers, topic: "ret", group: "ret", target: target, extra: [
            "--kafka-property", "session.timeout.ms=6000", "--kafka-property", "heartbeat.interval.ms=500",
        ])

        // Offsets 0…4 applied and committed.
        try kafka.send((1...5).map { event($0) })
        let first = try CDCRProcess.run(args)
        try #require(first.status == 0, "\(first.stderr.suffix(2000))")

        // Offsets 5…7 arrive while the applier is down, then enough large messages (one send, one
        // message set each) that the mock broker, which keeps 5 MB per partition, drops the start of
        // the log: the committed position 5 is gone.
        try kafka.send((6...8).map { event($0) })
        let large = String(repeating: "x", count: 600_000)
        for id in 100..<112 { try kafka.send([event(id, status: large)]) }
        let tp = TopicPartition(topic: "ret", partition: 0)
        let (low, high) = try kafka.producer.watermarks(tp)
        try #require(low > 8 && high == 20, "the broker kept offsets \(low)..<\(high)")

        let second = try CDCRProcess.run(args)
        try #require(second.status == 0, "\(second.stderr.suffix(2000))")
        // Reported: in the log, in the run's summary (and as cdcr_kafka_lost_messages_total).
        #expect(second.stderr.contains("Kafka deleted messages before cdcr read them"), "\(second.stderr.suffix(2000))")
        #expect(second.stderr.contains("lost_offsets=5..<\(low)"), "\(second.stderr.suffix(2000))")
        let summary = try runSummary(second.stdout)
        #expect(summary["lost_to_retention"]?.int64Value == low - 5)
        // The applier went on with what the log still holds.
        let conn = try PGConnection.connect(target)
        defer { conn.close() }
        #expect(try Expect.count(conn, "SELECT count(*) FROM public.orders WHERE id <= 5") == 5)
        #expect(try Expect.count(conn, "SELECT count(*) FROM public.orders WHERE id BETWEEN 6 AND 8") == 0)
        #expect(try Expect.count(conn, "SELECT count(*) FROM public.orders WHERE id >= 100") == Int(high - low))
        let (committed, end) = try kafka.offsets(group: "ret", topic: "ret", partitions: 1)
        #expect(committed == end)

        // A run that resumes where it left off reports nothing.
        try kafka.send([event(200)])
        let third = try CDCRProcess.run(args)
        try #require(third.status == 0, "\(third.stderr.suffix(2000))")
        #expect(!third.stderr.contains("Kafka deleted messages"))
        #expect(try runSummary(third.stdout)["lost_to_retention"]?.int64Value == 0)
    }

    @Test("retention that empties a partition past the resume position: reported as lost, committed, and the run stops")
    func emptiedPartition() throws {
        let pg = try TestPostgres.sharedCluster()
        let kafka = try TestKafka()
        let target = try pg.createDatabase()
        try kafka.createTopic("ret-empty")
        func event(_ id: Int, status: String = "new") -> OutgoingMessage { Self.insert(id, status: status, topic: "ret-empty") }
        let args = runArgs(brokers: kafka.brokers, topic: "ret-empty", group: "ret-empty", target: target, extra: [
            "--kafka-property", "session.timeout.ms=6000", "--kafka-property", "heartbeat.interval.ms=500",
        ])
        try kafka.send((1...5).map { event($0) })
        let first = try CDCRProcess.run(args)
        try #require(first.status == 0, "\(first.stderr.suffix(2000))")

        // While the applier is down: a message set larger than the 5 MB the mock broker keeps per
        // partition, then a transaction marker: the broker drops both, so the log is empty (start =
        // end), far past the committed offset 5, as when retention empties an idle topic.
        let big = try KafkaProducer(properties: [
            ("bootstrap.servers", kafka.brokers), ("log_level", "3"), ("linger.ms", "200"),
            ("batch.size", "16000000"), ("message.max.bytes", "16000000"), ("compression.type", "none"),
        ])
        defer { big.close() }
        // One message, so it is one message set however the producer would batch several.
        try big.send([event(100, status: String(repeating: "x", count: 6_000_000))])
        try TransactionMarker.appendCommit(bootstrap: kafka.brokers, topic: "ret-empty", partition: 0)
        let tp = TopicPartition(topic: "ret-empty", partition: 0)
        let (low, high) = try kafka.producer.watermarks(tp)
        try #require(low > 5 && high == low, "the broker kept offsets \(low)..<\(high)")

        let second = try CDCRProcess.run(args, timeout: .seconds(60))
        try #require(second.status == 0, "the run must stop: \(second.stderr.suffix(2000))")
        #expect(second.stderr.contains("Kafka deleted messages before cdcr read them"), "\(second.stderr.suffix(2000))")
        #expect(second.stderr.contains("lost_offsets=5..<\(low)"), "\(second.stderr.suffix(2000))")
        #expect(try runSummary(second.stdout)["lost_to_retention"]?.int64Value == low - 5)
        let (committed, end) = try kafka.offsets(group: "ret-empty", topic: "ret-empty", partitions: 1)
        #expect(committed == end, "the new position is committed")
        let lag = try CDCRProcess.run(["lag", "--json", "--brokers", kafka.brokers, "--group", "ret-empty", "--topic", "ret-empty",
                                       "--target", target, "--kafka-property", "log_level=3"])
        #expect(try JSONParser.parse(lag.stdout.trimmingCharacters(in: .whitespacesAndNewlines))["total_lag"]?.int64Value == 0, "\(lag.stdout)")
    }
}
