import CDCCore
import CDCKafka
import CDCPostgres
import CDCR
import Foundation
import Testing

/// No single message may stall the stream: a failure that is not clearly transient is retried a
/// bounded number of times, then isolated; only a database that is really broken is waited out.
@Suite("nothing stalls the stream", .serialized)
struct StallTests {
    static func order(_ topic: String, _ id: Int, status: String) -> OutgoingMessage {
        let json = #"{"change_id": "\#(topic)-\#(id)", "table": "public.orders", "operation": "INSERT", "key": {"id": \#(id)}, "data": {"id": \#(id), "status": "\#(status)"}}"#
        return OutgoingMessage(topic: topic, partition: 0, key: nil, value: Array(json.utf8))
    }

    static func kv(_ topic: String, _ id: Int, attrs: String) -> OutgoingMessage {
        let json = #"{"change_id": "\#(topic)-kv-\#(id)", "table": "public.kv", "operation": "INSERT", "key": {"id": \#(id)}, "data": {"id": \#(id), "attrs": \#(attrs)}}"#
        return OutgoingMessage(topic: topic, partition: 0, key: nil, value: Array(json.utf8))
    }

    @Test("a change that raises XX000 is dead-lettered with its SQLSTATE, and every other message on every topic applies")
    func internalErrorIsIsolated() throws {
        let pg = try TestPostgres.sharedCluster()
        let kafka = try TestKafka()
        let target = try pg.createDatabase()
        let conn = try PGConnection.connect(target)
        defer { conn.close() }
        try conn.execute("""
            CREATE EXTENSION hstore;
            CREATE TABLE public.kv (id int PRIMARY KEY, attrs hstore);
            CREATE FUNCTION internal_on_bad() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF NEW.status = 'internal' THEN RAISE EXCEPTION 'planted internal error' USING ERRCODE = 'XX000'; END IF;
                RETURN NEW;
            END $$;
            CREATE TRIGGER internal_on_bad BEFORE INSERT OR UPDATE ON public.orders FOR EACH ROW EXECUTE FUNCTION internal_on_bad();
            """)
        for t in ["stall.a", "stall.b"] { try kafka.createTopic(t) }
        try kafka.send([
            Self.order("stall.a", 1, status: "ok"), Self.order("stall.a", 2, status: "internal"),
            Self.kv("stall.a", 1, attrs: #"{"colour": "blue", "size": null}"#), Self.order("stall.a", 3, status: "ok"),
        ] + (10..<15).map { Self.order("stall.b", $0, status: "ok") })

        let started = ContinuousClock.now
        let r = try CDCRProcess.run(["run", "--brokers", kafka.brokers, "--topic", "stall.a", "--topic", "stall.b", "--group", "stall",
                                     "--target", target, "--stop-when-caught-up", "--kafka-property", "log_level=3"], timeout: .seconds(90))
        try #require(r.status == 0, "\(r.stderr.suffix(3000))")
        #expect(ContinuousClock.now - started < .seconds(60))
        #expect(r.stderr.contains("failed for an unclear reason"), "the bounded retries are logged")
        #expect(try Expect.count(conn, "SELECT count(*) FROM public.orders WHERE id IN (1, 3, 10, 11, 12, 13, 14)") == 7)
        #expect(try Expect.count(conn, "SELECT count(*) FROM public.orders WHERE id = 2") == 0)
        #expect(try conn.query("SELECT attrs -> 'colour' FROM public.kv WHERE id = 1").scalar == "blue")
        let summary = try runSummary(r.stdout)
        #expect(summary["dead_lettered"]?.int64Value == 1 && summary["applied"]?.int64Value == 8, "\(summary.serialized)")
        let dead = try kafka.read(topic: "stall.a.dlq", count: 1)
        try #require(dead.count == 1)
        #expect(dead[0].header(DeadLetterWriter.Header.offset) == "1")
        #expect(dead[0].header(DeadLetterWriter.Header.sqlState) == "XX000")
        #expect(dead[0].header(DeadLetterWriter.Header.message)?.contains("planted internal error") == true)
        for t in ["stall.a", "stall.b"] {
            let o = try kafka.offsets(group: "stall", topic: t, partitions: 1)
            #expect(o.committed == o.end, "\(t)")
        }
    }

    @Test("a connection lost in the same place is retried until it passes: nothing dead-lettered, nothing lost")
    func connectionLossStillRetries() throws {
        let pg = try TestPostgres.sharedCluster()
        let kafka = try TestKafka()
        let target = try pg.createDatabase()
        let conn = try PGConnection.connect(target)
        defer { conn.close() }
        // The backend applying the batch kills itself, the first two times only (a sequence is not
        // rolled back with the transaction).
        try conn.execute("""
            CREATE SEQUENCE kills;
            CREATE FUNCTION die_twice() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF NEW.status = 'die' AND nextval('kills') <= 2 THEN PERFORM pg_terminate_backend(pg_backend_pid()); END IF;
                RETURN NEW;
            END $$;
            CREATE TRIGGER die_twice BEFORE INSERT ON public.orders FOR EACH ROW EXECUTE FUNCTION die_twice();
            """)
        try kafka.createTopic("stall.conn")
        try kafka.send([Self.order("stall.conn", 1, status: "ok"), Self.order("stall.conn", 2, status: "die"), Self.order("stall.conn", 3, status: "ok")])
        let r = try CDCRProcess.run(runArgs(brokers: kafka.brokers, topic: "stall.conn", group: "stall-conn", target: target), timeout: .seconds(90))
        try #require(r.status == 0, "\(r.stderr.suffix(3000))")
        #expect(r.stderr.contains("apply batch failed, retrying"), "\(r.stderr.suffix(3000))")
        #expect(try Expect.count(conn, "SELECT count(*) FROM public.orders") == 3)
        #expect(try runSummary(r.stdout)["dead_lettered"]?.int64Value == 0)
        #expect(try Expect.count(conn, "SELECT last_value FROM kills") >= 3)
    }

    @Test("a database that fails every change with a system error is waited out: /readyz and the stall gauge say so, nothing is dead-lettered")
    func brokenDatabaseIsWaitedOut() throws {
        let pg = try TestPostgres.sharedCluster()
        let kafka = try TestKafka()
        let target = try pg.createDatabase()
        let conn = try PGConnection.connect(target)
        defer { conn.close() }
        try conn.execute("""
            CREATE TABLE repaired (done bool);
            CREATE FUNCTION io_error() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF NOT EXISTS (SELECT FROM repaired) THEN RAISE EXCEPTION 'planted I/O error' USING ERRCODE = '58030'; END IF;
                RETURN NEW;
            END $$;
            CREATE TRIGGER io_error BEFORE INSERT ON public.orders FOR EACH ROW EXECUTE FUNCTION io_error();
            """)
        try kafka.createTopic("stall.io")
        try kafka.send((1...4).map { Self.order("stall.io", $0, status: "ok") })
        let port = freePort()
        let applier = try CDCRProcess.start(runArgs(brokers: kafka.brokers, topic: "stall.io", group: "stall-io", target: target,
                                                    extra: ["--admin-listen", "127.0.0.1:\(port)", "--unclear-error-retries", "1"]))
        defer { applier.signal(SIGKILL); _ = applier.wait(timeout: .seconds(10)) }
        var ready: (status: Int, body: String)?
        #expect(waitUntil(timeout: .seconds(30)) {
            ready = httpGet(port: port, path: "/readyz")
            return ready?.body.contains("not about one change") == true
        }, "\(ready?.body ?? "no answer") \(applier.stderr.suffix(2000))")
        #expect(ready?.status == 503)
        sleep(2)
        let metrics = httpGet(port: port, path: "/metrics")?.body ?? ""
        let line = metrics.split(separator: "\n").first { $0.hasPrefix("cdcr_apply_stalled_seconds ") }
        let stalled: Double = line.flatMap { Double($0.split(separator: " ").last ?? "") } ?? 0
        #expect(stalled >= 2, "stalled \(stalled): \(line ?? "no gauge")")
        #expect(try Expect.count(conn, "SELECT count(*) FROM public.orders") == 0)
        let committed: Int64 = try kafka.offsets(group: "stall-io", topic: "stall.io", partitions: 1).committed[0] ?? -1
        #expect(committed <= 0, "nothing committed while broken")

        try conn.execute("INSERT INTO repaired VALUES (true)")
        let status = applier.wait(timeout: .seconds(60))
        #expect(status == 0, "\(applier.stderr.suffix(2000))")
        #expect(try Expect.count(conn, "SELECT count(*) FROM public.orders") == 4)
        #expect(try runSummary(applier.stdout)["dead_lettered"]?.int64Value == 0)
        #expect(applier.stderr.contains("not about one change"), "the logs say why the batch waits")
    }
}
