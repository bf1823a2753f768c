import CDCCore
import CDCKafka
import CDCR
import Foundation
import Testing

/// The Kafka-protocol brokers the integration tests run against (docs/BROKERS.md). Tests that take
/// `arguments: BrokerKind.allCases` show up once per broker.
enum BrokerKind: String, CaseIterable, Sendable, CustomTestStringConvertible {
    /// librdkafka's in-process mock cluster: part of the client library itself.
    case mock
    /// tansu, an independent broker written in Rust, as a child process behind `KafkaProxy`.
    case tansu

    var testDescription: String { rawValue }
}

/// A test broker (`BrokerKind`) plus helpers that work the same on every kind.
final class TestKafka: Sendable {
    let kind: BrokerKind
    private let mock: MockCluster?
    private let tansu: TansuBroker?
    let producer: KafkaProducer
    let brokers: String

    /// The mock cluster, for fault injection; only tests that run on the mock broker alone use it.
    var cluster: MockCluster {
        guard let mock else { preconditionFailure("fault injection needs BrokerKind.mock, this is \(kind)") }
        return mock
    }

    init(_ kind: BrokerKind = .mock) throws {
        self.kind = kind
        var properties = [("log_level", "3")]
        switch kind {
        case .mock:
            let cluster = try MockCluster()
            (mock, tansu, brokers) = (cluster, nil, cluster.bootstrapServers)
        case .tansu:
            let broker = try TansuBroker()
            (mock, tansu, brokers) = (nil, broker, broker.bootstrapServers)
            // tansu 0.6 sets a partition's high watermark to the first offset of the last batch
            // produced + 1, so a batch of n records leaves it n - 1 short: one record per batch.
            properties += [("linger.ms", "0"), ("batch.num.messages", "1")]
        }
        producer = try KafkaProducer(properties: [("bootstrap.servers", brokers)] + properties)
    }

    /// `--kafka-property` flags a `cdcr` process needs against this broker. tansu holds every JoinGroup
    /// for half the group's session timeout, waiting for more members (librdkafka's default of 45 s
    /// would make each run wait 23 s); 6 s is the lowest Apache Kafka accepts.
    var clientFlags: [String] {
        switch kind {
        case .mock: []
        case .tansu: ["--kafka-property", "session.timeout.ms=6000", "--kafka-property", "heartbeat.interval.ms=500"]
        }
    }

    deinit {
        producer.close()
        tansu?.stop()
    }

    func createTopic(_ topic: String, partitions: Int = 1) throws {
        if let mock { try mock.createTopic(topic, partitions: partitions) }
        if let tansu { try tansu.createTopic(topic, partitions: partitions) }
    }

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

/// The common flags of an applier run against `kafka` and a target, with the broker's `clientFlags`.
func runArgs(kafka: TestKafka, topic: String, group: String, target: String, extra: [String] = []) -> [String] {
    runArgs(brokers: kafka.brokers, topic: topic, group: group, target: target, extra: kafka.clientFlags + extra)
}

/// The common flags of an applier run against a test broker and target.
func runArgs(brokers: String, topic: String, group: String, target: String, extra: [String] = []) -> [String] {
    ["run", "--brokers", brokers, "--topic", topic, "--group", group, "--target", target, "--stop-when-caught-up",
     "--kafka-property", "log_level=3"] + extra
}
