import CDCCore
import CDCKafka
import CDCPostgres
import CDCR
import Foundation
import Testing

/// The rows of `table` in `conn` as a JSON array, for comparing two databases by value.
func tableRows(_ conn: PGConnection, _ table: String) throws -> JSONValue {
    try JSONParser.parse(try conn.query("SELECT coalesce(jsonb_agg(t), '[]')::text FROM \(TableName(parsing: table).quoted) t").scalar ?? "[]")
}

/// A random workload of single-statement transactions on the fixture tables of `conn`.
func sourceWorkload(_ conn: PGConnection, statements: Int, seed: UInt64) throws {
    var rng = SplitMix64(seed: seed)
    for i in 0..<statements {
        let id = String(rng.next() % 200 + 1)
        switch rng.next() % 10 {
        case 0...3:
            try conn.query("""
                INSERT INTO public.orders (id, customer_id, status, amount, created_at, attrs) VALUES ($1, $2, 'new', $3, now(), '{"n": 1}')
                ON CONFLICT (id) DO UPDATE SET status = 'reinserted', customer_id = EXCLUDED.customer_id
                """, [id, String(i), "\(i % 1000).\(i % 90 + 10)"])
        case 4...7:
            try conn.query("UPDATE public.orders SET status = $2, amount = amount + 1, note = $3 WHERE id = $1", [id, "s\(i % 5)", i % 3 == 0 ? "n\(i)" : nil])
        case 8:
            try conn.query("DELETE FROM public.orders WHERE id = $1", [id])
        default:
            try conn.query("INSERT INTO public.order_items VALUES ($1, $2, 'SKU', 1, 1.50) ON CONFLICT (order_id, line_no) DO UPDATE SET qty = order_items.qty + 1",
                           [id, String(rng.next() % 3 + 1)])
        }
    }
}

/// Runs `relay --once` until `topic` holds `published` messages (60 s at most). One pass publishes
/// the transactions below the source's xmin horizon, which is cluster-wide: suites running in
/// parallel on the shared test cluster can hold it back with their open transactions.
func relayUntil(published: Int, kafka: TestKafka, topic: String, partitions: Int, _ args: [String]) throws {
    let deadline = ContinuousClock.now + .seconds(60)
    while true {
        let relay = try CDCRProcess.run(["relay", "--once", "--topic", topic] + args)
        #expect(relay.status == 0, "\(relay.stderr)")
        let out = try kafka.offsets(group: "nobody", topic: topic, partitions: partitions).end.values.reduce(0, +)
        if out >= Int64(published) || relay.status != 0 || ContinuousClock.now > deadline { return }
        Thread.sleep(forTimeInterval: 0.5)
    }
}

