import CDCCore
import CDCKafka
import CDCPostgres
import Foundation
import Testing

@Suite("convergence under duplicates, replays and crashes")
struct ConvergenceTests {
    @Test("random workload with duplicates, reordered replays and a killed applier converges exactly", arguments: BrokerKind.allCases)
    func randomizedConvergence(_ broker: BrokerKind) throws {
        let seed = UInt64.random(in: 0...UInt64.max)
        let pg = try TestPostgres.sharedCluster()
        let kafka = try TestKafka(broker)
        let target = try pg.createDatabase()
        let topic = "conv", partitions = 3
        try kafka.createTopic(topic, partitions: partitions)
        let w = Workload(changes: 4_000, keys: 400, seed: seed)

        // Delivery: every change, 10 % sent twice, and after every 500 a shuffled replay of an earlier range.
        var rng = SplitMix64(seed: seed ^ 0xABCD)
        var deliveries: [OutgoingMessage] = []
        for (i, c) in w.changes.enumerated() {
            deliveries.append(w.message(c, topic: topic, partitions: partitions))
            if rng.next() % 10 == 0 { deliveries.append(w.message(c, topic: topic, partitions: partitions)) }
            if i > 0 && i % 500 == 0 {
                let start = Int(rng.next() % UInt64(i - 100))
                var replay = Array(w.changes[start..<(start + 100)])
                replay.shuffle(using: &rng)
                deliveries += replay.map { w.message($0, topic: topic, partitions: partitions) }
            }
        }
        try kafka.send(deliveries)

        // First applier: killed with SIGKILL part-way through.
        let args = ["run", "--brokers", kafka.brokers, "--topic", topic, "--group", "conv", "--target", target,
                    "--batch-max-events", "150", "--kafka-property", "log_level=3",
                    "--kafka-property", "session.timeout.ms=6000", "--kafka-property", "heartbeat.interval.ms=500"] + kafka.clientFlags
        let first = try CDCRProcess.start(args)
        let progressed = waitUntil(timeout: .seconds(90)) { ledgerCount(target) > 1_000 || first.hasExited }
        first.signal(SIGKILL)
        first.wait()
        #expect(progressed, "seed \(seed): the first applier made no progress: \(first.stderr.suffix(2000))")
        #expect(ledgerCount(target) < 4_000, "seed \(seed): killed before the end, so the restart has work to do")

        // Restarted applier finishes the stream.
        let second = try CDCRProcess.run(args + ["--stop-when-caught-up"], timeout: .seconds(180))
        #expect(second.status == 0, "seed \(seed): \(second.stderr.suffix(2000))")

        let conn = try PGConnection.connect(target)
        #expect(try Expect.differences(conn, table: "public.orders", expected: w.expectedRows) == 0, "seed \(seed)")
        // Each change ID in the ledger exactly once (its primary key), and all of them there.
        #expect(try Expect.count(conn, "SELECT count(*) FROM cdcr.ledger") == 4_000, "seed \(seed)")
        #expect(try Expect.count(conn, "SELECT count(DISTINCT change_id) FROM cdcr.ledger") == 4_000)
        let offsets = try kafka.offsets(group: "conv", topic: topic, partitions: partitions)
        #expect(offsets.committed == offsets.end, "seed \(seed): committed offsets equal end offsets after catch-up")
    }

