import CRdKafka
import Synchronization

/// A message to produce, with optional headers.
public struct OutgoingMessage: Sendable {
    public let topic: String
    public let partition: Int32?
    public let key: [UInt8]?
    public let value: [UInt8]?
    public let headers: [(String, String)]

    public init(topic: String, partition: Int32? = nil, key: [UInt8]?, value: [UInt8]?, headers: [(String, String)] = []) {
        self.topic = topic
        self.partition = partition
        self.key = key
        self.value = value
        self.headers = headers
    }
}

/// A producer whose `send` returns only once the broker acknowledged every message (or one failed).
///
/// Ownership: this object owns the `rd_kafka_t` and destroys it once in `close()`/deinit after a flush.
/// Delivery reports arrive on the thread that calls `rd_kafka_poll`/`flush`, i.e. inside `send`.
public final class KafkaProducer: @unchecked Sendable {
    // @unchecked Sendable: `handle` is guarded by `lock`; `send` holds `sendLock`, and delivery reports
    // carry the call's generation, so one call's reports are never mixed with another's.
    private let lock = Mutex<Void>(())
    private let sendLock = Mutex<Void>(())
    private var handle: OpaquePointer?
    private let reports: DeliveryReports

    /// `properties` are librdkafka settings; acks default to `all` so an acknowledged message is durable.
    public init(properties: [(String, String)]) throws(KafkaError) {
        var props: [(String, String)] = [("acks", "all"), ("linger.ms", "5")]
        props.append(contentsOf: properties)
        let conf = try KafkaConf.make(props)
        let reports = DeliveryReports()
        rd_kafka_conf_set_opaque(conf, Unmanaged.passUnretained(reports).toOpaque())
        rd_kafka_conf_set_dr_msg_cb(conf) { _, msg, opaque in
            guard let msg, let opaque else { return }
            let reports = Unmanaged<DeliveryReports>.fromOpaque(opaque).takeUnretainedValue()
            reports.record(msg.pointee.err, offset: msg.pointee.offset, tag: UInt64(UInt(bitPattern: msg.pointee._private)))
        }
        self.reports = reports
        self.handle = try KafkaConf.newHandle(RD_KAFKA_PRODUCER, conf)
    }

    deinit { close() }