@Suite("gap filler: change log, relay, replay", .serialized)
struct GapFillTests {
    @Test("relay with dropped messages → the target drifts; replay closes the gap; a second replay applies nothing")
    func replayClosesGap() throws {
        let pg = try TestPostgres.sharedCluster()
        let kafka = try TestKafka()
        let source = try pg.createDatabase("src")
        let target = try pg.createDatabase("tgt")
        let common = ["--brokers", kafka.brokers, "--source", source, "--target", target, "--kafka-property", "log_level=3"]
        let install = try CDCRProcess.run(["source", "install", "--tables", "public.orders,order_items"] + common)
        #expect(install.status == 0, "\(install.stderr)")
        // Idempotent.
        #expect(try CDCRProcess.run(["source", "install", "--tables", "public.orders,order_items"] + common).status == 0)

        let src = try PGConnection.connect(source)
        let start = try utcInstant(src, "-1 second")
        try sourceWorkload(src, statements: 1_500, seed: 5)
        let changes = try Expect.count(src, "SELECT count(*) FROM cdcr.change_log")
        #expect(changes > 1_000, "most statements change a row")

        try kafka.createTopic("relayed", partitions: 3)
        try kafka.createTopic("lossy", partitions: 3)
        try relayUntil(published: changes, kafka: kafka, topic: "relayed", partitions: 3, common)
        // The test harness loses a quarter of the messages on the way (not a product feature).
        let relayed = try kafka.read(topic: "relayed", count: changes)
        #expect(relayed.count == changes)
        var rng = SplitMix64(seed: 99)
        let kept = relayed.filter { _ in rng.next() % 4 != 0 }
        try kafka.send(kept.map { OutgoingMessage(topic: "lossy", partition: $0.partition, key: $0.key, value: $0.value) })
        let run = try CDCRProcess.run(["run", "--topic", "lossy", "--group", "g", "--stop-when-caught-up", "--no-gap-fill"] + common)
        #expect(run.status == 0, "\(run.stderr)")

        let tgt = try PGConnection.connect(target)
        let drift = try Expect.differences(tgt, table: "public.orders", expected: try tableRows(src, "public.orders"))
            + Expect.differences(tgt, table: "public.order_items", expected: try tableRows(src, "public.order_items"))
        #expect(drift > 0, "dropping messages made the target differ")

        let end = try utcInstant(src, "1 second")
        let human = ["replay", "--from", start, "--to", end] + common
        let window = human + ["--json"]

        // Dry run: reports, changes nothing.
        let ledgerBefore = ledgerCount(target)
        let dry = try CDCRProcess.run(window + ["--dry-run"])
        #expect(dry.status == 0, "\(dry.stderr)")
        let dryReport = try JSONParser.parse(dry.stdout.trimmingCharacters(in: .whitespacesAndNewlines))
        #expect(dryReport["dry_run"] == .bool(true))
        #expect((dryReport["total"]?["applied_now"]?.int64Value ?? 0) > 0)
        #expect(ledgerCount(target) == ledgerBefore)

        // Small chunks: the replay walks the window in many steps, each read while the last applies.
        let first = try CDCRProcess.run(window, env: ["CDCR_BATCH_MAX_EVENTS": "97"])
        #expect(first.status == 0, "\(first.stderr)")
        let report = try JSONParser.parse(first.stdout.trimmingCharacters(in: .whitespacesAndNewlines))
        let total = try #require(report["total"])
        #expect(total["in_window"]?.int64Value == Int64(changes))
        #expect(total["already_applied"]?.int64Value == Int64(kept.count))
        #expect((total["applied_now"]?.int64Value ?? 0) + (total["stale"]?.int64Value ?? 0) == Int64(changes - kept.count))
        #expect(total["failed"]?.int64Value == 0)
        #expect(report["tables"]?["public.orders"] != nil && report["tables"]?["public.order_items"] != nil)

        #expect(try Expect.differences(tgt, table: "public.orders", expected: try tableRows(src, "public.orders")) == 0)
        #expect(try Expect.differences(tgt, table: "public.order_items", expected: try tableRows(src, "public.order_items")) == 0)

        let second = try CDCRProcess.run(window)
        let again = try JSONParser.parse(second.stdout.trimmingCharacters(in: .whitespacesAndNewlines))
        #expect(again["total"]?["applied_now"]?.int64Value == 0)
        #expect(again["total"]?["already_applied"]?.int64Value == Int64(changes))

        // Human output: a table with a total line.
        let table = try CDCRProcess.run(human)
        #expect(table.stdout.contains("already applied") && table.stdout.contains("total"), "\(table.stdout)")

        #expect(try CDCRProcess.run(["source", "uninstall"] + common).status == 0)
        #expect(try Expect.count(src, "SELECT count(*) FROM pg_trigger WHERE tgname = 'cdcr_capture'") == 0)
    }

    @Test("a window older than the ledger retention is refused with a reason")
    func retentionRefusal() throws {
        let pg = try TestPostgres.sharedCluster()
        let source = try pg.createDatabase("src")
        let target = try pg.createDatabase("tgt")
        let r = try CDCRProcess.run(["replay", "--from", "2020-01-01T00:00:00Z", "--to", "2020-01-02T00:00:00Z",
                                     "--source", source, "--target", target])
        #expect(r.status == 1)
        #expect(r.stderr.contains("retention") && r.stderr.contains("cdcr verify"))
        let bad = try CDCRProcess.run(["replay", "--from", "yesterday", "--to", "2020-01-02T00:00:00Z", "--source", source, "--target", target])
        #expect(bad.status != 0 && bad.stderr.contains("--from"))
    }

