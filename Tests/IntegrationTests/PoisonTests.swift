import CDCCore
import CDCKafka
import CDCPostgres
import CDCR
import Foundation
import Testing

@Suite("poison events")
struct PoisonTests {
    /// What the fixture's `expect` texts mean as dead-letter reasons.
    static let reasons: [String: String] = [
        "undecodable": "undecodable", "unknown table": "unknown_table", "hostile table name": "unknown_table",
        "hostile column name": "unknown_column", "value not of the column's type": "invalid_value",
        "unknown operation": "unknown_operation", "no key": "no_key",
    ]

    @Test("poison.jsonl: bad messages are dead-lettered with their headers, the good one applies", arguments: BrokerKind.allCases)
    func poisonFixture(_ broker: BrokerKind) throws {
        let pg = try TestPostgres.sharedCluster()
        let kafka = try TestKafka(broker)
        let target = try pg.createDatabase()
        try kafka.createTopic("fx.poison")
        let lines = try kafka.produce(fixture: "\(Fixtures.root)/native/poison.jsonl", topic: "fx.poison")

        let r = try CDCRProcess.run(runArgs(kafka: kafka, topic: "fx.poison", group: "g", target: target))
        #expect(r.status == 0, "\(r.stderr)")
        let conn = try PGConnection.connect(target)
        #expect(try Expect.check(conn, expectedFile: "\(Fixtures.root)/native/poison.expected.json") == [])
        // The hostile names did nothing: the table is intact, no stray column was touched.
        #expect(try Expect.count(conn, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename = 'orders'") == 1)

        let poisoned = lines.enumerated().filter { $0.element.expect != "applied" }
        let dead = try kafka.read(topic: "fx.poison.dlq", count: poisoned.count)
        #expect(dead.count == poisoned.count)
        for m in dead {
            let offset = Int(m.header(DeadLetterWriter.Header.offset) ?? "") ?? -1
            #expect(m.header(DeadLetterWriter.Header.topic) == "fx.poison")
            #expect(m.header(DeadLetterWriter.Header.partition) == "0")
            guard offset >= 0, offset < lines.count, let expect = lines[offset].expect else {
                Issue.record("dead letter with bad offset header \(offset)")
                continue
            }
            #expect(m.header(DeadLetterWriter.Header.reason) == Self.reasons[expect], "offset \(offset): \(expect)")
            #expect(m.value == lines[offset].value, "the dead letter carries the original value")
            #expect(!(m.header(DeadLetterWriter.Header.message) ?? "").isEmpty)
            if offset > 0 { #expect(m.header(DeadLetterWriter.Header.changeID) == "20\(offset)") }
        }
        // Offsets of dead-lettered messages are committed too (after the DLQ acknowledged them).
        let offsets = try kafka.offsets(group: "g", topic: "fx.poison", partitions: 1)
        #expect(offsets.committed == offsets.end)
    }

    @Test("a value the column cannot hold is poison even when a later change of the key in the same batch replaces it", arguments: BrokerKind.allCases)
    func poisonFoldedAway(_ broker: BrokerKind) throws {
        let pg = try TestPostgres.sharedCluster()
        let kafka = try TestKafka(broker)
        let target = try pg.createDatabase()
        try kafka.createTopic("fold")
        func change(_ id: String, key: Int, amount: String, version: Int) -> OutgoingMessage {
            let value = #"{"change_id": "\#(id)", "table": "public.orders", "operation": "UPDATE", "key": {"id": \#(key)}, "data": {"id": \#(key), "status": "s\#(version)", "amount": "\#(amount)"}, "version": \#(version)}"#
            return OutgoingMessage(topic: "fold", partition: 0, key: nil, value: Array(value.utf8))
        }
        // Key 1: the bad value comes first and a newer change replaces it. Key 2: the bad value comes
        // after a newer change, so it is stale in the batch. Both must be dead-lettered.
        try kafka.send([
            change("a1", key: 1, amount: "abc", version: 1), change("a2", key: 1, amount: "1.50", version: 2),
            change("b2", key: 2, amount: "2.50", version: 2), change("b1", key: 2, amount: "x9", version: 1),
        ])
        let r = try CDCRProcess.run(runArgs(kafka: kafka, topic: "fold", group: "g", target: target))
        #expect(r.status == 0, "\(r.stderr)")
        let summary = try runSummary(r.stdout)
        #expect(summary["dead_lettered"]?.int64Value == 2 && summary["applied"]?.int64Value == 2, "\(r.stdout)")
        let dead = try kafka.read(topic: "fold.dlq", count: 2, timeout: .seconds(15))
        #expect(Set(dead.compactMap { $0.header(DeadLetterWriter.Header.changeID) }) == ["a1", "b1"])
        #expect(dead.allSatisfy { $0.header(DeadLetterWriter.Header.reason) == "invalid_value" })
        let conn = try PGConnection.connect(target)
        #expect(try conn.query("SELECT string_agg(id || ':' || amount, ',' ORDER BY id) FROM public.orders").scalar == "1:1.50,2:2.50")
        #expect(try Expect.count(conn, "SELECT count(*) FROM cdcr.ledger") == 2, "dead-lettered changes are not in the ledger")
    }

    @Test("--on-poison halt stops with an error and commits nothing past the poison", arguments: BrokerKind.allCases)
    func halt(_ broker: BrokerKind) throws {
        let pg = try TestPostgres.sharedCluster()
        let kafka = try TestKafka(broker)
        let target = try pg.createDatabase()
        try kafka.createTopic("fx.halt")
        _ = try kafka.produce(fixture: "\(Fixtures.root)/native/poison.jsonl", topic: "fx.halt")
        let r = try CDCRProcess.run(runArgs(kafka: kafka, topic: "fx.halt", group: "g", target: target, extra: ["--on-poison", "halt"]))
        #expect(r.status == 1)
        #expect(r.stderr.contains("halting on poison event at fx.halt/0@0"))
        let offsets = try kafka.offsets(group: "g", topic: "fx.halt", partitions: 1)
        #expect(offsets.committed[0]! <= 0)
    }
}
