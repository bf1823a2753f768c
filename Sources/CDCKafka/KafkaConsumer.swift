import CRdKafka
import Synchronization

/// A consumed Kafka message, copied out of librdkafka (which frees its copy at once).
public struct KafkaMessage: Sendable {
    public let topic: String
    public let partition: Int32
    public let offset: Int64
    public let key: [UInt8]?
    public let value: [UInt8]?
    /// Producer or log-append time in milliseconds since the epoch, when the broker has one.
    public let timestampMillis: Int64?
    /// Message headers in order (values as UTF-8 text; a null value reads as "").
    public let headers: [(String, String)]

    public init(topic: String, partition: Int32, offset: Int64, key: [UInt8]?, value: [UInt8]?, timestampMillis: Int64?, headers: [(String, String)] = []) {
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.key = key
        self.value = value
        self.timestampMillis = timestampMillis
        self.headers = headers
    }

    /// The first header named `name`.
    public func header(_ name: String) -> String? { headers.first { $0.0 == name }?.1 }
}

/// What a rebalance does to this consumer's assignment.
public enum RebalanceEvent: Sendable {
    case assigned([TopicPartition])
    /// Called before the partitions are given up: finish and commit their in-flight work now.
    case revoking([TopicPartition])
}

/// A high-level (group) consumer with manual offset commits.
///
/// Ownership: `rd_kafka_new` takes the conf; this object owns the `rd_kafka_t` and destroys it once in
/// `close()`/deinit after `rd_kafka_consumer_close` (which leaves the group). librdkafka handles are
/// thread-safe, but the rebalance handler runs inside `poll`, on the polling thread: call `poll`,
/// `commit` and `close` from one thread (the consume loop's).
public final class KafkaConsumer: @unchecked Sendable {
    // @unchecked Sendable: `handle` is only mutated in close(), under `lock`; librdkafka's own calls are thread-safe.
    private let lock = Mutex<Void>(())
    private var handle: OpaquePointer?
    private let rebalanceBox: RebalanceBox

    /// `properties` are librdkafka settings (bootstrap.servers, group.id, TLS/SASL…). Auto-commit is
    /// always off: offsets are committed by the caller after the changes are applied.
    public init(properties: [(String, String)], onRebalance: @escaping (RebalanceEvent) -> Void) throws(KafkaError) {
        var props = properties
        props.append(("enable.auto.commit", "false"))
        props.append(("enable.auto.offset.store", "false"))
        let conf = try KafkaConf.make(props)
        let box = RebalanceBox(onRebalance)
        rd_kafka_conf_set_opaque(conf, Unmanaged.passUnretained(box).toOpaque())
        rd_kafka_conf_set_rebalance_cb(conf) { rk, err, partitions, opaque in
            guard let rk, let opaque, let partitions else { return }
            let box = Unmanaged<RebalanceBox>.fromOpaque(opaque).takeUnretainedValue()
            let list = PartitionList.read(partitions).map { TopicPartition(topic: $0.0.topic, partition: $0.0.partition) }
            let cooperative = String(cString: rd_kafka_rebalance_protocol(rk)) == "COOPERATIVE"
            if err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS {
                if cooperative { _ = rd_kafka_incremental_assign(rk, partitions) } else { rd_kafka_assign(rk, partitions) }
                box.handler(.assigned(list))
            } else {
                box.handler(.revoking(list))
                if cooperative { _ = rd_kafka_incremental_unassign(rk, partitions) } else { rd_kafka_assign(rk, nil) }
            }
        }
        self.rebalanceBox = box
        self.handle = try KafkaConf.newHandle(RD_KAFKA_CONSUMER, conf)
        rd_kafka_poll_set_consumer(handle)
    }

    deinit { close() }