    @Test("relay waits for a transaction that committed late, and then publishes it")
    func relayLateCommit() throws {
        let pg = try TestPostgres.sharedCluster()
        let kafka = try TestKafka()
        let source = try pg.createDatabase("src")
        let common = ["--brokers", kafka.brokers, "--source", source, "--topic", "late", "--kafka-property", "log_level=3"]
        try kafka.createTopic("late")
        #expect(try CDCRProcess.run(["source", "install", "--tables", "public.orders"] + common).status == 0)
        let longTx = try PGConnection.connect(source)
        let other = try PGConnection.connect(source)
        try longTx.execute("BEGIN")
        try longTx.query("INSERT INTO public.orders (id, status) VALUES (1, 'long')")  // draws the smaller change_id
        try other.query("INSERT INTO public.orders (id, status) VALUES (2, 'quick')")   // commits first
        #expect(try CDCRProcess.run(["relay", "--once"] + common).status == 0)
        try longTx.execute("COMMIT")
        try relayUntil(published: 2, kafka: kafka, topic: "late", partitions: 1, common)
        let messages = try kafka.read(topic: "late", count: 2, timeout: .seconds(15))
        let ids = Set(messages.compactMap { m in m.value.flatMap { try? JSONParser.parse(bytes: $0) }?["key"]?["id"]?.int64Value })
        #expect(ids == [1, 2], "the late-committed change was not skipped")
    }

    @Test("a change-log window is walked in change_id order, every match once, chunk after chunk")
    func windowWalk() throws {
        let pg = try TestPostgres.sharedCluster()
        let (_, _, src) = try pg.sourceAndTarget(capturing: ["public.orders", "public.order_items"])
        try sourceWorkload(src, statements: 300, seed: 3)
        let filter = "table_name = $1"  // the other table's changes interleave with the matches
        let expected = try src.query("SELECT change_id FROM cdcr.change_log WHERE table_name = 'public.orders' ORDER BY change_id").rows.map { Int64($0[0]!)! }
        #expect(expected.count > 50)
        let window = try SourceChangeLog.Window(on: src, filter: filter, params: ["public.orders"])
        #expect(window.count == expected.count)
        var walked: [Int64] = []
        var last = window.start
        while case let chunk = try window.chunk(after: last, limit: 7, on: src), let tail = chunk.last {
            #expect(chunk.count <= 7 && chunk.allSatisfy { $0.table == "public.orders" })
            walked += chunk.map(\.changeID)
            last = tail.changeID
        }
        #expect(walked == expected)
        let empty = try SourceChangeLog.Window(on: src, filter: filter, params: ["public.nothing"])
        #expect(empty.count == 0)
        #expect(try empty.chunk(after: empty.start, limit: 7, on: src).isEmpty)
    }

    @Test("the change log is pruned past its retention, never ahead of a relay")
    func changeLogPrune() throws {
        let pg = try TestPostgres.sharedCluster()
        let (source, _, src) = try pg.sourceAndTarget(capturing: ["public.orders"])
        for id in 1...30 { try src.query("INSERT INTO public.orders (id, status) VALUES ($1, 'x')", [String(id)]) }  // one transaction each
        let ids = try src.query("SELECT change_id, txid FROM cdcr.change_log ORDER BY change_id").rows.map { (Int64($0[0]!)!, $0[1]!) }
        try #require(ids.count == 30)
        try src.query("UPDATE cdcr.change_log SET committed_at = now() - interval '10 days' WHERE change_id <= $1", [String(ids[19].0)])
        // A relay has published the transactions below the 11th change's: only those may go.
        try src.query("INSERT INTO cdcr.relay_position (topic, txid_horizon) VALUES ('t', $1)", [ids[10].1])

        let run = try CDCRProcess.run(["source", "prune", "--source", source])
        #expect(run.status == 0 && run.stdout.contains("pruned 10 change-log rows older than 7 days"), "\(run.stdout)\(run.stderr)")
        #expect(try src.query("SELECT min(change_id) FROM cdcr.change_log").scalar == String(ids[10].0))
        // No relay any more: the rest of the old rows go too, in chunks; the recent ones stay.
        try src.query("DELETE FROM cdcr.relay_position")
        #expect(try SourceChangeLog.prune(on: src, olderThanDays: 7, chunk: 3) == 10)
        #expect(try Expect.count(src, "SELECT count(*) FROM cdcr.change_log") == 10)
        // A retention shorter than the ledger's would starve replays: refused, naming the setting.
        let short = try CDCRProcess.run(["source", "prune", "--source", source], env: ["CDCR_CHANGE_LOG_RETENTION_DAYS": "3"])
        #expect(short.status != 0 && short.stderr.contains("change_log_retention_days"), "\(short.stderr)")
    }

