import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Appends a transaction commit marker (a control record batch, as a transaction coordinator writes
/// at commit) to a partition of the mock broker, through a raw ProduceRequest v3. The mock cluster
/// stores any record batch as sent, but its own transaction support writes no markers: this is how
/// tests get the offset a real Kafka topic fed by a transactional producer (Debezium's exactly-once
/// source support, Kafka Streams) has after each transaction, which consumers never receive.
enum TransactionMarker {
    static func appendCommit(bootstrap: String, topic: String, partition: Int32) throws {
        var batch = KafkaEncoder()
        batch.i32(-1)  // partitionLeaderEpoch
        batch.i8(2)  // magic
        let crcAt = batch.bytes.count
        batch.i32(0)  // crc, filled in below
        let crcFrom = batch.bytes.count
        batch.i16(0x30)  // attributes: transactional | control
        batch.i32(0)  // lastOffsetDelta
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        batch.i64(now); batch.i64(now)
        batch.i64(4_242); batch.i16(0); batch.i32(-1)  // producer id, epoch, base sequence
        batch.i32(1)  // one record: key = (version 0, type 1 = COMMIT), value = (version 0, coordinator epoch 0)
        var record = KafkaEncoder()
        record.i8(0); record.varint(0); record.varint(0)
        record.varint(4); record.i16(0); record.i16(1)
        record.varint(6); record.i16(0); record.i32(0)
        record.varint(0)
        batch.varint(Int64(record.bytes.count)); batch.bytes += record.bytes
        let crc = crc32c(batch.bytes[crcFrom...])
        withUnsafeBytes(of: crc.bigEndian) { batch.bytes.replaceSubrange(crcAt..<crcAt + 4, with: $0) }
        var records = KafkaEncoder()
        records.i64(0); records.i32(Int32(batch.bytes.count)); records.bytes += batch.bytes

        var request = KafkaEncoder()
        request.i16(0); request.i16(3); request.i32(1); request.string("cdcr-test-marker")  // Produce v3 header
        request.i16(-1)  // no transactional id
        request.i16(-1); request.i32(10_000)  // acks all, timeout
        request.i32(1); request.string(topic)
        request.i32(1); request.i32(partition); request.i32(Int32(records.bytes.count)); request.bytes += records.bytes
        var framed = KafkaEncoder()
        framed.i32(Int32(request.bytes.count)); framed.bytes += request.bytes

        let parts = bootstrap.split(separator: ":")
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestEnvironmentError("socket failed") }
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(parts[1])!).bigEndian
        addr.sin_addr.s_addr = inet_addr(String(parts[0]))
        let connected = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard connected == 0 else { throw TestEnvironmentError("connect to \(bootstrap) failed") }
        guard framed.bytes.withUnsafeBytes({ send(fd, $0.baseAddress, $0.count, 0) }) == framed.bytes.count else {
            throw TestEnvironmentError("send failed")
        }
        // Response: size, correlation id, [topic [partition, error_code, base_offset, …]], throttle.
        var response = [UInt8](repeating: 0, count: 512)
        var got = 0
        while got < 4 || got < 4 + Int(KafkaEncoder.readI32(response, 0)) {
            let n = response.withUnsafeMutableBytes { recv(fd, $0.baseAddress! + got, $0.count - got, 0) }
            guard n > 0 else { throw TestEnvironmentError("no produce response") }
            got += n
        }
        let topicLength = Int(KafkaEncoder.readI16(response, 12))
        let errorAt = 14 + topicLength + 4 + 4
        let error = KafkaEncoder.readI16(response, errorAt)
        guard error == 0 else { throw TestEnvironmentError("marker produce refused: error \(error)") }
    }

    /// CRC-32C (Castagnoli), as Kafka record batches carry it.
    static func crc32c(_ bytes: ArraySlice<UInt8>) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for b in bytes {
            crc ^= UInt32(b)
            for _ in 0..<8 { crc = crc & 1 == 1 ? (crc >> 1) ^ 0x82F6_3B78 : crc >> 1 }
        }
        return ~crc
    }
}

/// Big-endian Kafka protocol encoding, just what the tests' raw requests need.
struct KafkaEncoder {
    var bytes: [UInt8] = []
    mutating func i8(_ v: Int8) { bytes.append(UInt8(bitPattern: v)) }
    mutating func i16(_ v: Int16) { withUnsafeBytes(of: v.bigEndian) { bytes += $0 } }
    mutating func i32(_ v: Int32) { withUnsafeBytes(of: v.bigEndian) { bytes += $0 } }
    mutating func i64(_ v: Int64) { withUnsafeBytes(of: v.bigEndian) { bytes += $0 } }
    mutating func string(_ s: String) { i16(Int16(s.utf8.count)); bytes += Array(s.utf8) }
    /// Zigzag varint.
    mutating func varint(_ v: Int64) {
        var z = UInt64(bitPattern: (v << 1) ^ (v >> 63))
        while z >= 0x80 { bytes.append(UInt8(z & 0x7F) | 0x80); z >>= 7 }
        bytes.append(UInt8(z))
    }
    static func readI32(_ b: [UInt8], _ at: Int) -> Int32 { Int32(bitPattern: UInt32(b[at]) << 24 | UInt32(b[at + 1]) << 16 | UInt32(b[at + 2]) << 8 | UInt32(b[at + 3])) }
    static func readI16(_ b: [UInt8], _ at: Int) -> Int16 { Int16(bitPattern: UInt16(b[at]) << 8 | UInt16(b[at + 1])) }
}
