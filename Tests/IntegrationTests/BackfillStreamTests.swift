import CDCCore
import CDCKafka
import CDCPostgres
import CDCR
import Foundation
import Synchronization
import Testing

/// A concurrent writer on the source: inserts, updates and deletes of random rows, some in
/// transactions of two statements held open a little (so transactions span the backfill's
/// snapshots), until `stop` is set. `emit` gets each committed change (for feeds the test produces).
final class SourceWriters: Sendable {
    let stop = Atomic<Bool>(false)
    let statements = Atomic<Int>(0)
    private let done = DispatchGroup()

    init(_ url: String, threads: Int, keys: Int, table: String, emit: (@Sendable ([WrittenChange]) -> Void)? = nil) throws {
        for t in 0..<threads {
            let conn = try PGConnection.connect(url)
            done.enter()
            let thread = Thread { [self] in
                defer { conn.close(); done.leave() }
                var rng = SplitMix64(seed: UInt64(t) &+ 77)
                while !stop.load(ordering: .relaxed) {
                    do {
                        try conn.execute("BEGIN")
                        var changes: [WrittenChange] = []
                        for _ in 0..<(rng.next() % 3 == 0 ? 2 : 1) {
                            if let c = try Self.change(conn, table: table, key: Int(rng.next() % UInt64(keys)) + 1, kind: rng.next() % 10, n: statements.add(1, ordering: .relaxed).newValue) {
                                changes.append(c)
                            }
                        }
                        if rng.next() % 4 == 0 { try conn.query("SELECT pg_sleep(0.02)") }
                        try conn.execute("COMMIT")
                        emit?(changes)
                    } catch {
                        _ = try? conn.execute("ROLLBACK")  // a deadlock between the two writers: try again
                    }
                }
            }
            thread.start()
        }
    }

    func finish() {
        stop.store(true, ordering: .relaxed)
        done.wait()
    }

    /// One statement; the row after it (nil for a delete) with the WAL insert position read after
    /// it in the same transaction: the Debezium-style version of the change.
    static func change(_ conn: PGConnection, table: String, key: Int, kind: UInt64, n: Int) throws -> WrittenChange? {
        let row: String?
        switch kind {
        case 0...3:
            row = try conn.query("""
                INSERT INTO \(table) AS a (id, owner, balance, note) VALUES ($1, $2, $3, NULL)
                ON CONFLICT (id) DO UPDATE SET owner = EXCLUDED.owner, balance = a.balance + 1 RETURNING to_jsonb(a.*)::text
                """, [String(key), "w\(n)", "\(n % 1000).25"]).scalar
        case 4...7:
            row = try conn.query("UPDATE \(table) a SET note = $2, balance = balance - 1 WHERE id = $1 RETURNING to_jsonb(a.*)::text",
                                 [String(key), "n\(n)"]).scalar
            if row == nil { return nil }
        default:
            guard try conn.query("DELETE FROM \(table) WHERE id = $1 RETURNING id", [String(key)]).count == 1 else { return nil }
            row = nil
        }
        let lsn = Int64(try conn.query("SELECT (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::bigint::text").scalar!)!
        return WrittenChange(key: key, row: row, lsn: lsn)
    }
}

struct WrittenChange: Sendable {
    let key: Int
    let row: String?
    let lsn: Int64

    /// The change as a Debezium envelope (no schema) keyed by row.
    func debezium(topic: String, table: String) -> OutgoingMessage {
        let after = row ?? "null"
        let op = row == nil ? "d" : "u"
        let before = row == nil ? "{\"id\":\(key)}" : "null"
        let value = """
            {"before":\(before),"after":\(after),"source":{"connector":"postgresql","schema":"public","table":"\(table)","lsn":\(lsn),"ts_ms":1795168800000},"op":"\(op)","ts_ms":1795168800000}
            """
        return OutgoingMessage(topic: topic, partition: Int32(key % 3), key: Array("{\"id\":\(key)}".utf8), value: Array(value.utf8))
    }
}

let accountsDDL = "CREATE TABLE public.accounts (id bigint PRIMARY KEY, owner text, balance numeric(12,2), note text)"

func populateAccounts(_ conn: PGConnection, rows: Int) throws {
    try conn.query("INSERT INTO public.accounts SELECT g, 'o' || g, g / 4.0, CASE WHEN g % 3 = 0 THEN 'x' END FROM generate_series(1, $1::int) g", [String(rows)])
}