    @Test("two appliers on overlapping feeds at once (dual writes): every change claimed by exactly one, the target exact")
    func concurrentAppliers() throws {
        let seed = UInt64.random(in: 0...UInt64.max)
        let pg = try TestPostgres.sharedCluster()
        let kafka = try TestKafka()
        let target = try pg.createDatabase()
        // Few keys, small batches: the two appliers' transactions contend for the same rows all along.
        let w = Workload(changes: 3_000, keys: 40, seed: seed)
        try kafka.createTopic("feed-a", partitions: 3)
        try kafka.createTopic("feed-b", partitions: 2)
        var rng = SplitMix64(seed: seed ^ 0x5EED)
        // Feed A: every change in order, 10 % twice. Feed B: every change, in shuffled blocks of 200.
        var a: [OutgoingMessage] = []
        for c in w.changes {
            a.append(w.message(c, topic: "feed-a", partitions: 3))
            if rng.next() % 10 == 0 { a.append(w.message(c, topic: "feed-a", partitions: 3)) }
        }
        var b: [OutgoingMessage] = []
        for start in stride(from: 0, to: w.changes.count, by: 200) {
            var block = Array(w.changes[start..<min(start + 200, w.changes.count)])
            block.shuffle(using: &rng)
            b += block.map { w.message($0, topic: "feed-b", partitions: 2) }
        }
        try kafka.send(a)
        try kafka.send(b)

        func applier(_ topic: String) throws -> ChildProcess {
            try CDCRProcess.start(["run", "--brokers", kafka.brokers, "--topic", topic, "--group", topic, "--target", target,
                                   "--batch-max-events", "50", "--stop-when-caught-up", "--no-gap-fill", "--kafka-property", "log_level=3"])
        }
        let (pa, pb) = (try applier("feed-a"), try applier("feed-b"))
        let (sa, sb) = (pa.wait(timeout: .seconds(180)), pb.wait(timeout: .seconds(180)))
        #expect(sa == 0 && sb == 0, "seed \(seed): \(pa.stderr.suffix(1500)) \(pb.stderr.suffix(1500))")

        // Each change ID is claimed (applied or stale) by exactly one applier; the other counts it a duplicate.
        let (ca, cb) = (try runSummary(pa.stdout), try runSummary(pb.stdout))
        func both(_ outcome: String) -> Int64 { (ca[outcome]?.int64Value ?? 0) + (cb[outcome]?.int64Value ?? 0) }
        #expect(both("applied") + both("stale") == 3_000, "seed \(seed): \(pa.stdout) \(pb.stdout)")
        #expect(both("duplicate") == Int64(a.count + b.count - 3_000), "seed \(seed): \(pa.stdout) \(pb.stdout)")
        #expect(both("dead_lettered") == 0)

        let conn = try PGConnection.connect(target)
        #expect(try Expect.differences(conn, table: "public.orders", expected: w.expectedRows) == 0, "seed \(seed)")
        #expect(try Expect.count(conn, "SELECT count(*) FROM cdcr.ledger") == 3_000, "seed \(seed)")
        // The guard remembers each key's newest version, deletes included.
        let newest = Dictionary(w.changes.map { ($0.key, $0.id) }, uniquingKeysWith: max)
        for (key, version) in newest {
            #expect(try Expect.count(conn, "SELECT version FROM cdcr.row_versions WHERE table_name = 'public.orders' AND row_key = $1", [String(key)]) == version, "seed \(seed): key \(key)")
        }
    }
}

@Suite("failures of the target and shutdown", .serialized)
struct FailureTests {
    @Test("PostgreSQL restarted mid-run: the applier waits it out and loses nothing")
    func postgresRestart() throws {
        let pg = try TestPostgres()  // its own cluster: this test crashes it
        let kafka = try TestKafka()
        let target = try pg.createDatabase()
        try kafka.createTopic("pgr", partitions: 2)
        let w = Workload(changes: 1_200, keys: 150, seed: 42)
        let messages = w.changes.map { w.message($0, topic: "pgr", partitions: 2) }

        let applier = try CDCRProcess.start(["run", "--brokers", kafka.brokers, "--topic", "pgr", "--group", "pgr", "--target", target,
                                             "--batch-max-events", "100", "--kafka-property", "log_level=3"])
        try kafka.send(Array(messages[0..<400]))
        #expect(waitUntil { ledgerCount(target) == 400 })
        pg.crash()
        try kafka.send(Array(messages[400..<800]))
        sleep(3)  // the applier meets the outage and retries
        try pg.start()
        try kafka.send(Array(messages[800...]))
        let done = waitUntil(timeout: .seconds(120)) { ledgerCount(target) == 1_200 }
        applier.signal(SIGTERM)
        let status = applier.wait(timeout: .seconds(30))
        #expect(done, "\(applier.stderr.suffix(3000))")
        #expect(status == 0)
        #expect(applier.stderr.contains("retrying"), "the outage was seen and retried")
        let conn = try PGConnection.connect(target)
        #expect(try Expect.differences(conn, table: "public.orders", expected: w.expectedRows) == 0)
        let offsets = try kafka.offsets(group: "pgr", topic: "pgr", partitions: 2)
        #expect(offsets.committed == offsets.end)
    }

