import CDCCore
import CDCKafka
import CDCR
import Foundation

/// An in-process mock Kafka cluster (a real Kafka-protocol broker on loopback) plus helpers.
final class TestKafka: @unchecked Sendable {
    // @unchecked Sendable: the cluster and producer are thread-safe librdkafka handles.
    let cluster: MockCluster
    let producer: KafkaProducer
    var brokers: String { cluster.bootstrapServers }

    init() throws {
        cluster = try MockCluster()
        producer = try KafkaProducer(properties: [("bootstrap.servers", cluster.bootstrapServers), ("log_level", "3")])
    }

    func createTopic(_ topic: String, partitions: Int = 1) throws { try cluster.createTopic(topic, partitions: partitions) }

    /// Produces fixture lines (see ../shared/fixtures/README.md) to `topic` (default: each line's own).
    func produce(fixture path: String, topic: String? = nil) throws -> [FixtureLine] {
        let lines = try FixtureLine.load(path)
        try producer.send(lines.compactMap { $0.outgoing(topic: topic) })
        return lines
    }

    func send(_ messages: [OutgoingMessage]) throws { try producer.send(messages) }

    /// Reads every message of `topic` until `count` arrived or `timeout` passed. Partitions are
    /// assigned directly, not through a group: a group rebalance on the mock broker can wait out
    /// the session timeout, longer than `timeout`.
    func read(topic: String, count: Int, timeout: Duration = .seconds(30)) throws -> [KafkaMessage] {
        let consumer = try KafkaConsumer(properties: [
            ("bootstrap.servers", brokers), ("group.id", "reader-\(UUID().uuidString)"),
            ("auto.offset.reset", "earliest"), ("log_level", "3"),
        ]) { _ in }
        defer { consumer.close() }
        try consumer.assign(try consumer.partitions(of: topic).map { TopicPartitionOffset(topic: topic, partition: $0, offset: -2) })
        var out: [KafkaMessage] = []
        let deadline = ContinuousClock.now + timeout
        while out.count < count, ContinuousClock.now < deadline {
            if let m = try? consumer.poll(timeoutMs: 200) { out.append(m) }
        }
        return out
    }

    /// The committed offsets of `group` for `topic`'s partitions, and the partitions' end offsets.
    func offsets(group: String, topic: String, partitions: Int) throws -> (committed: [Int32: Int64], end: [Int32: Int64]) {
        let consumer = try KafkaConsumer(properties: [("bootstrap.servers", brokers), ("group.id", group), ("log_level", "3")]) { _ in }
        defer { consumer.close() }
        let tps = (0..<partitions).map { TopicPartition(topic: topic, partition: Int32($0)) }
        let committed = try consumer.committed(tps)
        var c: [Int32: Int64] = [:]
        var e: [Int32: Int64] = [:]
        for tp in tps {
            c[tp.partition] = committed[tp] ?? -1
            e[tp.partition] = try consumer.watermarks(tp).high
        }
        return (c, e)
    }
}

/// One line of a fixture `.jsonl` file.
typealias FixtureLine = JSONLMessage

extension JSONLMessage {
    static func load(_ path: String) throws -> [JSONLMessage] {
        try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").map { try JSONLMessage(parsing: String($0)) }
    }
}

/// Runs the built `cdcr` executable as a child process, output captured to files.
enum CDCRProcess {
    static var binary: String { Fixtures.projectRoot + "/.build/debug/cdcr" }

    static func start(_ args: [String], env: [String: String] = [:]) throws -> ChildProcess {
        guard FileManager.default.isExecutableFile(atPath: binary) else {
            throw TestEnvironmentError("\(binary) is missing: run `swift build` before the tests (scripts/test.sh does)")
        }
        var environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("CDCR_") }
        // Tests run many appliers at once: each admin server on its own ephemeral port.
        environment["CDCR_ADMIN_LISTEN"] = "127.0.0.1:0"
        for (k, v) in env { environment[k] = v }
        return try ChildProcess([binary] + args, env: environment)
    }

    /// Runs to completion (killed after `timeout`).
    static func run(_ args: [String], env: [String: String] = [:], timeout: Duration = .seconds(120)) throws -> (status: Int32, stdout: String, stderr: String) {
        let p = try start(args, env: env)
        let status = p.wait(timeout: timeout)
        return (status, p.stdout, p.stderr)
    }
}

/// The outcome counts `run --stop-when-caught-up` prints as its last line (an empty object when none).
func runSummary(_ stdout: String) throws -> JSONValue {
    try JSONParser.parse(stdout.split(separator: "\n").last.map(String.init) ?? "{}")
}

/// The common flags of an applier run against a test broker and target.
func runArgs(brokers: String, topic: String, group: String, target: String, extra: [String] = []) -> [String] {
    ["run", "--brokers", brokers, "--topic", topic, "--group", group, "--target", target, "--stop-when-caught-up",
     "--kafka-property", "log_level=3"] + extra
}
