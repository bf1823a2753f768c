/// The few pieces of the Kafka wire protocol the test proxy (`KafkaProxy`) reads. Every function works
/// on one whole frame: the 4-byte big-endian size prefix followed by that many bytes.
///
/// Layouts (https://kafka.apache.org/protocol#protocol_messages):
/// - request header (v1 and v2 both start so): `api_key INT16, api_version INT16, correlation_id INT32, …`
/// - ApiVersions responses always use response header v0 (`correlation_id INT32`, no tagged fields),
///   even for the flexible versions, so a client can read the error of a version it did not expect.
/// - ApiVersionsResponse v3+ body: `error_code INT16, api_keys COMPACT_ARRAY[api_key INT16,
///   min_version INT16, max_version INT16, TAG_BUFFER], throttle_time_ms INT32, TAG_BUFFER`, where the
///   top-level TAG_BUFFER may carry SupportedFeatures (tag 0), FinalizedFeaturesEpoch (tag 1),
///   FinalizedFeatures (tag 2) and ZkMigrationReady (tag 3).
/// - TAG_BUFFER: `count UVARINT`, then per field `tag UVARINT, size UVARINT, size bytes`;
///   COMPACT_ARRAY: `length+1 UVARINT` (0 = null), then the elements.
enum KafkaWire {
    static let apiVersionsKey: Int16 = 18

    /// The size a frame's prefix announces, or nil when `prefix` holds fewer than 4 bytes.
    static func frameSize(_ prefix: [UInt8]) -> Int? {
        guard prefix.count >= 4 else { return nil }
        return Int(Int32(bitPattern: UInt32(prefix[0]) << 24 | UInt32(prefix[1]) << 16 | UInt32(prefix[2]) << 8 | UInt32(prefix[3])))
    }

    /// Api key, api version and correlation ID of a request frame.
    static func requestHeader(_ frame: [UInt8]) -> (apiKey: Int16, apiVersion: Int16, correlationID: Int32)? {
        var r = Reader(frame, from: 4)
        guard let key = r.int16(), let version = r.int16(), let id = r.int32() else { return nil }
        return (key, version, id)
    }

    /// The correlation ID of a response frame (the first field of every response header).
    static func responseCorrelationID(_ frame: [UInt8]) -> Int32? {
        var r = Reader(frame, from: 4)
        return r.int32()
    }

    /// An ApiVersions v3+ response frame with its top-level tagged fields dropped (the section
    /// rewritten to the empty one, a single 0x00) and the size prefix fixed; nil when there is
    /// nothing to drop, the response carries an error (then the body may be in the v0 layout), or the
    /// frame does not parse exactly as the layout above (then it must pass unchanged).
    /// The per-entry tag buffers of `api_keys` stay as they are.
    static func droppingTopLevelTaggedFields(apiVersionsResponse frame: [UInt8]) -> [UInt8]? {
        guard frameSize(frame) == frame.count - 4 else { return nil }
        var r = Reader(frame, from: 4)
        guard r.int32() != nil, let error = r.int16(), error == 0, let length = r.uvarint(), length > 0 else { return nil }
        for _ in 0..<(length - 1) {
            guard r.skip(6), r.skipTaggedFields() else { return nil }
        }
        guard r.skip(4) else { return nil }
        let taggedStart = r.position
        guard let count = r.uvarint(), count > 0, r.skipTaggedFields(count: count), r.position == frame.count else { return nil }
        var out = Array(frame[..<taggedStart])
        out.append(0x00)
        let size = UInt32(out.count - 4)
        out[0] = UInt8(size >> 24); out[1] = UInt8(size >> 16 & 0xFF); out[2] = UInt8(size >> 8 & 0xFF); out[3] = UInt8(size & 0xFF)
        return out
    }

    /// A bounds-checked cursor over a frame.
    struct Reader {
        let bytes: [UInt8]
        var position: Int

        init(_ bytes: [UInt8], from position: Int) {
            self.bytes = bytes
            self.position = position
        }

        mutating func skip(_ n: Int) -> Bool {
            guard n >= 0, position + n <= bytes.count else { return false }
            position += n
            return true
        }

        mutating func int16() -> Int16? {
            guard position + 2 <= bytes.count else { return nil }
            defer { position += 2 }
            return Int16(bitPattern: UInt16(bytes[position]) << 8 | UInt16(bytes[position + 1]))
        }

        mutating func int32() -> Int32? {
            guard position + 4 <= bytes.count else { return nil }
            defer { position += 4 }
            return Int32(bitPattern: bytes[position..<position + 4].reduce(UInt32(0)) { $0 << 8 | UInt32($1) })
        }

        /// An unsigned varint of at most 5 bytes (32 bits), as Kafka uses for lengths and tags.
        mutating func uvarint() -> Int? {
            var value: UInt32 = 0
            for shift in stride(from: 0, through: 28, by: 7) {
                guard position < bytes.count else { return nil }
                let b = bytes[position]
                position += 1
                value |= UInt32(b & 0x7F) << UInt32(shift)
                if b < 0x80 { return Int(value) }
            }
            return nil
        }

        /// Skips a TAG_BUFFER; `count` when its count was read already.
        mutating func skipTaggedFields(count known: Int? = nil) -> Bool {
            guard let count = known ?? uvarint() else { return false }
            for _ in 0..<count {
                guard uvarint() != nil, let size = uvarint(), skip(size) else { return false }
            }
            return true
        }
    }
}