@Suite("backfill beside the live stream", .serialized)
struct BackfillStreamTests {
    /// Runs the backfill (killed -9 once mid-way and resumed when `kill`) while `writers` change the
    /// source; returns the last run's result.
    func backfillDuring(_ source: String, _ target: String, table: String, kill: Bool, extra: [String] = [], tick: () throws -> Void = {}) throws -> (Int32, String, String) {
        let tgt = try PGConnection.connect(target)
        defer { tgt.close() }
        let args = ["backfill", "--source", source, "--target", target, "--table", table, "--chunk-rows", "150", "--settle", "0.5", "--json"] + extra
        var p = try CDCRProcess.start(args + (kill ? ["--max-rows-per-second", "1500"] : []))
        if kill {
            let reached = try waitUntil(timeout: .seconds(60)) {
                try tick()
                return (try? Expect.count(tgt, "SELECT coalesce(max(chunks), 0) FROM cdcr.backfill_state")) ?? 0 >= 4
            }
            #expect(reached, "\(p.stderr)")
            p.signal(SIGKILL)
            _ = p.wait()
            p = try CDCRProcess.start(args)
        }
        let deadline = ContinuousClock.now + .seconds(240)
        while !p.hasExited && ContinuousClock.now < deadline {
            try tick()
            usleep(50_000)
        }
        let status = p.wait(timeout: .seconds(5))
        return (status, p.stdout, p.stderr)
    }

    @Test("change-log feed: writers change the source while the backfill copies and the stream applies; the target ends equal", arguments: [false, true])
    func changeLogFeed(kill: Bool) throws {
        let pg = try TestPostgres.sharedCluster()
        let kafka = try TestKafka()
        let (source, target, src, tgt) = try backfillDatabases(pg)
        try src.execute(accountsDDL)
        try tgt.execute(accountsDDL)
        try populateAccounts(src, rows: 3_000)
        // Captured from now on: the stream never carries the rows that were there before.
        try SourceChangeLog.install(on: src, tables: [TableName(parsing: "public.accounts")])
        try kafka.createTopic("live", partitions: 3)
        let common = ["--brokers", kafka.brokers, "--source", source, "--target", target, "--kafka-property", "log_level=3"] + kafka.clientFlags
        let applier = try CDCRProcess.start(["run", "--topic", "live", "--group", "g", "--no-gap-fill"] + common)
        let relay = try CDCRProcess.start(["relay", "--topic", "live", "--interval-ms", "100"] + common)
        let writers = try SourceWriters(source, threads: 2, keys: 3_600, table: "public.accounts")

        let (status, stdout, stderr) = try backfillDuring(source, target, table: "public.accounts", kill: kill)
        writers.finish()
        #expect(status == 0 || status == 2, "\(stderr)")
        let report = try #require(try backfillTables(stdout)["public.accounts"])
        #expect(report["done"] == .bool(true) && report["version_source"]?.stringValue == "change-log")
        #expect(report["resumed"] == .bool(kill))
        #expect(writers.statements.load(ordering: .relaxed) > 200, "the writers ran during the backfill")

        let converged = waitUntil(timeout: .seconds(120)) { (try? sameRows(src, tgt, ["public.accounts"])) == 0 }
        relay.signal(SIGTERM)
        applier.signal(SIGTERM)
        _ = relay.wait(timeout: .seconds(20))
        _ = applier.wait(timeout: .seconds(20))
        #expect(converged, "target differs in \((try? sameRows(src, tgt, ["public.accounts"])) ?? -1) rows; backfill: \(stdout)")
        #expect(try Expect.count(tgt, "SELECT count(*) FROM public.accounts") == Expect.count(src, "SELECT count(*) FROM public.accounts"))
    }

