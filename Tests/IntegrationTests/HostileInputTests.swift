import CDCCore
import CDCKafka
import CDCPostgres
import CDCR
import Foundation
import Testing

/// Events written by an attacker or a broken producer: they never reach cdcr's bookkeeping or the
/// system catalogs, never crash or stall the applier, and the good events around them apply.
@Suite("hostile input")
struct HostileInputTests {
    static func native(_ id: String, table: String = "public.orders", op: String = "INSERT", key: String, data: String? = nil, version: Int? = nil) -> String {
        var json = #"{"change_id": \#(JSONValue.string(id).serialized), "table": \#(JSONValue.string(table).serialized), "operation": "\#(op)", "key": \#(key)"#
        if let data { json += #", "data": \#(data)"# }
        if let version { json += #", "version": \#(version)"# }
        return json + "}"
    }

    static func order(_ id: Int, status: String = "new") -> String { #"{"id": \#(id), "status": "\#(status)"}"# }

    /// Produces `values` in order to a new one-partition topic, runs the applier over it and returns
    /// the run's outcome, its summary and the dead letters (by source offset).
    static func apply(_ values: [String], kafka: TestKafka, target: String, topic: String, extra: [String] = [])
        throws -> (status: Int32, stderr: String, summary: JSONValue, dead: [Int: KafkaMessage]) {
        try kafka.createTopic(topic)
        try kafka.send(values.map { OutgoingMessage(topic: topic, partition: 0, key: nil, value: Array($0.utf8)) })
        let r = try CDCRProcess.run(runArgs(brokers: kafka.brokers, topic: topic, group: "g-\(topic)", target: target, extra: extra))
        let summary = (try? runSummary(r.stdout)) ?? .object([])
        let deadCount = Int(summary["dead_lettered"]?.int64Value ?? 0)
        var dead: [Int: KafkaMessage] = [:]
        for m in try kafka.read(topic: "\(topic).dlq", count: deadCount, timeout: .seconds(deadCount == 0 ? 1 : 30)) {
            dead[Int(m.header(DeadLetterWriter.Header.offset) ?? "") ?? -1] = m
        }
        return (r.status, r.stderr, summary, dead)
    }

    @Test("events for cdcr's bookkeeping, pg_catalog and denied schemas are dead-lettered as forbidden_table; the victim change applies")
    func forbiddenTables() throws {
        let pg = try TestPostgres.sharedCluster()
        let kafka = try TestKafka()
        let target = try pg.createDatabase()
        let conn = try PGConnection.connect(target)
        defer { conn.close() }
        try BookkeepingSchema.install(on: conn)
        try conn.execute("""
            CREATE ROLE victim_\(UInt32.random(in: 0...UInt32.max)) LOGIN PASSWORD 'original';
            CREATE SCHEMA audit; CREATE TABLE audit.t (id int PRIMARY KEY, v text);
            """)
        let role = try conn.query("SELECT oid::text, rolpassword FROM pg_authid WHERE rolname LIKE 'victim_%'").rows[0]
        let (roleOID, passwordHash) = (role[0]!, role[1]!)

        let values = [
            // Pre-claims the victim's change ID in the ledger: the victim would count as a duplicate.
            Self.native("attack-1", table: "cdcr.ledger", key: #"{"change_id": "victim-1"}"#,
                        data: #"{"change_id": "victim-1", "table_name": "public.orders", "outcome": "a"}"#),
            Self.native("victim-1", key: #"{"id": 1}"#, data: Self.order(1, status: "victim"), version: 10),
            // Removes the victim row's version guard, so the late older change below would apply.
            Self.native("attack-2", table: "cdcr.row_versions", op: "DELETE", key: #"{"table_name": "public.orders", "row_key": "1"}"#),
            Self.native("late-1", op: "UPDATE", key: #"{"id": 1}"#, data: Self.order(1, status: "stale"), version: 5),
            Self.native("attack-3", table: "pg_catalog.pg_authid", op: "UPDATE", key: #"{"oid": \#(roleOID)}"#,
                        data: #"{"oid": \#(roleOID), "rolpassword": "md5deadbeefdeadbeefdeadbeefdeadbeef"}"#),
            // The same through a Debezium envelope (source.schema = pg_catalog).
            #"{"op": "u", "source": {"schema": "pg_catalog", "table": "pg_authid", "lsn": 100}, "after": {"oid": \#(roleOID), "rolpassword": "md5deadbeefdeadbeefdeadbeefdeadbeef"}}"#,
            Self.native("attack-4", table: "information_schema.sql_features", key: #"{"feature_id": "X"}"#, data: #"{"feature_id": "X"}"#),
            Self.native("attack-5", table: "pg_toast.pg_toast_1255", key: #"{"chunk_id": 1}"#, data: #"{"chunk_id": 1}"#),
            Self.native("denied-1", table: "audit.t", key: #"{"id": 1}"#, data: #"{"id": 1, "v": "x"}"#),
            Self.native("good-2", key: #"{"id": 2}"#, data: Self.order(2), version: 1),
        ]
        let r = try Self.apply(values, kafka: kafka, target: target, topic: "hostile.forbidden", extra: ["--deny-schema", "audit"])
        try #require(r.status == 0, "\(r.stderr.suffix(2000))")

        #expect(try conn.query("SELECT status FROM public.orders WHERE id = 1").scalar == "victim", "the victim change applied and the late one stayed stale")
        #expect(try Expect.count(conn, "SELECT count(*) FROM public.orders WHERE id = 2") == 1)
        #expect(try conn.query("SELECT rolpassword FROM pg_authid WHERE oid = $1::oid", [roleOID]).scalar == passwordHash)
        #expect(try Expect.count(conn, "SELECT count(*) FROM cdcr.row_versions WHERE table_name = 'public.orders' AND row_key = '1' AND version = 10") == 1)
        #expect(try Expect.count(conn, "SELECT count(*) FROM audit.t") == 0)
        #expect(try Expect.count(conn, "SELECT count(*) FROM cdcr.ledger WHERE change_id = 'victim-1' AND outcome = 'a'") == 1)
        #expect(try Expect.count(conn, "SELECT count(*) FROM cdcr.ledger WHERE change_id LIKE 'attack%'") == 0, "refused changes are not recorded")

        let forbidden = [0, 2, 4, 5, 6, 7, 8]
        #expect(Set(r.dead.keys) == Set(forbidden), "dead letters at offsets \(r.dead.keys.sorted())")
        for offset in forbidden {
            #expect(r.dead[offset]?.header(DeadLetterWriter.Header.reason) == "forbidden_table", "offset \(offset)")
        }
        #expect(r.dead[8]?.header(DeadLetterWriter.Header.message)?.contains("deny_schemas") == true)
        #expect(r.summary["applied"]?.int64Value == 2)
        #expect(r.summary["stale"]?.int64Value == 1)
        let offsets = try kafka.offsets(group: "g-hostile.forbidden", topic: "hostile.forbidden", partitions: 1)
        #expect(offsets.committed == offsets.end)
    }

    @Test("the applier warns at start-up when its target role is a superuser")
    func superuserWarning() throws {
        let pg = try TestPostgres.sharedCluster()
        let kafka = try TestKafka()
        let target = try pg.createDatabase()
        let r = try Self.apply([Self.native("1", key: #"{"id": 1}"#, data: Self.order(1))], kafka: kafka, target: target, topic: "hostile.superuser")
        try #require(r.status == 0, "\(r.stderr.suffix(2000))")
        #expect(r.stderr.contains("is a superuser"), "\(r.stderr.suffix(2000))")
    }

    @Test("change IDs and keys of any length are stored; NULs and IDs the ledger refuses dead-letter that event alone")
    func ledgerNeverCrashes() throws {
        let pg = try TestPostgres.sharedCluster()
        let kafka = try TestKafka()
        let target = try pg.createDatabase()
        let conn = try PGConnection.connect(target)
        defer { conn.close() }
        try BookkeepingSchema.install(on: conn)
        try conn.execute("CREATE TABLE public.long_keys (k text PRIMARY KEY, v text)")
        // Stands for any ID the ledger cannot store: a permanent refusal of one change's claim.
        try conn.execute("ALTER TABLE cdcr.ledger ADD CONSTRAINT refuse_evil CHECK (change_id NOT LIKE 'evil%')")

        let longID = String((0..<3_000).map { _ in "abcdefghijklmnopqrstuvwxyz0123456789".randomElement()! })
        let longKey = String(repeating: "k", count: 2_600)
        func dbz(lsn: Int, op: String, v: String) -> String {
            #"{"op": "\#(op)", "source": {"schema": "public", "table": "long_keys", "lsn": \#(lsn)}, "after": {"k": "\#(longKey)", "v": "\#(v)"}}"#
        }
        let values = [
            Self.native(longID, key: #"{"id": 1}"#, data: Self.order(1, status: "long id"), version: 1),
            Self.native(longID, key: #"{"id": 1}"#, data: Self.order(1, status: "long id again"), version: 2),  // same ID: a duplicate
            Self.native("nul\u{0}id", key: #"{"id": 2}"#, data: Self.order(2)),
            Self.native("3", table: "public.ord\u{0}ers", key: #"{"id": 3}"#, data: Self.order(3)),
            Self.native("evil-1", key: #"{"id": 4}"#, data: Self.order(4)),
            dbz(lsn: 100, op: "c", v: "first"),
            dbz(lsn: 300, op: "u", v: "newest"),
            dbz(lsn: 200, op: "u", v: "older"),   // older than the row's version: stale
            dbz(lsn: 300, op: "u", v: "newest"),  // redelivered: a duplicate
            Self.native("5", key: #"{"id": 5}"#, data: Self.order(5)),
        ]
        let r = try Self.apply(values, kafka: kafka, target: target, topic: "hostile.ledger")
        try #require(r.status == 0, "\(r.stderr.suffix(2000))")
        #expect(try conn.query("SELECT status FROM public.orders WHERE id = 1").scalar == "long id")
        #expect(try Expect.count(conn, "SELECT count(*) FROM public.orders WHERE id IN (2, 3, 4)") == 0)
        #expect(try Expect.count(conn, "SELECT count(*) FROM public.orders WHERE id = 5") == 1)
        #expect(try conn.query("SELECT v FROM public.long_keys WHERE k = $1", [longKey]).scalar == "newest")
        // The long ID is kept whole beside its digest.
        #expect(try Expect.count(conn, "SELECT count(*) FROM cdcr.ledger WHERE change_id = $1 AND full_change_id = $2",
                                 [BookkeepingKey.stored(longID), longID]) == 1)

        #expect(Set(r.dead.keys) == [2, 3, 4], "dead letters at offsets \(r.dead.keys.sorted())")
        #expect(r.dead[2]?.header(DeadLetterWriter.Header.reason) == "undecodable")
        #expect(r.dead[3]?.header(DeadLetterWriter.Header.reason) == "undecodable")
        #expect(r.dead[4]?.header(DeadLetterWriter.Header.reason) == "rejected")
        #expect(r.dead[4]?.header(DeadLetterWriter.Header.sqlState) == "23514")
        #expect(r.summary["duplicate"]?.int64Value == 2)
        #expect(r.summary["stale"]?.int64Value == 1)
        #expect(r.summary["applied"]?.int64Value == 4)
        let offsets = try kafka.offsets(group: "g-hostile.ledger", topic: "hostile.ledger", partitions: 1)
        #expect(offsets.committed == offsets.end)
    }

    @Test("a member named twice anywhere in an event is undecodable, and the reason names it")
    func duplicateMembers() throws {
        let pg = try TestPostgres.sharedCluster()
        let kafka = try TestKafka()
        let target = try pg.createDatabase()
        let values = [
            #"{"change_id": "1", "table": "public.orders", "operation": "INSERT", "key": {"id": 1}, "data": {"id": 1, "status": "a", "status": "b"}}"#,
            #"{"change_id": "2", "change_id": "3", "table": "public.orders", "operation": "INSERT", "key": {"id": 2}, "data": {"id": 2}}"#,
            Self.native("4", key: #"{"id": 4}"#, data: Self.order(4)),
        ]
        let r = try Self.apply(values, kafka: kafka, target: target, topic: "hostile.dupkeys")
        try #require(r.status == 0, "\(r.stderr.suffix(2000))")
        #expect(Set(r.dead.keys) == [0, 1])
        #expect(r.dead[0]?.header(DeadLetterWriter.Header.reason) == "undecodable")
        #expect(r.dead[0]?.header(DeadLetterWriter.Header.message)?.contains("duplicate member name 'status'") == true)
        #expect(r.dead[1]?.header(DeadLetterWriter.Header.message)?.contains("duplicate member name 'change_id'") == true)
        let conn = try PGConnection.connect(target)
        defer { conn.close() }
        #expect(try Expect.count(conn, "SELECT count(*) FROM public.orders") == 1)
    }
}
