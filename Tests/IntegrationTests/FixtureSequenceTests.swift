import CDCCore
import CDCKafka
import CDCPostgres
import CDCR
import Foundation
import Testing

/// Every fixture sequence, produced to a real Kafka-protocol broker and applied by `cdcr run` to a
/// real PostgreSQL, ends in exactly its expected rows.
@Suite("fixture sequences", .serialized)
struct FixtureSequenceTests {
    static let sequences = ["native/sequence", "debezium/with-schema", "debezium/no-schema"]

    @Test("sequence ends as expected, and replaying it changes nothing", arguments: BrokerKind.allCases, sequences)
    func sequence(_ broker: BrokerKind, _ name: String) throws {
        let pg = try TestPostgres.sharedCluster()
        let kafka = try TestKafka(broker)
        let target = try pg.createDatabase()
        let topic = "fx.\(name.replacingOccurrences(of: "/", with: "."))"
        try kafka.createTopic(topic)
        let lines = try kafka.produce(fixture: "\(Fixtures.root)/\(name).jsonl", topic: topic)

        let first = try CDCRProcess.run(runArgs(kafka: kafka, topic: topic, group: "g1", target: target))
        #expect(first.status == 0, "cdcr run failed: \(first.stderr)")
        let conn = try PGConnection.connect(target)
        #expect(try Expect.check(conn, expectedFile: "\(Fixtures.root)/\(name).expected.json") == [])

        // Every message got exactly one outcome, and committed offsets reached the end.
        let counts = try runSummary(first.stdout)
        let total = ["applied", "duplicate", "stale", "dead_lettered", "tombstone", "truncate_ignored"]
            .compactMap { counts[$0]?.int64Value }.reduce(0, +)
        #expect(total == Int64(lines.count))
        #expect(counts["dead_lettered"]?.int64Value == 0)
        let offsets = try kafka.offsets(group: "g1", topic: topic, partitions: 1)
        #expect(offsets.committed == offsets.end)

        // The whole sequence again under a new group: every change is a duplicate, the rows stay.
        let again = try CDCRProcess.run(runArgs(kafka: kafka, topic: topic, group: "g2", target: target))
        #expect(again.status == 0)
        let againCounts = try runSummary(again.stdout)
        #expect(againCounts["applied"]?.int64Value == 0)
        #expect(try Expect.check(conn, expectedFile: "\(Fixtures.root)/\(name).expected.json") == [])
    }

    @Test("Debezium: the native and Debezium outcome counts of the fixture are what its README describes", arguments: BrokerKind.allCases)
    func debeziumOutcomes(_ broker: BrokerKind) throws {
        let pg = try TestPostgres.sharedCluster()
        let kafka = try TestKafka(broker)
        let target = try pg.createDatabase()
        try kafka.createTopic("fx.dbz")
        _ = try kafka.produce(fixture: "\(Fixtures.root)/debezium/with-schema.jsonl", topic: "fx.dbz")
        let r = try CDCRProcess.run(runArgs(kafka: kafka, topic: "fx.dbz", group: "g", target: target))
        let counts = try runSummary(r.stdout)
        // A redelivered duplicate; a late older update of a deleted row and an update older than the
        // row's insert are stale; the tombstone after the delete is skipped.
        #expect(counts["duplicate"]?.int64Value == 1)
        #expect(counts["stale"]?.int64Value == 2)
        #expect(counts["tombstone"]?.int64Value == 1)
        let conn = try PGConnection.connect(target)
        // The version guard remembers the delete of order 2 as a tombstone.
        #expect(try Expect.count(conn, "SELECT count(*) FROM cdcr.row_versions WHERE table_name = 'public.orders' AND row_key = '2' AND deleted") == 1)
    }

    @Test("truncate is ignored and counted by default, applied with --apply-truncate", arguments: BrokerKind.allCases)
    func truncate(_ broker: BrokerKind) throws {
        let pg = try TestPostgres.sharedCluster()
        let kafka = try TestKafka(broker)
        let target = try pg.createDatabase()
        let conn = try PGConnection.connect(target)
        try conn.execute("INSERT INTO public.order_items VALUES (1, 1, 'A', 1, 1.00), (1, 2, 'B', 1, 2.00)")
        try kafka.createTopic("fx.trunc")
        _ = try kafka.produce(fixture: "\(Fixtures.root)/debezium/truncate.jsonl", topic: "fx.trunc")

        let ignored = try CDCRProcess.run(runArgs(kafka: kafka, topic: "fx.trunc", group: "g1", target: target))
        #expect(ignored.status == 0)
        #expect(try runSummary(ignored.stdout)["truncate_ignored"]?.int64Value == 1)
        #expect(try Expect.count(conn, "SELECT count(*) FROM public.order_items") == 2)

        let applied = try CDCRProcess.run(runArgs(kafka: kafka, topic: "fx.trunc", group: "g2", target: target, extra: ["--apply-truncate"]))
        #expect(applied.status == 0)
        #expect(try Expect.count(conn, "SELECT count(*) FROM public.order_items") == 0)
    }
}