    @Test("Debezium feed with lsn versions: the same, the events produced from the writers' changes", arguments: [false, true])
    func debeziumFeed(kill: Bool) throws {
        let pg = try TestPostgres.sharedCluster()
        let kafka = try TestKafka()
        let (source, target, src, tgt) = try backfillDatabases(pg)
        try src.execute(accountsDDL)
        try tgt.execute(accountsDDL)
        try populateAccounts(src, rows: 3_000)
        try kafka.createTopic("dbz", partitions: 3)
        let common = ["--brokers", kafka.brokers, "--target", target, "--kafka-property", "log_level=3"] + kafka.clientFlags
        let applier = try CDCRProcess.start(["run", "--topic", "dbz", "--group", "g", "--no-gap-fill"] + common)
        let outbox = Mutex<[OutgoingMessage]>([])
        let writers = try SourceWriters(source, threads: 2, keys: 3_600, table: "public.accounts") { changes in
            outbox.withLock { $0 += changes.map { $0.debezium(topic: "dbz", table: "accounts") } }
        }
        let flush = { let batch = outbox.withLock { o in defer { o = [] }; return o }; if !batch.isEmpty { try kafka.send(batch) } }

        let (status, stdout, stderr) = try backfillDuring(source, target, table: "public.accounts", kill: kill, tick: flush)
        writers.finish()
        try flush()
        #expect(status == 0 || status == 2, "\(stderr)")
        let report = try #require(try backfillTables(stdout)["public.accounts"])
        #expect(report["done"] == .bool(true) && report["version_source"]?.stringValue == "lsn")
        #expect(writers.statements.load(ordering: .relaxed) > 200, "the writers ran during the backfill")

        let converged = waitUntil(timeout: .seconds(120)) { (try? sameRows(src, tgt, ["public.accounts"])) == 0 }
        applier.signal(SIGTERM)
        _ = applier.wait(timeout: .seconds(20))
        #expect(converged, "target differs in \((try? sameRows(src, tgt, ["public.accounts"])) ?? -1) rows; backfill: \(stdout)")
    }

    @Test("the watermark waits for a running transaction that holds the newest transaction id (no newer one has completed)")
    func watermarkWaitsForNewestTransaction() throws {
        let pg = try TestPostgres.sharedCluster()
        let source = try pg.createDatabase("src")
        let open = try PGConnection.connect(source), reader = try PGConnection.connect(source)
        try open.execute("BEGIN")
        try open.query("SELECT pg_current_xact_id()")  // holds an id, as any writer does
        // pg_snapshot_xmax would be one past the newest *completed* id here, which this transaction's
        // id is not below: a wait keyed on it would not wait.
        let mark = try Watermark.read(.lsn, on: reader)
        #expect(mark.version == mark.read - 1)
        #expect(throws: BackfillError.self) { try mark.waitForOlderTransactions(on: reader, timeout: .milliseconds(800)) }
        try open.execute("COMMIT")
        try mark.waitForOlderTransactions(on: reader, timeout: .seconds(30))
    }

    @Test("an open transaction of another database of the source's cluster (the target's, say) does not hold the watermark back")
    func watermarkIgnoresOtherDatabases() throws {
        let pg = try TestPostgres.sharedCluster()
        let source = try pg.createDatabase("src"), other = try pg.createDatabase("other")
        let elsewhere = try PGConnection.connect(other), here = try PGConnection.connect(source), reader = try PGConnection.connect(source)
        defer { for c in [elsewhere, here, reader] { c.close() } }
        try elsewhere.execute("BEGIN")
        try elsewhere.query("SELECT pg_current_xact_id()")  // older than the watermark's id, in another database
        let mark = try Watermark.read(.lsn, on: reader)
        try mark.waitForOlderTransactions(on: reader, timeout: .seconds(5))  // the cluster-wide horizon would wait
        // One of the source database started before the watermark is still waited for.
        try here.execute("BEGIN")
        try here.query("SELECT pg_current_xact_id()")
        let second = try Watermark.read(.lsn, on: reader)
        #expect(throws: BackfillError.self) { try second.waitForOlderTransactions(on: reader, timeout: .milliseconds(800)) }
        try here.execute("COMMIT")
        try second.waitForOlderTransactions(on: reader, timeout: .seconds(30))
        try elsewhere.execute("COMMIT")
    }

