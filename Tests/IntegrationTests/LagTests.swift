import CDCCore
import CDCKafka
import CDCPostgres
import Foundation
import Testing

@Suite("consumer lag", .serialized)
struct LagTests {
    /// Commits offsets for `group` the way a consumer would, without joining it.
    func commit(_ kafka: TestKafka, group: String, _ offsets: [(Int32, Int64)], topic: String) throws {
        let c = try KafkaConsumer(properties: [("bootstrap.servers", kafka.brokers), ("group.id", group), ("log_level", "3")]) { _ in }
        defer { c.close() }
        try c.commit(offsets.map { TopicPartitionOffset(topic: topic, partition: $0.0, offset: $0.1) })
    }

    func produce(_ kafka: TestKafka, topic: String, partition: Int32, count: Int) throws {
        try kafka.send((0..<count).map { OutgoingMessage(topic: topic, partition: partition, key: nil, value: Array("{\"n\":\($0)}".utf8)) })
    }

    func lag(_ kafka: TestKafka, group: String, topic: String, target: String, extra: [String] = []) throws -> (status: Int32, report: JSONValue, stderr: String) {
        let r = try CDCRProcess.run(["lag", "--json", "--brokers", kafka.brokers, "--group", group, "--topic", topic, "--target", target,
                                     "--window", "8", "--kafka-property", "log_level=3"] + extra)
        return (r.status, (try? JSONParser.parse(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines))) ?? .null, r.stderr)
    }

    func partition(_ report: JSONValue, _ p: Int) -> JSONValue? {
        guard case let .array(parts)? = report["partitions"] else { return nil }
        return parts.first { $0["partition"]?.int64Value == Int64(p) }
    }

    @Test("lag equals produced minus committed; a consumer that stops committing goes STALL then STOP; a reset backwards is REWIND")
    func stallStopRewind() throws {
        let pg = try TestPostgres.sharedCluster()
        let kafka = try TestKafka()
        let target = try pg.createDatabase()
        try kafka.createTopic("lagt", partitions: 2)
        try produce(kafka, topic: "lagt", partition: 0, count: 50)
        try produce(kafka, topic: "lagt", partition: 1, count: 50)
        try commit(kafka, group: "lg", [(0, 30), (1, 50)], topic: "lagt")

        let first = try lag(kafka, group: "lg", topic: "lagt", target: target)
        #expect(first.status == 0, "\(first.stderr)")
        let p0 = try #require(partition(first.report, 0))
        #expect(p0["committed"]?.int64Value == 30 && p0["end"]?.int64Value == 50 && p0["lag"]?.int64Value == 20)
        #expect(partition(first.report, 1)?["lag"]?.int64Value == 0)
        #expect(first.report["total_lag"]?.int64Value == 20)
        #expect(first.report["worst"]?["partition"]?.int64Value == 0)
        if case let .number(seconds)? = p0["lag_seconds"] { #expect(Double(seconds)! >= 0 && Double(seconds)! < 60) } else { Issue.record("no lag_seconds") }

        let second = try lag(kafka, group: "lg", topic: "lagt", target: target, extra: ["--fail-on", "err"])
        #expect(partition(second.report, 0)?["status"] == .string("STALL"))
        #expect(partition(second.report, 1)?["status"] == .string("OK"))
        #expect(second.report["status"] == .string("ERR"))
        #expect(second.status == 2, "--fail-on err exits 2 at ERR")

        sleep(9)  // longer than the 8 s window without a commit
        let third = try lag(kafka, group: "lg", topic: "lagt", target: target)
        #expect(partition(third.report, 0)?["status"] == .string("STOP"))

        try commit(kafka, group: "lg", [(0, 10)], topic: "lagt")
        let fourth = try lag(kafka, group: "lg", topic: "lagt", target: target)
        #expect(partition(fourth.report, 0)?["status"] == .string("REWIND"))
        #expect(partition(fourth.report, 0)?["lag"]?.int64Value == 40)
    }

    @Test("lag seconds are the age of each lagging partition's oldest unread message, all read in one sample")
    func lagSecondsPerPartition() throws {
        let pg = try TestPostgres.sharedCluster()
        let kafka = try TestKafka()
        let target = try pg.createDatabase()
        try kafka.createTopic("lagm", partitions: 24)
        // Partitions 0-11 get their messages 3 s before partitions 12-23; the group has read none.
        for p in 0..<12 { try produce(kafka, topic: "lagm", partition: Int32(p), count: 5) }
        sleep(3)
        for p in 12..<24 { try produce(kafka, topic: "lagm", partition: Int32(p), count: 5) }
        try commit(kafka, group: "lm", (0..<24).map { (Int32($0), 0) }, topic: "lagm")

        let started = ContinuousClock.now
        let r = try lag(kafka, group: "lm", topic: "lagm", target: target)
        let took = ContinuousClock.now - started
        #expect(r.status == 0, "\(r.stderr)")
        let seconds = (0..<24).map { p -> Double? in
            guard case let .number(n)? = partition(r.report, p)?["lag_seconds"] else { return nil }
            return Double(n)
        }
        #expect(seconds.allSatisfy { $0 != nil }, "every lagging partition has an age: \(seconds)")
        let older = seconds[0..<12].compactMap { $0 }, newer = seconds[12...].compactMap { $0 }
        #expect((older.min() ?? 0) - (newer.max() ?? .infinity) >= 2.5, "each partition reads its own message: \(seconds)")
        // Read one partition at a time, this took ~0.5 s per lagging partition (12 s here); at once, ~1 s.
        #expect(took < .seconds(6), "lag took \(took)")
    }

    @Test("a slow consumer whose lag keeps growing is WARN; plain output is a table")
    func slowConsumerWarns() throws {
        let pg = try TestPostgres.sharedCluster()
        let kafka = try TestKafka()
        let target = try pg.createDatabase()
        try kafka.createTopic("slow", partitions: 1)
        try produce(kafka, topic: "slow", partition: 0, count: 20)
        try commit(kafka, group: "sl", [(0, 10)], topic: "slow")
        _ = try lag(kafka, group: "sl", topic: "slow", target: target)
        for committed in [15, 20] as [Int64] {
            try produce(kafka, topic: "slow", partition: 0, count: 30)
            try commit(kafka, group: "sl", [(0, committed)], topic: "slow")
            _ = try lag(kafka, group: "sl", topic: "slow", target: target)
        }
        let r = try lag(kafka, group: "sl", topic: "slow", target: target, extra: ["--fail-on", "warn"])
        #expect(r.report["status"] == .string("WARN"), "\(r.report.serialized)")
        #expect(r.status == 2)
        let plain = try CDCRProcess.run(["lag", "--brokers", kafka.brokers, "--group", "sl", "--topic", "slow", "--target", target, "--kafka-property", "log_level=3"])
        #expect(plain.stdout.contains("partition") && plain.stdout.contains("group sl:"))
    }
}