    @Test("SIGTERM mid-batch: the batch in the database and the one being filled are applied and committed, then exit 0")
    func sigtermMidBatch() throws {
        let pg = try TestPostgres.sharedCluster()
        let kafka = try TestKafka()
        let target = try pg.createDatabase()
        try kafka.createTopic("term")
        let w = Workload(changes: 500, keys: 100, seed: 7)
        let messages = w.changes.map { w.message($0, topic: "term", partitions: 1) }
        // A batch goes to a free database at once, and the next fills while it is there: hold the
        // first one in the database (the table is locked) so the rest sit in the batch being filled
        // when SIGTERM arrives.
        let applier = try CDCRProcess.start(["run", "--brokers", kafka.brokers, "--topic", "term", "--group", "term", "--target", target,
                                             "--batch-max-events", "100000", "--batch-max-wait-ms", "60000", "--kafka-property", "log_level=3"])
        #expect(waitUntil(timeout: .seconds(30)) { applier.stderr.contains("partitions assigned") }, "joined the group")
        let lock = try PGConnection.connect(target)
        defer { lock.close() }
        try lock.execute("BEGIN; LOCK TABLE public.orders IN ACCESS EXCLUSIVE MODE")
        try kafka.send([messages[0]])
        #expect(waitUntil(timeout: .seconds(10)) {
            (try? Expect.count(lock, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'")) == 1
        }, "the first batch waits for the lock in the database")
        try kafka.send(Array(messages[1...]))
        sleep(2)
        #expect(ledgerCount(target) == 0, "nothing applied before the lock is released")
        applier.signal(SIGTERM)
        sleep(1)
        try lock.execute("COMMIT")
        #expect(applier.wait(timeout: .seconds(30)) == 0, "\(applier.stderr.suffix(2000))")
        let offsets = try kafka.offsets(group: "term", topic: "term", partitions: 1)
        #expect(ledgerCount(target) == 500)
        #expect(offsets.committed[0] == 500)
    }

    @Test("SIGTERM during a target outage commits nothing that was not applied")
    func sigtermDuringOutage() throws {
        let pg = try TestPostgres()
        let kafka = try TestKafka()
        let target = try pg.createDatabase()
        try kafka.createTopic("out")
        let w = Workload(changes: 600, keys: 100, seed: 9)
        let messages = w.changes.map { w.message($0, topic: "out", partitions: 1) }
        let applier = try CDCRProcess.start(["run", "--brokers", kafka.brokers, "--topic", "out", "--group", "out", "--target", target,
                                             "--batch-max-events", "50", "--kafka-property", "log_level=3"])
        try kafka.send(Array(messages[0..<300]))
        #expect(waitUntil { ledgerCount(target) == 300 })
        pg.crash()
        try kafka.send(Array(messages[300...]))
        sleep(2)
        applier.signal(SIGTERM)
        #expect(applier.wait(timeout: .seconds(30)) == 0)
        try pg.start()
        let offsets = try kafka.offsets(group: "out", topic: "out", partitions: 1)
        let conn = try PGConnection.connect(target)
        // Every committed offset's change is in the ledger; what the outage held back is not committed.
        #expect(offsets.committed[0] == 300)
        #expect(try Expect.count(conn, "SELECT count(*) FROM cdcr.ledger") == 300)
    }
}