    @Test("a transaction open across the chunk's snapshot: the chunk waits for it, its change is in the copy, the stream's copy of it is stale")
    func transactionOpenAcrossSnapshot() throws {
        let pg = try TestPostgres.sharedCluster()
        let kafka = try TestKafka()
        let (source, target, src, tgt) = try backfillDatabases(pg)
        try populateOrders(src, rows: 200)
        try SourceChangeLog.install(on: src, tables: [TableName(parsing: "public.orders")])
        let open = try PGConnection.connect(source)
        try open.execute("BEGIN")
        try open.query("UPDATE public.orders SET status = 'from-T' WHERE id = 50")  // draws its change_id now

        let bf = try CDCRProcess.start(["backfill", "--source", source, "--target", target, "--table", "public.orders", "--json"])
        Thread.sleep(forTimeInterval: 1.5)
        #expect(!bf.hasExited, "the chunk waits for the open transaction")
        #expect(try Expect.count(tgt, "SELECT count(*) FROM public.orders") == 0)
        try open.execute("COMMIT")
        #expect(bf.wait(timeout: .seconds(60)) == 0, "\(bf.stderr)")
        #expect(try tgt.query("SELECT status FROM public.orders WHERE id = 50").scalar == "from-T")

        try src.query("UPDATE public.orders SET status = 'after' WHERE id = 51")
        try kafka.createTopic("live", partitions: 1)
        let common = ["--brokers", kafka.brokers, "--source", source, "--target", target, "--kafka-property", "log_level=3"] + kafka.clientFlags
        try relayUntil(published: 2, kafka: kafka, topic: "live", partitions: 1, common)
        let run = try CDCRProcess.run(["run", "--topic", "live", "--group", "g", "--stop-when-caught-up", "--no-gap-fill"] + common)
        #expect(run.status == 0, "\(run.stderr)")
        let summary = try runSummary(run.stdout)
        #expect(summary["stale"]?.int64Value == 1, "T's change is older than the copy that holds it: \(run.stdout)")
        #expect(summary["applied"]?.int64Value == 1)
        #expect(try sameRows(src, tgt, ["public.orders"]) == 0)
    }

    @Test("late changes older than the copy stay stale; a row deleted after its chunk was copied does not survive; a tombstone is not resurrected")
    func lateAndDeleted() throws {
        let pg = try TestPostgres.sharedCluster()
        let kafka = try TestKafka()
        let (source, target, src, tgt) = try backfillDatabases(pg)
        try populateOrders(src, rows: 300)
        try SourceChangeLog.install(on: src, tables: [TableName(parsing: "public.orders")])
        for i in 1...10 { try src.query("UPDATE public.orders SET status = $1 WHERE id = 10", ["early \(i)"]) }  // before the copy: change_ids 1…10
        try tgt.execute("INSERT INTO public.orders (id, status) VALUES (5000, 'only in the target')")

        let bf = try backfill(source, target, ["--table", "public.orders", "--chunk-rows", "40"])
        #expect(bf.status == 0, "\(bf.stderr)")
        #expect(try tgt.query("SELECT status FROM public.orders WHERE id = 10").scalar == "early 10")
        #expect(try Expect.count(tgt, "SELECT count(*) FROM public.orders WHERE id = 5000") == 0)

        try src.query("DELETE FROM public.orders WHERE id = 20")  // after its chunk was copied
        try src.query("UPDATE public.orders SET status = 'later' WHERE id = 30")
        try kafka.createTopic("live", partitions: 1)
        let common = ["--brokers", kafka.brokers, "--source", source, "--target", target, "--kafka-property", "log_level=3"] + kafka.clientFlags
        try relayUntil(published: 12, kafka: kafka, topic: "live", partitions: 1, common)
        // Late arrivals older than the copy (its version is 10): an insert of the tombstoned row and an update.
        let late = [
            #"{"change_id":"late-1","table":"public.orders","operation":"INSERT","key":{"id":5000},"data":{"id":5000,"status":"zombie"},"version":3}"#,
            #"{"change_id":"late-2","table":"public.orders","operation":"UPDATE","key":{"id":40},"data":{"id":40,"status":"late"},"version":5}"#,
        ]
        try kafka.send(late.map { OutgoingMessage(topic: "live", partition: 0, key: nil, value: Array($0.utf8)) })
        let run = try CDCRProcess.run(["run", "--topic", "live", "--group", "g", "--stop-when-caught-up", "--no-gap-fill"] + common)
        #expect(run.status == 0, "\(run.stderr)")
        let summary = try runSummary(run.stdout)
        #expect(summary["stale"]?.int64Value == 12, "id 10's early changes and both late ones: \(run.stdout)")
        #expect(summary["applied"]?.int64Value == 2, "the delete of 20 and the update of 30")
        #expect(try Expect.count(tgt, "SELECT count(*) FROM public.orders WHERE id IN (20, 5000)") == 0)
        #expect(try tgt.query("SELECT status FROM public.orders WHERE id = 40").scalar != "late")
        #expect(try sameRows(src, tgt, ["public.orders"]) == 0)
    }
}