    @Test("change_id grows in commit order for each row, under concurrent writers")
    func changeIDOrderUnderConcurrency() throws {
        let pg = try TestPostgres.sharedCluster()
        let source = try pg.createDatabase("src")
        let setup = try PGConnection.connect(source)
        try SourceChangeLog.install(on: setup, tables: [TableName(parsing: "public.orders")])
        try setup.execute("INSERT INTO public.orders (id, customer_id) SELECT g, 0 FROM generate_series(1, 5) g")
        let urls = [source, source, source]
        let group = DispatchGroup()
        for (w, url) in urls.enumerated() {
            group.enter()
            Thread.detachNewThread {
                defer { group.leave() }
                guard let c = try? PGConnection.connect(url) else { return }
                var rng = SplitMix64(seed: UInt64(w + 1))
                for i in 0..<150 {
                    let id = String(rng.next() % 5 + 1)
                    // Each writer bumps the row inside a transaction that lingers, so writers queue on the row lock.
                    _ = try? c.execute("BEGIN")
                    _ = try? c.query("UPDATE public.orders SET customer_id = customer_id + 1, status = $2 WHERE id = $1", [id, "w\(w)-\(i)"])
                    if i % 7 == 0 { usleep(2_000) }
                    _ = try? c.execute("COMMIT")
                }
            }
        }
        group.wait()
        // The newest change_id of each row carries the row's final state; and along change_id the
        // counter only ever increases by one, i.e. change_id order is the row's commit order.
        let rows = try setup.query("""
            SELECT (key->>'id')::int, array_agg((data->>'customer_id')::int ORDER BY change_id)
            FROM cdcr.change_log WHERE operation = 'UPDATE' GROUP BY 1
            """)
        #expect(rows.count == 5)
        for r in rows.rows {
            let seq = (r[1] ?? "{}").dropFirst().dropLast().split(separator: ",").compactMap { Int($0) }
            #expect(seq == Array(1...seq.count), "row \(r[0]!): counter values in change_id order \(seq.prefix(20))…")
        }
    }
}

/// Publishes change-log rows after `after` to `topic`, dropping some on the way (test harness).
func publishLossy(_ src: PGConnection, kafka: TestKafka, topic: String, after: Int64, keepOneIn4: inout SplitMix64) throws -> (last: Int64, dropped: Int) {
    let rows = try src.query("SELECT \(SourceChangeLog.columns) FROM cdcr.change_log WHERE change_id > $1 ORDER BY change_id", [String(after)])
    let entries = SourceChangeLog.entries(rows)
    var dropped = 0
    var out: [OutgoingMessage] = []
    for e in entries {
        if keepOneIn4.next() % 4 == 0 { dropped += 1; continue }
        out.append(OutgoingMessage(topic: topic, key: Array(e.key.utf8), value: Array(e.nativeJSON.utf8)))
    }
    try kafka.send(out)
    return (entries.last?.changeID ?? after, dropped)
}

@Suite("scheduled gap filling inside cdcr run", .serialized)
struct ScheduledGapFillTests {
    @Test("drops are caught within interval + settle while the stream keeps flowing")
    func catchesDrops() throws {
        let pg = try TestPostgres.sharedCluster()
        let kafka = try TestKafka()
        let (source, target, src) = try pg.sourceAndTarget(capturing: ["public.orders", "public.order_items"])
        try kafka.createTopic("flow", partitions: 2)
        let applier = try CDCRProcess.start(["run", "--brokers", kafka.brokers, "--topic", "flow", "--group", "flow", "--source", source,
                                             "--target", target, "--gap-fill-interval", "2", "--gap-fill-window", "30",
                                             "--gap-fill-settle", "1", "--kafka-property", "log_level=3"])
        var rng = SplitMix64(seed: 3)
        var last: Int64 = 0
        var dropped = 0
        for round in 0..<6 {
            try sourceWorkload(src, statements: 150, seed: UInt64(round + 100))
            let r = try publishLossy(src, kafka: kafka, topic: "flow", after: last, keepOneIn4: &rng)
            last = r.last
            dropped += r.dropped
            usleep(500_000)
        }
        #expect(dropped > 0)
        let tgt = try PGConnection.connect(target)
        // interval (2 s) + settle (1 s) + a pass's own time, with margin for a loaded machine.
        let converged = waitUntil(timeout: .seconds(30)) {
            (try? Expect.differences(tgt, table: "public.orders", expected: try tableRows(src, "public.orders"))) == 0
                && (try? Expect.differences(tgt, table: "public.order_items", expected: try tableRows(src, "public.order_items"))) == 0
        }
        applier.signal(SIGTERM)
        #expect(applier.wait(timeout: .seconds(30)) == 0)
        #expect(converged, "\(applier.stderr.suffix(3000))")
        #expect(applier.stderr.contains("gap filler applied changes the stream had missed"))
        // The last covered window is remembered in the target.
        #expect(try Expect.count(tgt, "SELECT count(*) FROM cdcr.gap_fill_state WHERE window_end > window_start") == 1)
        #expect(ledgerCount(target) == Int(try Expect.count(src, "SELECT count(*) FROM cdcr.change_log")))
    }

