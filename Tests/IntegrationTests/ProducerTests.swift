import CDCKafka
import Foundation
import Testing

/// The producer behind dead letters and the relay: `send` returns only once the broker acknowledged
/// every message of that call.
@Suite("Kafka producer")
struct ProducerTests {
    @Test("send returns each message's offset in the order given, across partitions")
    func offsetsInOrder() throws {
        let kafka = try TestKafka()
        try kafka.createTopic("p.order", partitions: 2)
        let producer = try KafkaProducer(properties: [("bootstrap.servers", kafka.brokers), ("log_level", "3")])
        defer { producer.close() }
        let partitions: [Int32] = [0, 1, 0, 1, 1, 0, 0]
        let offsets = try producer.send(partitions.enumerated().map { i, p in
            OutgoingMessage(topic: "p.order", partition: p, key: nil, value: Array("m\(i)".utf8))
        })
        // The broker acknowledges partition by partition; the offsets still follow the messages.
        #expect(offsets == [0, 0, 1, 1, 2, 2, 3])
    }

    @Test("send waits out its timeout in time, not in polls: 3,000 messages acknowledged one by one all count", arguments: BrokerKind.allCases)
    func manySingleMessageBatches(_ broker: BrokerKind) throws {
        let kafka = try TestKafka(broker)
        try kafka.createTopic("p.single")
        // One message per produce request: delivery reports arrive a few at a time, so each poll
        // returns long before its 50 ms.
        let producer = try KafkaProducer(properties: [
            ("bootstrap.servers", kafka.brokers), ("log_level", "3"), ("linger.ms", "0"), ("batch.num.messages", "1"),
        ])
        defer { producer.close() }
        let offsets = try producer.send((0..<3_000).map { OutgoingMessage(topic: "p.single", partition: 0, key: nil, value: Array("m\($0)".utf8)) })
        #expect(offsets == (0..<3_000).map(Int64.init))
        #expect(try producer.watermarks(TopicPartition(topic: "p.single", partition: 0)).high == 3_000)
    }

    @Test("a call that timed out cannot complete the next one with its late acknowledgements")
    func lateReportsStayWithTheirCall() throws {
        let kafka = try TestKafka()
        try kafka.createTopic("p.late")
        let producer = try KafkaProducer(properties: [
            ("bootstrap.servers", kafka.brokers), ("log_level", "0"), ("retry.backoff.ms", "1500"), ("linger.ms", "0"),
        ])
        defer { producer.close() }
        _ = try producer.send([OutgoingMessage(topic: "p.late", partition: 0, key: nil, value: Array("warm".utf8))])  // metadata, connection

        // The first attempt of the next produce fails with a retriable error, so the message is
        // delivered only after the retry backoff: later than this call waits.
        kafka.cluster.failNextRequests(apiKey: 0, error: 19, count: 1)  // NOT_ENOUGH_REPLICAS
        #expect(throws: KafkaError.self) {
            try producer.send([OutgoingMessage(topic: "p.late", partition: 0, key: nil, value: Array("late".utf8))], timeoutMs: 300)
        }
        // The next call's message queues behind it: its answer must be its own offset, 2 ("late"
        // lands at 1), and it must wait for it.
        let offsets = try producer.send([OutgoingMessage(topic: "p.late", partition: 0, key: nil, value: Array("next".utf8))], timeoutMs: 10_000)
        #expect(offsets == [2])
    }
}
