import ArgumentParser
import CDCCore
import CDCKafka
import CDCPostgres
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// `cdcr bench latency`: how long a change takes from the producer to a row in the target, when the
/// stream is not saturated. Per rate: a fresh database, a `cdcr run` child (the daemon, not a
/// backlog run), native INSERTs sent at a steady rate for a while; each event carries its send
/// time, a trigger stamps `clock_timestamp()` into the row when it is written.
struct LatencyBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "latency",
        abstract: "Measure send → write latency at steady event rates (p50 / p99 / max per rate)."
    )

    @Option(help: "Admin libpq URL of a local PostgreSQL; the benchmark creates and drops its own databases.")
    var target: String

    @Option(parsing: .upToNextOption, help: "Event rates per second, one run each.")
    var rates: [Int] = [1_000, 5_000, 20_000]

    @Option(help: "Seconds each rate is sent for.")
    var seconds = 20.0

    @Option(help: "Partitions of the benchmark topic (events are spread by key).")
    var partitions = 4

    /// librdkafka's mock broker answers a fetch that found nothing only after the consumer's
    /// `fetch.wait.max.ms` (cdcr sets 100), even when a message arrives meanwhile
    /// (rdkafka_mock_handlers.c: "we should cut the wait short … but that is too much of a hassle");
    /// a real broker answers as soon as data arrives. The default keeps that artifact small.
    @Option(help: "fetch.wait.max.ms of the applier's consumer (cdcr's own default is 100).")
    var fetchWaitMs = 10

    @Option(parsing: .unconditional, help: "Extra arguments for the `cdcr run` child, e.g. \"--batch-max-wait-ms 50\" (split at spaces).")
    var runArgs = ""

    @Option(help: "The cdcr executable run as the applier (default: this one), e.g. an older build to compare with.")
    var applier: String?

    /// The target table: the trigger stamps the write time, whatever the applier's statement sets.
    static let schema = """
        CREATE TABLE public.lat (id bigint PRIMARY KEY, sent_us bigint NOT NULL, written_at timestamptz);
        CREATE FUNCTION lat_stamp() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN NEW.written_at := clock_timestamp(); RETURN NEW; END $$;
        CREATE TRIGGER lat_stamp BEFORE INSERT OR UPDATE ON public.lat FOR EACH ROW EXECUTE FUNCTION lat_stamp();
        """

    func run() throws {
        let cluster = try MockCluster()
        let admin = try PGConnection.connect(target)
        let exe = applier ?? URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().path
        let producer = try KafkaProducer(properties: [
            // Sent at once: the latency measured is the applier's, not the producer's buffering.
            ("bootstrap.servers", cluster.bootstrapServers), ("linger.ms", "1"), ("log_level", "3"),
        ])
        defer { producer.close() }
        print("send → write latency, \(partitions) partitions, \(seconds) s per rate, embedded broker (fetch.wait.max.ms=\(fetchWaitMs)), local PostgreSQL")
        print("     rate       sent    written   batches     p50 ms     p99 ms     max ms")
        var failed = false
        for (n, rate) in rates.enumerated() {
            let db = "cdcr_bench_lat"
            try admin.execute("DROP DATABASE IF EXISTS \(db) WITH (FORCE)")
            try admin.execute("CREATE DATABASE \(db)")
            let url = ApplyBench.replaceDatabase(target, with: db)
            let conn = try PGConnection.connect(url)
            defer { conn.close() }
            try conn.execute(Self.schema)
            try admin.execute("CHECKPOINT")
            let topic = "lat\(n)"
            try cluster.createTopic(topic, partitions: partitions)

            let backendsBefore = try ApplyBench.exitedBackendsCPU(admin)
            let child = try BackgroundChild([exe, "run", "--brokers", cluster.bootstrapServers, "--topic", topic, "--group", topic,
                                             "--target", url, "--no-admin", "--kafka-property", "log_level=3", "--kafka-property", "fetch.wait.max.ms=\(fetchWaitMs)",
                                             "--log-level", ProcessInfo.processInfo.environment["CDCR_BENCH_LOG"] ?? "warning"]
                                            + runArgs.split(separator: " ").map(String.init))
            defer { child.stop() }
            // Warm-up: the group is joined and every partition applied once before the clock starts.
            var id = 0
            try producer.send((0..<partitions * 10).map { _ in id -= 1; return message(topic, id: id) })
            guard try waitFor(conn, rows: partitions * 10, timeout: .seconds(60)) else {
                throw ValidationError("the applier did not apply the warm-up events within 60 s")
            }
            try conn.execute("TRUNCATE public.lat")

            // Steady rate: every millisecond, send what is due so far (the send returns once the
            // broker has acknowledged, so the schedule catches up after a slow acknowledgement).
            let total = Int(Double(rate) * seconds)
            let cpuBefore = (bench: Self.cpuSeconds(getpid()), applier: Self.cpuSeconds(child.pid))
            let start = ContinuousClock.now
            var sent = 0
            while sent < total {
                let due = min(total, Int(Double(rate) * (ContinuousClock.now - start).seconds))
                if due > sent {
                    try producer.send((sent..<due).map { message(topic, id: $0 + 1) })
                    sent = due
                } else {
                    usleep(500)
                }
            }
            let complete = try waitFor(conn, rows: total, timeout: .seconds(120))
            let cpuAfter = (bench: Self.cpuSeconds(getpid()), applier: Self.cpuSeconds(child.pid))
            let r = try conn.query("""
                SELECT count(*), count(DISTINCT xmin::text),
                       percentile_disc(0.5) WITHIN GROUP (ORDER BY l), percentile_disc(0.99) WITHIN GROUP (ORDER BY l), max(l)
                FROM (SELECT xmin, (extract(epoch FROM written_at) * 1e6 - sent_us) / 1e3 AS l FROM public.lat) t
                """).rows[0]
            let cell = { (i: Int, w: Int) in String(repeating: " ", count: max(0, w - (r[i] ?? "-").count)) + (r[i] ?? "-") }
            let ms = { (i: Int) in String(format: "%10.1f", Double(r[i] ?? "") ?? .nan) }
            print(String(format: "%9d", rate) + String(format: "%11d", total) + " " + cell(0, 10) + " " + cell(1, 9) + " " + ms(2) + " " + ms(3) + " " + ms(4))
            if !complete || r[0] != String(total) {
                print("  !! \(r[0] ?? "0") of \(total) events written")
                failed = true
            }
            child.stop()
            // The applier's backend exits after it; the postmaster reaps it (and so counts its CPU).
            let until = ContinuousClock.now + .seconds(10)
            let mine = try conn.query("SELECT pg_backend_pid()").scalar
            while ContinuousClock.now < until,
                  try admin.query("SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND pid <> $2::int", [db, mine]).scalar != "0" {
                usleep(20_000)
            }
            usleep(200_000)
            let backends = try ApplyBench.exitedBackendsCPU(admin).flatMap { after in backendsBefore.map { after - $0 } }
            printCPU(total: total, rate: rate, bench: cpuAfter.bench.flatMap { a in cpuBefore.bench.map { a - $0 } },
                     applier: cpuAfter.applier.flatMap { a in cpuBefore.applier.map { a - $0 } }, backends: backends)
            try admin.execute("DROP DATABASE IF EXISTS \(db) WITH (FORCE)")
        }
        if failed { throw ExitCode(1) }
    }

    /// CPU per event of each part, and what all of them need of the machine at this rate: whether the
    /// rate is within reach of the cores at all. The applier's backends are counted from the start
    /// of the warm-up (a few dozen events), the bench and the applier from the clock's start.
    private func printCPU(total: Int, rate: Int, bench: Double?, applier: Double?, backends: Double?) {
        let us = { (s: Double?) in s.map { String(format: "%.1f", $0 * 1e6 / Double(total)) } ?? "?" }
        let sum = [bench, applier, backends].compactMap { $0 }.reduce(0, +)
        print("          cpu µs/event: bench (producer + broker) \(us(bench)), cdcr \(us(applier)), PostgreSQL backends \(us(backends));"
              + String(format: " all × rate = %.2f cores", sum / Double(total) * Double(rate)))
    }

    /// User + system CPU seconds of a running process, from /proc; nil when it cannot be read.
    static func cpuSeconds(_ pid: pid_t) -> Double? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8), let close = stat.lastIndex(of: ")") else { return nil }
        // Fields after "(comm)": state is field 3, utime and stime are fields 14 and 15.
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 12, let u = Double(fields[11]), let s = Double(fields[12]) else { return nil }
        return (u + s) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    /// A native INSERT whose row carries its send time (wall clock, microseconds).
    private func message(_ topic: String, id: Int) -> OutgoingMessage {
        let now = Int64(Date().timeIntervalSince1970 * 1_000_000)
        let json = #"{"change_id":"\#(topic)-\#(id)","table":"public.lat","operation":"INSERT","key":{"id":\#(id)},"data":{"id":\#(id),"sent_us":\#(now)},"timestamp":\#(now / 1_000),"version":1}"#
        return OutgoingMessage(topic: topic, partition: Int32(abs(id) % partitions), key: Array("{\"id\":\(id)}".utf8), value: Array(json.utf8))
    }

    private func waitFor(_ conn: PGConnection, rows: Int, timeout: Duration) throws -> Bool {
        let until = ContinuousClock.now + timeout
        while ContinuousClock.now < until {
            if try conn.query("SELECT count(*) FROM public.lat").scalar == String(rows) { return true }
            usleep(50_000)
        }
        return false
    }
}

/// A child process running beside the benchmark, stopped with SIGTERM (the daemon's graceful stop).
final class BackgroundChild {
    private(set) var pid: pid_t = 0
    private var running = false

    init(_ args: [String]) throws {
        var argv: [UnsafeMutablePointer<CChar>?] = args.map { strdup($0) } + [nil]
        defer { for p in argv { free(p) } }
        guard posix_spawn(&pid, args[0], nil, nil, &argv, environ) == 0 else { throw ValidationError("cannot start \(args[0])") }
        running = true
    }

    /// SIGTERM, then waits for the exit. Idempotent.
    func stop() {
        guard running else { return }
        running = false
        kill(pid, SIGTERM)
        var status: Int32 = 0
        waitpid(pid, &status, 0)
    }

    deinit { stop() }
}
