import CRdKafka

/// An error from librdkafka, with its `rd_kafka_resp_err_t` code.
public struct KafkaError: Error, Sendable, CustomStringConvertible {
    public let code: Int32
    public let message: String

    public init(code: Int32, message: String) {
        self.code = code
        self.message = message
    }

    init(_ err: rd_kafka_resp_err_t, _ context: String) {
        self.code = err.rawValue
        self.message = "\(context): \(String(cString: rd_kafka_err2str(err)))"
    }

    /// librdkafka's symbolic name of the code, e.g. `_TRANSPORT`.
    public var name: String { String(cString: rd_kafka_err2name(rd_kafka_resp_err_t(rawValue: code))) }

    /// True for errors that a later attempt may not see: transport, timeouts, unavailable brokers,
    /// coordinator moves, rebalances in progress.
    public var isTransient: Bool {
        let err = rd_kafka_resp_err_t(rawValue: code)
        switch err {
        case RD_KAFKA_RESP_ERR__TRANSPORT, RD_KAFKA_RESP_ERR__TIMED_OUT, RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN,
             RD_KAFKA_RESP_ERR__MSG_TIMED_OUT, RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT, RD_KAFKA_RESP_ERR__WAIT_COORD,
             RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE, RD_KAFKA_RESP_ERR_NOT_COORDINATOR,
             RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS, RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS,
             RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION, RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE,
             RD_KAFKA_RESP_ERR_BROKER_NOT_AVAILABLE, RD_KAFKA_RESP_ERR_NETWORK_EXCEPTION,
             RD_KAFKA_RESP_ERR__QUEUE_FULL, RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
             RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART, RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION:
            return true
        default:
            return false
        }
    }

    /// The group is rebalancing or has moved on without this member: a commit cannot succeed until
    /// the consumer has polled (rejoined), or ever, for the partitions it held.
    public var isRebalance: Bool {
        let err = rd_kafka_resp_err_t(rawValue: code)
        return err == RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS || err == RD_KAFKA_RESP_ERR_ILLEGAL_GENERATION
            || err == RD_KAFKA_RESP_ERR_UNKNOWN_MEMBER_ID || err == RD_KAFKA_RESP_ERR__STATE
    }

    public var description: String { "[\(name)] \(message)" }
}

/// A topic partition and an offset (the next offset to read, when committing).
public struct TopicPartitionOffset: Sendable, Hashable, CustomStringConvertible {
    public let topic: String
    public let partition: Int32
    public let offset: Int64

    public init(topic: String, partition: Int32, offset: Int64) {
        self.topic = topic
        self.partition = partition
        self.offset = offset
    }

    public var description: String { "\(topic)/\(partition)@\(offset)" }
}

/// A topic partition.
public struct TopicPartition: Sendable, Hashable, CustomStringConvertible, Comparable {
    public let topic: String
    public let partition: Int32

    public init(topic: String, partition: Int32) {
        self.topic = topic
        self.partition = partition
    }

    public var description: String { "\(topic)/\(partition)" }

    public static func < (a: TopicPartition, b: TopicPartition) -> Bool {
        (a.topic, a.partition) < (b.topic, b.partition)
    }
}

/// Converts librdkafka's topic-partition lists to and from Swift values. The list is owned by the
/// caller of `withList` and destroyed when it returns.
extension TopicPartition {
    /// This partition in a list for a librdkafka call that fills in the offset (or ignores it).
    var unsetOffset: TopicPartitionOffset { TopicPartitionOffset(topic: topic, partition: partition, offset: -1001) }
}

enum PartitionList {
    static func withList<R>(_ items: [TopicPartitionOffset], _ body: (UnsafeMutablePointer<rd_kafka_topic_partition_list_t>) throws -> R) rethrows -> R {
        let list = rd_kafka_topic_partition_list_new(Int32(max(items.count, 1)))!
        defer { rd_kafka_topic_partition_list_destroy(list) }
        for item in items {
            let tp = rd_kafka_topic_partition_list_add(list, item.topic, item.partition)!
            tp.pointee.offset = item.offset
        }
        return try body(list)
    }

    static func read(_ list: UnsafePointer<rd_kafka_topic_partition_list_t>) -> [(TopicPartitionOffset, rd_kafka_resp_err_t)] {
        var out: [(TopicPartitionOffset, rd_kafka_resp_err_t)] = []
        for i in 0..<Int(list.pointee.cnt) {
            let e = list.pointee.elems[i]
            out.append((TopicPartitionOffset(topic: String(cString: e.topic), partition: e.partition, offset: e.offset), e.err))
        }
        return out
    }
}

/// Builds an `rd_kafka_conf_t`; an unknown or invalid property is an error that names it.
enum KafkaConf {
    static func make(_ properties: [(String, String)]) throws(KafkaError) -> OpaquePointer {
        let conf = rd_kafka_conf_new()!
        for (key, value) in properties {
            var errstr = [CChar](repeating: 0, count: 512)
            if rd_kafka_conf_set(conf, key, value, &errstr, errstr.count) != RD_KAFKA_CONF_OK {
                rd_kafka_conf_destroy(conf)
                let reason = cString(errstr)
                throw KafkaError(code: RD_KAFKA_RESP_ERR__INVALID_ARG.rawValue, message: "Kafka property \(key): \(reason)")
            }
        }
        return conf
    }

    static func newHandle(_ type: rd_kafka_type_t, _ conf: OpaquePointer) throws(KafkaError) -> OpaquePointer {
        var errstr = [CChar](repeating: 0, count: 512)
        guard let rk = rd_kafka_new(type, conf, &errstr, errstr.count) else {
            // On failure rd_kafka_new leaves conf owned by the caller.
            rd_kafka_conf_destroy(conf)
            throw KafkaError(code: RD_KAFKA_RESP_ERR__INVALID_ARG.rawValue, message: "cannot create Kafka client: \(cString(errstr))")
        }
        return rk
    }
}

/// The text of a NUL-terminated C buffer.
func cString(_ buffer: [CChar]) -> String {
    let bytes = buffer.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }
    return String(decoding: bytes, as: UTF8.self)
}