    @Test("a change whose transaction commits after its window was scanned is still replayed")
    func lateCommit() throws {
        let pg = try TestPostgres.sharedCluster()
        let kafka = try TestKafka()
        let (source, target, src) = try pg.sourceAndTarget(capturing: ["public.orders"])
        try kafka.createTopic("quiet")
        // A change older than the retention: the gap filler prunes it after its first pass.
        try src.query("""
            INSERT INTO cdcr.change_log (table_name, operation, key, data, committed_at)
            VALUES ('public.orders', 'INSERT', '{"id": 5}', '{"id": 5}', now() - interval '30 days')
            """)
        let applier = try CDCRProcess.start(["run", "--brokers", kafka.brokers, "--topic", "quiet", "--group", "quiet", "--source", source,
                                             "--target", target, "--gap-fill-interval", "1", "--gap-fill-window", "2",
                                             "--gap-fill-settle", "1", "--kafka-property", "log_level=3"])
        let longTx = try PGConnection.connect(source)
        try longTx.execute("BEGIN")
        try longTx.query("INSERT INTO public.orders (id, status) VALUES (999, 'written early, committed late')")
        sleep(6)  // several passes scan (and pass) the window holding this write while it is invisible
        try src.query("INSERT INTO public.orders (id, status) VALUES (1000, 'meanwhile')")
        try longTx.execute("COMMIT")
        let tgt = try PGConnection.connect(target)
        let found = waitUntil(timeout: .seconds(20)) { (try? Expect.count(tgt, "SELECT count(*) FROM public.orders WHERE id IN (999, 1000)")) == 2 }
        applier.signal(SIGTERM)
        #expect(applier.wait(timeout: .seconds(30)) == 0)
        #expect(found, "\(applier.stderr.suffix(3000))")
        #expect(try Expect.count(src, "SELECT count(*) FROM cdcr.change_log WHERE key->>'id' = '5'") == 0, "\(applier.stderr.suffix(3000))")
        #expect(applier.stderr.contains("pruned the source change log"))
        #expect(try Expect.count(src, "SELECT count(*) FROM cdcr.change_log WHERE key->>'id' = '999' AND committed_at < now() - interval '5 seconds'") == 1,
                "the change's committed_at is its write time, long before the commit")
    }
}

@Suite("replay failures")
struct ReplayFailureTests {
    @Test("a change the target refuses is dead-lettered and replay exits 2; the rest applies")
    func failedChangesExit2() throws {
        let pg = try TestPostgres.sharedCluster()
        let kafka = try TestKafka()
        let (source, target, src) = try pg.sourceAndTarget(capturing: ["public.orders"])
        try src.query("INSERT INTO public.orders (id, status, amount) VALUES (1, 'ok', 1.00), (2, 'ok', 2.00)")
        // A dual-writing application broke the contract: its amount is not a number.
        try src.query("""
            INSERT INTO cdcr.change_log (table_name, operation, key, data)
            VALUES ('public.orders', 'INSERT', '{"id": 3}', '{"id": 3, "status": "bad", "amount": "abc"}')
            """)
        let now = [try utcInstant(src, "-1 minute"), try utcInstant(src, "1 minute")]
        let ok = try CDCRProcess.run(["replay", "--from", now[0], "--to", now[1], "--json", "--source", source, "--target", target,
                                      "--brokers", kafka.brokers, "--topic", "cdc", "--kafka-property", "log_level=3"])
        #expect(ok.status == 2, "\(ok.stderr)")
        let report = try JSONParser.parse(ok.stdout.trimmingCharacters(in: .whitespacesAndNewlines))
        #expect(report["total"]?["applied_now"]?.int64Value == 2)
        #expect(report["total"]?["failed"]?.int64Value == 1)
        let tgt = try PGConnection.connect(target)
        #expect(try Expect.count(tgt, "SELECT count(*) FROM public.orders") == 2)
        let dead = try kafka.read(topic: "cdc.dlq", count: 1, timeout: .seconds(15))
        #expect(dead.count == 1)
        #expect(dead.first?.header(DeadLetterWriter.Header.reason) == "invalid_value")
        #expect(dead.first?.header(DeadLetterWriter.Header.topic) == "cdcr.change_log")
    }
}