    public func subscribe(_ topics: [String]) throws(KafkaError) {
        let rk = try rkHandle()
        let err = PartitionList.withList(topics.map { TopicPartitionOffset(topic: $0, partition: -1, offset: -1001) }) { list in
            rd_kafka_subscribe(rk, list)
        }
        if err != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(err, "subscribe to \(topics.joined(separator: ","))") }
    }

    /// Reads `partitions` from the given offsets (-2 the beginning) outside any group: no join, no
    /// rebalance, nothing committed. For tools and tests that read a topic whole.
    public func assign(_ partitions: [TopicPartitionOffset]) throws(KafkaError) {
        let rk = try rkHandle()
        let err = PartitionList.withList(partitions) { list in rd_kafka_assign(rk, list) }
        if err != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(err, "assign \(partitions.count) partitions") }
    }

    /// Waits up to `timeoutMs` for the next message. Rebalance handlers run inside this call.
    /// Partition EOF and other informational events return nil; real errors throw.
    public func poll(timeoutMs: Int32) throws(KafkaError) -> KafkaMessage? {
        let rk = try rkHandle()
        guard let msg = rd_kafka_consumer_poll(rk, timeoutMs) else { return nil }
        defer { rd_kafka_message_destroy(msg) }
        let m = msg.pointee
        if m.err != RD_KAFKA_RESP_ERR_NO_ERROR {
            if m.err == RD_KAFKA_RESP_ERR__PARTITION_EOF { return nil }
            throw KafkaError(m.err, "consume")
        }
        let topic = String(cString: rd_kafka_topic_name(m.rkt))
        let key = m.key.map { Array(UnsafeRawBufferPointer(start: $0, count: m.key_len)) }
        let value = m.payload.map { Array(UnsafeRawBufferPointer(start: $0, count: m.len)) }
        var tsType = RD_KAFKA_TIMESTAMP_NOT_AVAILABLE
        let ts = rd_kafka_message_timestamp(msg, &tsType)
        var headers: [(String, String)] = []
        var hdrs: OpaquePointer?
        if rd_kafka_message_headers(msg, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR, let hdrs {
            var idx = 0
            var name: UnsafePointer<CChar>?
            var val: UnsafeRawPointer?
            var size = 0
            while rd_kafka_header_get_all(hdrs, idx, &name, &val, &size) == RD_KAFKA_RESP_ERR_NO_ERROR {
                let text = val.map { String(decoding: UnsafeRawBufferPointer(start: $0, count: size), as: UTF8.self) } ?? ""
                headers.append((name.map { String(cString: $0) } ?? "", text))
                idx += 1
            }
        }
        return KafkaMessage(
            topic: topic, partition: m.partition, offset: m.offset, key: key, value: value,
            timestampMillis: tsType == RD_KAFKA_TIMESTAMP_NOT_AVAILABLE ? nil : ts, headers: headers)
    }

    /// Synchronously commits `offsets` (each the next offset to read) for the group.
    public func commit(_ offsets: [TopicPartitionOffset]) throws(KafkaError) {
        guard !offsets.isEmpty else { return }
        let rk = try rkHandle()
        let (err, perPartition) = PartitionList.withList(offsets) { list in
            (rd_kafka_commit(rk, list, 0), PartitionList.read(list))
        }
        if err != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(err, "commit offsets") }
        if let failed = perPartition.first(where: { $0.1 != RD_KAFKA_RESP_ERR_NO_ERROR }) {
            throw KafkaError(failed.1, "commit offset \(failed.0)")
        }
    }

    /// The group's committed offsets for `partitions` (negative when none is committed).
    public func committed(_ partitions: [TopicPartition], timeoutMs: Int32 = 10_000) throws(KafkaError) -> [TopicPartition: Int64] {
        try offsets(of: partitions, "fetch committed offsets") { rd_kafka_committed($0, $1, timeoutMs) }
    }

    /// Runs `fill` (a librdkafka call that sets each entry's offset) over a list of `partitions`.
    private func offsets(of partitions: [TopicPartition], _ what: String,
                         _ fill: (OpaquePointer, UnsafeMutablePointer<rd_kafka_topic_partition_list_t>) -> rd_kafka_resp_err_t) throws(KafkaError) -> [TopicPartition: Int64] {
        let rk = try rkHandle()
        let (err, result) = PartitionList.withList(partitions.map(\.unsetOffset)) { list in (fill(rk, list), PartitionList.read(list)) }
        if err != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(err, what) }
        var out: [TopicPartition: Int64] = [:]
        for (tpo, _) in result { out[TopicPartition(topic: tpo.topic, partition: tpo.partition)] = tpo.offset }
        return out
    }

    /// Low and high watermarks of a partition, asked of the broker.
    public func watermarks(_ tp: TopicPartition, timeoutMs: Int32 = 10_000) throws(KafkaError) -> (low: Int64, high: Int64) {
        try KafkaMetadata.watermarks(try rkHandle(), tp, timeoutMs: timeoutMs)
    }

    /// The low watermark (log start offset) librdkafka last learned from the broker, without asking
    /// it; nil when it has none yet.
    public func cachedLowWatermark(_ tp: TopicPartition) -> Int64? {
        cachedWatermarks(tp)?.low
    }

    /// The log start and end of `tp` as of the last fetch response, from librdkafka's cache (no
    /// broker round trip); nil when it has none yet.
    public func cachedWatermarks(_ tp: TopicPartition) -> (low: Int64, high: Int64)? {
        guard let rk = try? rkHandle() else { return nil }
        var low: Int64 = -1
        var high: Int64 = -1
        guard rd_kafka_get_watermark_offsets(rk, tp.topic, tp.partition, &low, &high) == RD_KAFKA_RESP_ERR_NO_ERROR, low >= 0, high >= 0 else { return nil }
        return (low, high)
    }

    /// End offsets (high watermarks) of many partitions in one ListOffsets round trip.
    public func endOffsets(_ partitions: [TopicPartition], timeoutMs: Int32 = 10_000) throws(KafkaError) -> [TopicPartition: Int64] {
        try KafkaMetadata.endOffsets(try rkHandle(), partitions, timeoutMs: timeoutMs)
    }

    /// Partition ids of `topic`, from broker metadata.
    public func partitions(of topic: String, timeoutMs: Int32 = 10_000) throws(KafkaError) -> [Int32] {
        try KafkaMetadata.partitions(try rkHandle(), topic: topic, timeoutMs: timeoutMs)
    }

    /// The timestamps (ms) of the messages at the given offsets, read by assigning this consumer to
    /// all of them at once and pausing each partition once its message arrived. For a consumer that
    /// does not subscribe (the lag monitor's reader). A partition is missing from the result when its
    /// message carries no timestamp or does not arrive within `timeoutMs` (for all of them together).
    public func timestamps(at positions: [TopicPartitionOffset], timeoutMs: Int32 = 3_000) throws(KafkaError) -> [TopicPartition: Int64] {
        guard !positions.isEmpty else { return [:] }
        let rk = try rkHandle()
        try assign(positions)
        defer { rd_kafka_assign(rk, nil) }
        var waiting = Set(positions.map { TopicPartition(topic: $0.topic, partition: $0.partition) })
        var out: [TopicPartition: Int64] = [:]
        let deadline = ContinuousClock.now + .milliseconds(Int(timeoutMs))
        while !waiting.isEmpty, ContinuousClock.now < deadline {
            guard let m = try poll(timeoutMs: 100) else { continue }
            let tp = TopicPartition(topic: m.topic, partition: m.partition)
            guard waiting.remove(tp) != nil else { continue }
            out[tp] = m.timestampMillis
            // Its first message is all that is wanted: stop fetching the partition.
            _ = PartitionList.withList([tp.unsetOffset]) { rd_kafka_pause_partitions(rk, $0) }
        }
        return out
    }

    /// The application's position in each of `partitions`: the offset after the last message `poll`
    /// returned, moved on past the control records (transaction markers) librdkafka read after it.
    /// Absent for a partition with no position yet. Asks no broker.
    public func positions(_ partitions: [TopicPartition]) throws(KafkaError) -> [TopicPartition: Int64] {
        guard !partitions.isEmpty else { return [:] }
        return try offsets(of: partitions, "read positions") { rk, list in rd_kafka_position(rk, list) }.filter { $0.value >= 0 }
    }

    /// The partitions currently assigned to this consumer.
    public func assignment() throws(KafkaError) -> [TopicPartition] {
        let rk = try rkHandle()
        var list: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?
        let err = rd_kafka_assignment(rk, &list)
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR, let list else { throw KafkaError(err, "read assignment") }
        defer { rd_kafka_topic_partition_list_destroy(list) }
        return PartitionList.read(list).map { TopicPartition(topic: $0.0.topic, partition: $0.0.partition) }
    }

    /// Leaves the group (running the revoke handler) and frees the handle. Idempotent.
    public func close() {
        let rk: OpaquePointer? = lock.withLock { _ in
            let h = handle
            handle = nil
            return h
        }
        guard let rk else { return }
        rd_kafka_consumer_close(rk)
        rd_kafka_destroy(rk)
    }

    private func rkHandle() throws(KafkaError) -> OpaquePointer {
        guard let h = lock.withLock({ _ in handle }) else {
            throw KafkaError(code: RD_KAFKA_RESP_ERR__DESTROY.rawValue, message: "consumer is closed")
        }
        return h
    }
}