    /// Produces `messages` and waits until all are acknowledged; returns each one's offset, in the
    /// order given.
    /// Throws the first delivery error (nothing is retried here beyond librdkafka's own retries).
    @discardableResult
    public func send(_ messages: [OutgoingMessage], timeoutMs: Int32 = 30_000) throws(KafkaError) -> [Int64] {
        guard !messages.isEmpty else { return [] }
        let rk = try rkHandle()
        return try sendLock.withLock { _ throws(KafkaError) -> [Int64] in
            let generation = reports.begin(count: messages.count)
            for (i, m) in messages.enumerated() {
                while true {
                    let err = produce(rk, m, tag: DeliveryReports.tag(generation: generation, index: i))
                    if err == RD_KAFKA_RESP_ERR__QUEUE_FULL { rd_kafka_poll(rk, 50); continue }
                    if err != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(err, "produce to \(m.topic)") }
                    break
                }
            }
            // A deadline, not a count of polls: rd_kafka_poll returns as soon as it served a report,
            // so with reports arriving a few at a time 600 polls pass in well under 30 s.
            let deadline = ContinuousClock.now + .milliseconds(timeoutMs)
            while reports.count < messages.count && ContinuousClock.now < deadline {
                rd_kafka_poll(rk, 50)
            }
            let (count, firstError, offsets) = reports.snapshot()
            if let firstError { throw KafkaError(firstError, "deliver message") }
            if count < messages.count {
                throw KafkaError(code: RD_KAFKA_RESP_ERR__TIMED_OUT.rawValue, message: "broker did not acknowledge \(messages.count - count) message(s) within \(timeoutMs) ms")
            }
            return offsets
        }
    }

    /// Produces one message; `tag` comes back with its delivery report.
    private func produce(_ rk: OpaquePointer, _ m: OutgoingMessage, tag: UInt64) -> rd_kafka_resp_err_t {
        var headers: OpaquePointer? = nil
        if !m.headers.isEmpty {
            headers = rd_kafka_headers_new(m.headers.count)
            for (name, value) in m.headers {
                _ = rd_kafka_header_add(headers, name, -1, value, value.utf8.count)
            }
        }
        let err: rd_kafka_resp_err_t = m.topic.withCString { topic in
            withOptionalBytes(m.key) { keyPtr, keyLen in
                withOptionalBytes(m.value) { valPtr, valLen in
                    var vus = [rd_kafka_vu_t](repeating: rd_kafka_vu_t(), count: 7)
                    vus[0].vtype = RD_KAFKA_VTYPE_TOPIC
                    vus[0].u.cstr = topic
                    vus[1].vtype = RD_KAFKA_VTYPE_KEY
                    vus[1].u.mem.ptr = keyPtr
                    vus[1].u.mem.size = keyLen
                    vus[2].vtype = RD_KAFKA_VTYPE_VALUE
                    vus[2].u.mem.ptr = valPtr
                    vus[2].u.mem.size = valLen
                    vus[3].vtype = RD_KAFKA_VTYPE_MSGFLAGS
                    vus[3].u.i = RD_KAFKA_MSG_F_COPY
                    vus[4].vtype = RD_KAFKA_VTYPE_PARTITION
                    vus[4].u.i32 = m.partition ?? RD_KAFKA_PARTITION_UA
                    vus[5].vtype = RD_KAFKA_VTYPE_OPAQUE
                    vus[5].u.ptr = UnsafeMutableRawPointer(bitPattern: UInt(tag))
                    var count = 6
                    if let headers {
                        // Ownership of the headers passes to librdkafka on success.
                        vus[6].vtype = RD_KAFKA_VTYPE_HEADERS
                        vus[6].u.headers = headers
                        count = 7
                    }
                    guard let error = rd_kafka_produceva(rk, &vus, count) else { return RD_KAFKA_RESP_ERR_NO_ERROR }
                    let code = rd_kafka_error_code(error)
                    rd_kafka_error_destroy(error)
                    return code
                }
            }
        }
        if err != RD_KAFKA_RESP_ERR_NO_ERROR, let headers { rd_kafka_headers_destroy(headers) }
        return err
    }

    /// Flushes outstanding messages and frees the handle. Idempotent.
    public func close() {
        let rk: OpaquePointer? = lock.withLock { _ in
            let h = handle
            handle = nil
            return h
        }
        guard let rk else { return }
        _ = rd_kafka_flush(rk, 5_000)
        rd_kafka_destroy(rk)
    }

    /// Low and high watermarks of a partition.
    public func watermarks(_ tp: TopicPartition, timeoutMs: Int32 = 10_000) throws(KafkaError) -> (low: Int64, high: Int64) {
        try KafkaMetadata.watermarks(try rkHandle(), tp, timeoutMs: timeoutMs)
    }

    private func rkHandle() throws(KafkaError) -> OpaquePointer {
        guard let h = lock.withLock({ _ in handle }) else {
            throw KafkaError(code: RD_KAFKA_RESP_ERR__DESTROY.rawValue, message: "producer is closed")
        }
        return h
    }
}

/// Delivery results of the batch in flight.
private final class DeliveryReports: @unchecked Sendable {
    // @unchecked Sendable: all state is behind `state`.
    /// The current `send` call's generation, its reports so far, first error and offsets by message.
    private let state = Mutex<(generation: UInt32, count: Int, error: rd_kafka_resp_err_t?, offsets: [Int64])>((0, 0, nil, []))

    /// Starts a `send` of `count` messages. Reports of earlier calls (one that timed out or failed
    /// part-way, whose messages librdkafka still delivers) carry an older generation and are ignored,
    /// so they can neither complete this call nor fail it.
    func begin(count: Int) -> UInt32 {
        state.withLock { s in
            let next = s.generation == .max ? 1 : s.generation + 1  // never 0: a tag of 0 would be a null opaque
            s = (next, 0, nil, [Int64](repeating: -1, count: count))
            return next
        }
    }

    /// A message's opaque tag: the call's generation (never 0, so never a null pointer) and its index.
    static func tag(generation: UInt32, index: Int) -> UInt64 { UInt64(generation) << 32 | UInt64(index) }

    func record(_ err: rd_kafka_resp_err_t, offset: Int64, tag: UInt64) {
        state.withLock { s in
            let index = Int(tag & 0xFFFF_FFFF)
            guard tag >> 32 == UInt64(s.generation), index < s.offsets.count else { return }
            s.count += 1
            s.offsets[index] = offset
            if err != RD_KAFKA_RESP_ERR_NO_ERROR && s.error == nil { s.error = err }
        }
    }

    var count: Int { state.withLock { $0.count } }

    func snapshot() -> (Int, rd_kafka_resp_err_t?, [Int64]) { state.withLock { ($0.count, $0.error, $0.offsets) } }
}

private func withOptionalBytes<R>(_ bytes: [UInt8]?, _ body: (UnsafeMutableRawPointer?, Int) -> R) -> R {
    guard let bytes else { return body(nil, 0) }
    var copy = bytes
    return copy.withUnsafeMutableBytes { body($0.baseAddress, $0.count) }
}
