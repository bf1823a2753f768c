import ArgumentParser
import CDCCore
import CDCKafka
import CDCPostgres
import CDCR
import Foundation
#if canImport(Glibc)
import Glibc
#endif

struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Benchmarks (not tests): print throughput and ratios measured in one run.",
        subcommands: [ApplyBench.self, LatencyBench.self, VerifyBench.self, CheckBench.self, BackfillBench.self]
    )
}

/// `cdcr bench apply`: (a) `cdcr run` end to end over a backlog, (b) the set-based ceiling without
/// Kafka or ledger, (c) the naive one-transaction-per-event design. See docs/ARCHITECTURE.md.
struct ApplyBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "apply",
        abstract: "Measure the applier against the set-based ceiling and the naive design, in one run."
    )

    @Option(help: "Admin libpq URL of a local PostgreSQL; the benchmark creates and drops its own databases.")
    var target: String

    @Option(parsing: .unconditional, help: "Events in (a) and (b).")
    var events = 1_000_000

    @Option(parsing: .unconditional, help: "Distinct keys.")
    var keys = 100_000

    @Option(parsing: .unconditional, help: "Events in the naive sample (c).")
    var naiveSample = 20_000

    static let partitions = 32

    @Option(parsing: .unconditional, help: "Missing changes replayed in (d).")
    var replayChanges = 100_000

    @Option(parsing: .unconditional, help: "Batch size for (a).")
    var batchMaxEvents = 20_000

    func run() throws {
        let workload = BenchWorkload(events: events, keys: keys)
        print("workload: \(events) events over \(keys) keys: \(workload.inserts) inserts, \(workload.updates) updates, \(workload.deletes) deletes")
        let cluster = try MockCluster()
        let admin = try PGConnection.connect(target)
        func freshDB(_ name: String) throws -> String {
            try admin.execute("DROP DATABASE IF EXISTS \(name)")
            try admin.execute("CREATE DATABASE \(name)")
            let url = Self.replaceDatabase(target, with: name)
            let c = try PGConnection.connect(url)
            try c.execute(BenchWorkload.schema)
            c.close()
            return url
        }

        // (a) end to end: backlog in Kafka, then `cdcr run --stop-when-caught-up` as a child process.
        // The mock broker keeps at most 5 MB per partition (librdkafka's rdkafka_mock.c), so the backlog is
        // lz4-compressed and spread over keyed partitions, and checked to be complete before (a) runs.
        let partitions = Self.partitions
        try cluster.createTopic("bench", partitions: partitions)
        let producer = try KafkaProducer(properties: [
            ("bootstrap.servers", cluster.bootstrapServers), ("linger.ms", "50"), ("batch.num.messages", "10000"),
            ("compression.codec", "lz4"), ("log_level", "3"),
        ])
        var sent = 0
        for chunk in workload.chunks(of: 20_000) {
            try producer.send(chunk.map {
                OutgoingMessage(topic: "bench", partition: Int32($0.key % partitions), key: Array("{\"id\":\($0.key)}".utf8), value: Array(workload.nativeJSON($0).utf8))
            })
            sent += chunk.count
        }
        var retained = 0
        for p in 0..<partitions {
            let (low, high) = try producer.watermarks(TopicPartition(topic: "bench", partition: Int32(p)))
            guard low == 0 else { throw ValidationError("the mock broker dropped the start of partition \(p) (low watermark \(low)); lower --events") }
            retained += Int(high)
        }
        guard retained == events else { throw ValidationError("the broker holds \(retained) of \(events) events") }
        try Self.warmWAL(admin, megabytes: max(64, events * 600 / 1_000_000))
        print("(a) backlog of \(sent) events produced; running cdcr run --stop-when-caught-up …")
        let urlA = try freshDB("cdcr_bench_a")
        let self_ = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().path
        let backendsBefore = try Self.exitedBackendsCPU(admin)
        let (status, output, rssKB, cpuA) = try Self.runChild([self_, "run", "--brokers", cluster.bootstrapServers, "--topic", "bench",
                                                         "--group", "bench", "--target", urlA, "--stop-when-caught-up", "--no-admin",
                                                         "--batch-max-events", String(batchMaxEvents)] + (ProcessInfo.processInfo.environment["CDCR_BENCH_KAFKA"].map { ["--kafka-property", $0] } ?? []) + ["--log-level", ProcessInfo.processInfo.environment["CDCR_BENCH_LOG"] ?? "warning"])
        guard status == 0, let line = output.split(separator: "\n").last, let summary = try? JSONParser.parse(String(line)),
              let active = summary["active_seconds"].flatMap({ Double($0.serializedNumber) }) else {
            throw ValidationError("(a) failed with status \(status): \(output)")
        }
        let rateA = Double(events) / active
        print("(a) end to end:      \(fmt(rateA)) events/s  (\(String(format: "%.2f", active)) s active, outcomes \(line))")
        // Where the CPU went (on a small machine (a) is CPU-bound): cdcr's threads, and the PostgreSQL
        // backends that served it (counted when they exit, i.e. when (a) disconnects).
        // A backend exits a moment after its client: wait until (a)'s are gone, and reaped.
        let gone = ContinuousClock.now + .seconds(10)
        while try admin.query("SELECT count(*) FROM pg_stat_activity WHERE datname = 'cdcr_bench_a'").scalar != "0", ContinuousClock.now < gone {
            Thread.sleep(forTimeInterval: 0.05)
        }
        Thread.sleep(forTimeInterval: 0.2)
        if let before = backendsBefore, let after = try Self.exitedBackendsCPU(admin) {
            let perEvent = { (s: Double) in String(format: "%.1f", s / Double(events) * 1e6) }
            print("(a) CPU: cdcr \(String(format: "%.2f", cpuA)) s (\(perEvent(cpuA)) µs/event), PostgreSQL backends \(String(format: "%.2f", after - before)) s (\(perEvent(after - before)) µs/event)")
        }

        // (a)'s result, compared with (b)'s below. Then each measurement starts from a clean server:
        // the earlier one's database is dropped (its autovacuum would share the cores) and the dirty
        // pages it left are written now, not by a checkpoint in the middle of the next measurement.
        let connA = try PGConnection.connect(urlA)
        let countA = try connA.query("SELECT count(*), coalesce(sum(customer_id), 0) FROM public.orders").rows[0]
        connA.close()
        func clean(after db: String) throws {
            try admin.execute("DROP DATABASE IF EXISTS \(db) WITH (FORCE)")
            try admin.execute("CHECKPOINT")
        }
        try clean(after: "cdcr_bench_a")

        // (b) ceiling: COPY the change rows into an unlogged staging table, then set-based SQL.
        let urlB = try freshDB("cdcr_bench_b")
        let b = try PGConnection.connect(urlB)
        try b.execute("CREATE UNLOGGED TABLE staging (seq bigint, op \"char\", id bigint, customer_id bigint, status text, amount numeric(12,2), created_at timestamptz, shipped_on date, note text, attrs jsonb, ext_id uuid, updated_local timestamp)")
        let startB = ContinuousClock.now
        try b.execute("BEGIN")
        for chunk in workload.chunks(of: 100_000) {
            var data: [UInt8] = []
            for e in chunk { CopyText.appendRow(workload.stagingRow(e), to: &data) }
            try b.copyIn("COPY staging FROM STDIN", data: data)
        }
        try b.execute("""
            CREATE TEMP TABLE latest ON COMMIT DROP AS SELECT DISTINCT ON (id) * FROM staging ORDER BY id, seq DESC;
            DELETE FROM public.orders o USING latest l WHERE l.op = 'd' AND o.id = l.id;
            INSERT INTO public.orders SELECT id, customer_id, status, amount, created_at, shipped_on, note, attrs, ext_id, updated_local
              FROM latest WHERE op <> 'd'
              ON CONFLICT (id) DO UPDATE SET customer_id = EXCLUDED.customer_id, status = EXCLUDED.status, amount = EXCLUDED.amount,
                created_at = EXCLUDED.created_at, shipped_on = EXCLUDED.shipped_on, note = EXCLUDED.note, attrs = EXCLUDED.attrs,
                ext_id = EXCLUDED.ext_id, updated_local = EXCLUDED.updated_local;
            COMMIT;
            """)
        let rateB = Double(events) / (ContinuousClock.now - startB).seconds
        print("(b) set-based ceiling: \(fmt(rateB)) events/s")

        // Both must end in the same rows: the benchmark is only meaningful if (a) is correct.
        let countB = try b.query("SELECT count(*), coalesce(sum(customer_id), 0) FROM public.orders").rows[0]
        guard countA == countB, countA[0] == String(workload.liveRows) else {
            throw ValidationError("(a) and (b) disagree: \(countA) vs \(countB), expected \(workload.liveRows) rows")
        }
        b.close()
        try clean(after: "cdcr_bench_b")

        // (c) naive: one transaction and one synchronous offset commit per event.
        let urlC = try freshDB("cdcr_bench_c")
        let rateC = try naive(cluster: cluster, producer: producer, workload: workload, url: urlC)
        print("(c) naive per-event: \(fmt(rateC)) events/s  (\(naiveSample)-event sample)")
        producer.close()
        try clean(after: "cdcr_bench_c")

        // (d) gap filling: `cdcr replay` of changes the target never received, from the source change log.
        let rateD = try replay(workload: workload, freshDB: freshDB, exe: self_)
        print("(d) replay of \(replayChanges) missing changes: \(fmt(rateD)) events/s")

        print("")
        print("ratio (a)/(b) = \(String(format: "%.2f", rateA / rateB))   target ≥ 0.5")
        print("ratio (a)/(c) = \(String(format: "%.1f", rateA / rateC))   target ≥ 20")
        print("ratio (d)/(a) = \(String(format: "%.2f", rateD / rateA))   target ≥ 0.8 (replay vs applier)")
        print("peak RSS of (a) = \(rssKB / 1024) MB with a \(events)-event backlog   target ≤ 300 MB")
        for db in ["cdcr_bench_a", "cdcr_bench_b", "cdcr_bench_c", "cdcr_bench_src", "cdcr_bench_d"] { try admin.execute("DROP DATABASE IF EXISTS \(db)") }
    }

    /// A server that has been up a while reuses its WAL segment files; a new cluster creates and
    /// zero-fills each 16 MB file inside whichever commit first crosses into it (~40 ms: 21 of (a)'s
    /// 50 commits, measured). Writing `megabytes` of WAL first and checkpointing it away leaves that
    /// many recycled segments (the benchmark's cluster keeps them: `min_wal_size`), so every phase
    /// runs as on a warm server.
    static func warmWAL(_ admin: PGConnection, megabytes: Int) throws {
        let started = ContinuousClock.now
        let rows = megabytes * 1_000_000 / 270  // ~270 bytes of WAL per row below
        try admin.execute("DROP TABLE IF EXISTS cdcr_bench_warm_wal")
        try admin.execute("CREATE TABLE cdcr_bench_warm_wal AS SELECT g, repeat('x', 200) AS pad FROM generate_series(1, \(rows)) g")
        try admin.execute("DROP TABLE cdcr_bench_warm_wal")
        // The first checkpoint moves the redo point past the warm-up; the second recycles its files.
        try admin.execute("CHECKPOINT")
        try admin.execute("CHECKPOINT")
        print("warm-up: \(megabytes) MB of WAL written and checkpointed, so its segment files are reused (\(String(format: "%.1f", (ContinuousClock.now - started).seconds)) s)")
    }

    /// Fills a source change log with the workload's first `replayChanges` changes and times
    /// `cdcr replay` over them into an empty target.
    private func replay(workload: BenchWorkload, freshDB: (String) throws -> String, exe: String) throws -> Double {
        let srcURL = try freshDB("cdcr_bench_src")
        let src = try PGConnection.connect(srcURL)
        try SourceChangeLog.install(on: src, tables: [TableName(parsing: "public.orders")])
        let now = Int64(Date().timeIntervalSince1970 * 1_000_000)
        let iso = { (micros: Int64) in CivilTime.timestampString(micros: micros) + "Z" }
        var data: [UInt8] = []
        for e in workload.events.prefix(replayChanges) {
            let json = try JSONParser.parse(workload.nativeJSON(e))
            CopyText.appendRow([String(e.seq), "public.orders", json["operation"]!.stringValue!, json["key"]!.serialized,
                                json["data"]!.isNull ? nil : json["data"]!.serialized, iso(now), "1"], to: &data)
        }
        try src.copyIn("COPY cdcr.change_log (change_id, table_name, operation, key, data, committed_at, txid) FROM STDIN", data: data)
        try src.execute("ANALYZE cdcr.change_log")  // as autovacuum leaves a live log: the planner knows its size
        let tgtURL = try freshDB("cdcr_bench_d")
        try src.execute("CHECKPOINT")  // the source fill's dirty pages are not part of the replay
        let start = ContinuousClock.now
        let (status, output, _, _) = try Self.runChild([exe, "replay", "--source", srcURL, "--target", tgtURL, "--from", iso(now - 3_600_000_000),
                                                     "--to", iso(now + 3_600_000_000), "--json", "--log-level", ProcessInfo.processInfo.environment["CDCR_BENCH_LOG"] ?? "warning"])
        let took = (ContinuousClock.now - start).seconds
        guard status == 0, let report = try? JSONParser.parse(output.trimmingCharacters(in: .whitespacesAndNewlines)),
              report["total"]?["in_window"]?.int64Value == Int64(replayChanges) else {
            throw ValidationError("(d) replay failed with status \(status): \(output)")
        }
        return Double(replayChanges) / took
    }

    private func naive(cluster: MockCluster, producer: KafkaProducer, workload: BenchWorkload, url: String) throws -> Double {
        try cluster.createTopic("bench.naive", partitions: 1)
        let sample = Array(workload.events.prefix(naiveSample))
        try producer.send(sample.map { OutgoingMessage(topic: "bench.naive", partition: 0, key: nil, value: Array(workload.nativeJSON($0).utf8)) })
        let conn = try TargetConnection.open(url)
        try BookkeepingSchema.install(on: conn)
        let consumer = try KafkaConsumer(properties: [("bootstrap.servers", cluster.bootstrapServers), ("group.id", "naive"), ("auto.offset.reset", "earliest"), ("log_level", "3")]) { _ in }
        try consumer.subscribe(["bench.naive"])
        let decoder = EventDecoder(choice: .native)
        var done = 0
        var start: ContinuousClock.Instant?
        while done < sample.count {
            guard let m = try consumer.poll(timeoutMs: 500) else { continue }
            if start == nil { start = .now }
            guard case let .change(e) = try decoder.decode(key: m.key, value: m.value) else { continue }
            try conn.execute("BEGIN")
            if e.operation == .delete {
                try conn.query("DELETE FROM public.orders WHERE id = $1", [e.key[0].1.textValue])
            } else {
                let row = Dictionary(uniqueKeysWithValues: (e.row ?? []).map { ($0.0, $0.1.textValue) })
                try conn.query("""
                    INSERT INTO public.orders (id, customer_id, status, amount, created_at, attrs) VALUES ($1, $2, $3, $4, $5, $6)
                    ON CONFLICT (id) DO UPDATE SET customer_id = EXCLUDED.customer_id, status = EXCLUDED.status, amount = EXCLUDED.amount,
                      created_at = EXCLUDED.created_at, attrs = EXCLUDED.attrs
                    """, [row["id"] ?? nil, row["customer_id"] ?? nil, row["status"] ?? nil, row["amount"] ?? nil, row["created_at"] ?? nil, row["attrs"] ?? nil])
            }
            try conn.query("INSERT INTO cdcr.ledger (change_id, table_name, outcome) VALUES ($1, 'public.orders', 'a')", [e.changeID])
            try conn.execute("COMMIT")
            try consumer.commit([TopicPartitionOffset(topic: m.topic, partition: m.partition, offset: m.offset + 1)])
            done += 1
        }
        consumer.close()
        return Double(done) / (ContinuousClock.now - start!).seconds
    }

    static func replaceDatabase(_ url: String, with db: String) -> String {
        guard let slash = url.range(of: "/", options: .backwards), url[..<slash.lowerBound].contains("@") || url.contains("://") else { return url + " dbname=\(db)" }
        let tail = url[slash.upperBound...]
        let query = tail.firstIndex(of: "?").map { String(tail[$0...]) } ?? ""
        return String(url[..<slash.upperBound]) + db + query
    }

    /// Runs a child to completion; returns status, stdout, its peak RSS in KB and its CPU seconds.
    static func runChild(_ args: [String]) throws -> (Int32, String, Int, Double) {
        let outPath = FileManager.default.temporaryDirectory.appendingPathComponent("cdcr-bench-\(getpid()).out").path
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 1, outPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        var argv: [UnsafeMutablePointer<CChar>?] = args.map { strdup($0) } + [nil]
        defer { for p in argv { free(p) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, args[0], &actions, nil, &argv, environ)
        guard rc == 0 else { throw ValidationError("cannot start \(args[0])") }
        var status: Int32 = 0
        var usage = rusage()
        wait4(pid, &status, 0, &usage)
        let out = (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? ""
        try? FileManager.default.removeItem(atPath: outPath)
        let cpu = { (t: timeval) in Double(t.tv_sec) + Double(t.tv_usec) / 1e6 }
        return ((status >> 8) & 0xff, out, usage.ru_maxrss, cpu(usage.ru_utime) + cpu(usage.ru_stime))
    }

    /// CPU seconds of the server's backends that have exited so far: the postmaster's reaped
    /// children (`cutime + cstime` in /proc). Nil when the server's files cannot be read.
    static func exitedBackendsCPU(_ admin: PGConnection) throws -> Double? {
        guard let dir = try admin.query("SHOW data_directory").scalar,
              let pidLine = try? String(contentsOfFile: dir + "/postmaster.pid", encoding: .utf8).split(separator: "\n").first,
              let stat = try? String(contentsOfFile: "/proc/\(pidLine)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return nil }
        // Fields after "(comm)": state is field 3, cutime and cstime are fields 16 and 17.
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 14, let cu = Double(fields[13]), let cs = Double(fields[14]) else { return nil }
        return (cu + cs) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }
}

/// The benchmark's change stream: 20 % inserts, 70 % updates, 10 % deletes over a key space.
struct BenchWorkload {
    struct Event {
        let seq: Int
        let key: Int
        let op: Character  // "i", "u", "d"
    }

    /// The fixture `orders` layout (../shared/fixtures/schema.sql).
    static let schema = """
        CREATE TABLE public.orders (id bigint PRIMARY KEY, customer_id bigint, status text, amount numeric(12,2),
            created_at timestamptz, shipped_on date, note text, attrs jsonb, ext_id uuid, updated_local timestamp);
        """

    let events: [Event]
    let inserts: Int, updates: Int, deletes: Int, liveRows: Int

    init(events n: Int, keys: Int) {
        var rng = SplitMix64(seed: 2026)
        var live: [Int] = []
        var position = [Int](repeating: -1, count: keys + 1)
        var dead: [Int] = Array((1...keys).reversed())
        var out: [Event] = []
        out.reserveCapacity(n)
        var ins = 0, upd = 0, del = 0
        for seq in 1...n {
            let r = rng.next() % 100
            if (r < 20 || live.isEmpty), let key = dead.popLast() {
                position[key] = live.count
                live.append(key)
                out.append(Event(seq: seq, key: key, op: "i"))
                ins += 1
            } else if r < 90 || live.count < 2 {
                out.append(Event(seq: seq, key: live[Int(rng.next() % UInt64(live.count))], op: "u"))
                upd += 1
            } else {
                let i = Int(rng.next() % UInt64(live.count))
                let key = live[i]
                live[i] = live[live.count - 1]
                position[live[i]] = i
                live.removeLast()
                dead.insert(key, at: Int(rng.next() % UInt64(dead.count + 1)))
                out.append(Event(seq: seq, key: key, op: "d"))
                del += 1
            }
        }
        events = out
        inserts = ins; updates = upd; deletes = del; liveRows = live.count
    }

    func chunks(of size: Int) -> [ArraySlice<Event>] { events.chunks(of: size) }

    private func fields(_ e: Event) -> (customer: String, status: String, amount: String, created: String, attrs: String) {
        (String(e.seq), ["new", "paid", "packed", "shipped"][e.seq % 4], "\(e.seq % 10_000).\(e.seq % 90 + 10)",
         "2026-11-20T10:00:00.\(100_000 + e.seq % 899_999)Z", "{\"n\": \(e.seq)}")
    }

    func nativeJSON(_ e: Event) -> String {
        let op = e.op == "i" ? "INSERT" : e.op == "u" ? "UPDATE" : "DELETE"
        guard e.op != "d" else {
            return "{\"change_id\":\(e.seq),\"table\":\"public.orders\",\"operation\":\"DELETE\",\"key\":{\"id\":\(e.key)},\"data\":null,\"version\":\(e.seq)}"
        }
        let f = fields(e)
        return "{\"change_id\":\(e.seq),\"table\":\"public.orders\",\"operation\":\"\(op)\",\"key\":{\"id\":\(e.key)},\"data\":{\"id\":\(e.key),\"customer_id\":\(f.customer),\"status\":\"\(f.status)\",\"amount\":\"\(f.amount)\",\"created_at\":\"\(f.created)\",\"shipped_on\":null,\"note\":null,\"attrs\":\(f.attrs),\"ext_id\":null,\"updated_local\":null},\"timestamp\":1795168800000,\"version\":\(e.seq)}"
    }

    func stagingRow(_ e: Event) -> [String?] {
        if e.op == "d" { return [String(e.seq), "d", String(e.key)] + [String?](repeating: nil, count: 9) }
        let f = fields(e)
        return [String(e.seq), "u", String(e.key), f.customer, f.status, f.amount, f.created, nil, nil, f.attrs, nil, nil]
    }
}

private func fmt(_ rate: Double) -> String { String(format: "%9.0f", rate) }

extension JSONValue {
    var serializedNumber: String {
        if case let .number(n) = self { return n }
        return serialized
    }
}

extension ColumnValue {
    /// The value as bindable text (the naive design binds values as given).
    var textValue: String? {
        switch self {
        case .null, .unavailable: return nil
        case let .text(s): return s
        case let .json(j), let .debezium(j, _):
            switch j {
            case .null: return nil
            case let .string(s): return s
            case let .number(n): return n
            default: return j.serialized
            }
        }
    }
}

/// Set-up the benchmarks share: their own databases, the verify benchmark's `orders` fill, and the
/// path of this binary (benchmarks run `cdcr` subcommands as child processes).
enum BenchSetup {
    /// Drops and creates each of `names` on the server of `target`; returns their URLs.
    static func freshDatabases(_ names: [String], admin: PGConnection, target: String) throws -> [String] {
        try names.map { name in
            try admin.execute("DROP DATABASE IF EXISTS \(name)")
            try admin.execute("CREATE DATABASE \(name)")
            return ApplyBench.replaceDatabase(target, with: name)
        }
    }

    /// Creates `public.orders` (the fixture layout) in `conn` and fills it with `rows` rows, the
    /// verify and check benchmarks' table.
    static func ordersTable(_ conn: PGConnection, rows: Int) throws {
        try conn.execute(BenchWorkload.schema)
        try conn.query("""
            INSERT INTO public.orders SELECT i, i % 5000, (ARRAY['new','paid','shipped','cancelled'])[1 + i % 4], (i % 100000) / 100.0,
                '2026-01-01'::timestamptz + i * interval '1 second', DATE '2026-01-01' + i % 300, 'note ' || i,
                jsonb_build_object('k', i % 10, 'tag', 'x' || i % 7), md5(i::text)::uuid, TIMESTAMP '2026-01-01' + i * interval '1 second'
            FROM generate_series(1, $1::int) i
            """, [String(rows)])
    }

    /// This executable's path, absolute.
    static var binary: String {
        CommandLine.arguments[0].hasPrefix("/") ? CommandLine.arguments[0] : FileManager.default.currentDirectoryPath + "/" + CommandLine.arguments[0]
    }
}