/// Holds the rebalance handler for the C callback, which finds it through the conf opaque.
private final class RebalanceBox: @unchecked Sendable {
    // @unchecked Sendable: immutable after init; only called from the polling thread.
    let handler: (RebalanceEvent) -> Void
    init(_ handler: @escaping (RebalanceEvent) -> Void) { self.handler = handler }
}

/// Broker metadata queries shared by consumers and the lag monitor.
enum KafkaMetadata {
    static func watermarks(_ rk: OpaquePointer, _ tp: TopicPartition, timeoutMs: Int32) throws(KafkaError) -> (low: Int64, high: Int64) {
        var low: Int64 = -1
        var high: Int64 = -1
        let err = rd_kafka_query_watermark_offsets(rk, tp.topic, tp.partition, &low, &high, timeoutMs)
        if err != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(err, "query watermarks of \(tp)") }
        return (low, high)
    }

    static func endOffsets(_ rk: OpaquePointer, _ partitions: [TopicPartition], timeoutMs: Int32) throws(KafkaError) -> [TopicPartition: Int64] {
        guard !partitions.isEmpty else { return [:] }
        // ListOffsets with timestamp -1 means "latest": the high watermark of each partition.
        let query = partitions.map { TopicPartitionOffset(topic: $0.topic, partition: $0.partition, offset: -1) }
        let (err, result) = PartitionList.withList(query) { list in
            (rd_kafka_offsets_for_times(rk, list, timeoutMs), PartitionList.read(list))
        }
        if err != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(err, "list end offsets") }
        var out: [TopicPartition: Int64] = [:]
        for (tpo, perr) in result {
            if perr != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(perr, "end offset of \(tpo.topic)/\(tpo.partition)") }
            out[TopicPartition(topic: tpo.topic, partition: tpo.partition)] = tpo.offset
        }
        return out
    }

    /// Partition ids of `topic`, from the broker's metadata.
    static func partitions(_ rk: OpaquePointer, topic: String, timeoutMs: Int32) throws(KafkaError) -> [Int32] {
        var meta: UnsafePointer<rd_kafka_metadata>?
        let rkt = rd_kafka_topic_new(rk, topic, nil)
        defer { if let rkt { rd_kafka_topic_destroy(rkt) } }
        let err = rd_kafka_metadata(rk, 0, rkt, &meta, timeoutMs)
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR, let meta else { throw KafkaError(err, "metadata of \(topic)") }
        defer { rd_kafka_metadata_destroy(meta) }
        var out: [Int32] = []
        for t in 0..<Int(meta.pointee.topic_cnt) {
            let tm = meta.pointee.topics[t]
            guard String(cString: tm.topic) == topic else { continue }
            if tm.err != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(tm.err, "metadata of \(topic)") }
            for p in 0..<Int(tm.partition_cnt) { out.append(tm.partitions[p].id) }
        }
        return out.sorted()
    }
}