@Suite("group membership and broker outages", .serialized)
struct GroupTests {
    @Test("a second applier joining the group: the in-flight batch is finished before hand-over, nothing applies twice", arguments: BrokerKind.allCases)
    func rebalanceHandsOverCleanly(_ broker: BrokerKind) throws {
        let pg = try TestPostgres.sharedCluster()
        let kafka = try TestKafka(broker)
        let target = try pg.createDatabase()
        try kafka.createTopic("reb", partitions: 4)
        let w = Workload(changes: 3_000, keys: 300, seed: 11)
        let messages = w.changes.map { w.message($0, topic: "reb", partitions: 4) }
        let args = ["run", "--brokers", kafka.brokers, "--topic", "reb", "--group", "reb", "--target", target,
                    "--batch-max-events", "100", "--kafka-property", "log_level=3",
                    "--kafka-property", "session.timeout.ms=6000", "--kafka-property", "heartbeat.interval.ms=500"] + kafka.clientFlags
        let first = try CDCRProcess.start(args + ["--stop-when-caught-up"])
        try kafka.send(Array(messages[0..<1_500]))
        #expect(waitUntil { ledgerCount(target) > 200 })
        let second = try CDCRProcess.start(args + ["--stop-when-caught-up"])
        try kafka.send(Array(messages[1_500...]))
        #expect(first.wait(timeout: .seconds(120)) == 0, "\(first.stderr.suffix(2000))")
        #expect(second.wait(timeout: .seconds(120)) == 0, "\(second.stderr.suffix(2000))")
        // Every change ends applied or stale exactly once across both processes. (Apache Kafka and tansu
        // accept the commit made in the revoke handler; librdkafka's mock broker refuses commits while
        // the group rebalances, so there the last batch may be redelivered: it must then be a duplicate,
        // never a second application.)
        let (a, b) = (try runSummary(first.stdout), try runSummary(second.stdout))
        let applied = (a["applied"]?.int64Value ?? 0) + (b["applied"]?.int64Value ?? 0)
        let stale = (a["stale"]?.int64Value ?? 0) + (b["stale"]?.int64Value ?? 0)
        #expect(applied + stale == 3_000)
        if broker == .tansu {
            // tansu, like Apache Kafka, accepts the commit the revoke handler makes before the hand-over,
            // so the new owner starts after the last applied batch: nothing is redelivered.
            let duplicates = (a["duplicate"]?.int64Value ?? 0) + (b["duplicate"]?.int64Value ?? 0)
            #expect(duplicates == 0, "\(first.stdout) \(second.stdout)")
        }
        #expect(ledgerCount(target) == 3_000)
        #expect(first.stderr.contains("partitions revoked; finishing the in-flight batch first"), "a rebalance happened")
        let conn = try PGConnection.connect(target)
        #expect(try Expect.differences(conn, table: "public.orders", expected: w.expectedRows) == 0)
        let offsets = try kafka.offsets(group: "reb", topic: "reb", partitions: 4)
        #expect(offsets.committed == offsets.end)
    }

    @Test("the broker refuses commits and fetches for a while: the applier retries and converges")
    func brokerOutage() throws {
        let pg = try TestPostgres.sharedCluster()
        let kafka = try TestKafka()
        let target = try pg.createDatabase()
        try kafka.createTopic("bo", partitions: 2)
        let w = Workload(changes: 1_000, keys: 100, seed: 13)
        let messages = w.changes.map { w.message($0, topic: "bo", partitions: 2) }
        let applier = try CDCRProcess.start(["run", "--brokers", kafka.brokers, "--topic", "bo", "--group", "bo", "--target", target,
                                             "--batch-max-events", "100", "--kafka-property", "log_level=3"])
        try kafka.send(Array(messages[0..<500]))
        #expect(waitUntil { ledgerCount(target) == 500 })
        // OffsetCommit (8) refused as a coordinator that is away; Fetch (1) timing out.
        kafka.cluster.failNextRequests(apiKey: 8, error: 15, count: 6)  // COORDINATOR_NOT_AVAILABLE
        kafka.cluster.failNextRequests(apiKey: 1, error: 7, count: 6)   // REQUEST_TIMED_OUT
        try kafka.send(Array(messages[500...]))
        let done = waitUntil(timeout: .seconds(90)) { ledgerCount(target) == 1_000 }
        applier.signal(SIGTERM)
        #expect(applier.wait(timeout: .seconds(30)) == 0)
        #expect(done, "\(applier.stderr.suffix(2000))")
        let conn = try PGConnection.connect(target)
        #expect(try Expect.differences(conn, table: "public.orders", expected: w.expectedRows) == 0)
        let offsets = try kafka.offsets(group: "bo", topic: "bo", partitions: 2)
        #expect(offsets.committed == offsets.end)
    }
}
