import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A loopback TCP proxy in front of a Kafka broker that passes every frame through byte for byte,
/// except ApiVersions (key 18) responses of version 3 and later, whose top-level tagged fields it
/// drops (`KafkaWire.droppingTopLevelTaggedFields`).
///
/// Why: librdkafka before 2.2 (Debian ships 2.0.2) skips one byte too few for every tagged field it
/// does not know, so it misreads tansu's ApiVersions v3 response, which carries all four top-level
/// tagged fields, and fails the handshake. No field in there matters to librdkafka. See docs/BROKERS.md.
///
/// Two threads per connection (client → broker reads the request headers, broker → client rewrites);
/// `stop()` shuts every socket down, which ends all of them.
final class KafkaProxy: Sendable {
    /// The port clients connect to.
    let port: Int
    private let upstreamPort: Int
    private let listener: Int32
    /// Sockets open now (listener excluded) and whether `stop()` ran; a socket leaves the set before
    /// it is closed, so `stop()` never shuts down a descriptor number reused for something else.
    private let sockets = Mutex<(open: Set<Int32>, stopped: Bool)>(([], false))

    init(listenPort: Int, upstreamPort: Int) throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestEnvironmentError("proxy: socket: \(String(cString: strerror(errno)))") }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var addr = loopback(port: listenPort)
        let bound = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard bound == 0, listen(fd, 64) == 0 else {
            let message = String(cString: strerror(errno))
            close(fd)
            throw TestEnvironmentError("proxy: cannot listen on 127.0.0.1:\(listenPort): \(message)")
        }
        self.port = listenPort
        self.upstreamPort = upstreamPort
        self.listener = fd
        Thread { [self] in acceptLoop() }.start()
    }

    /// Stops accepting and ends every connection. Idempotent. Must be called: the accept thread holds
    /// the proxy until then.
    func stop() {
        let first = sockets.withLock { s in
            defer { s.stopped = true }
            for fd in s.open { shutdown(fd, Int32(SHUT_RDWR)) }
            return !s.stopped
        }
        // On Linux, shutting a listening socket down wakes the thread blocked in accept().
        if first { shutdown(listener, Int32(SHUT_RDWR)) }
    }

    private func acceptLoop() {
        defer { close(listener) }
        while true {
            let client = accept(listener, nil, nil)
            if client < 0 {
                if errno == EINTR { continue }
                return
            }
            guard let upstream = connectUpstream() else {
                close(client)
                continue
            }
            guard track([client, upstream]) else {
                close(client)
                close(upstream)
                return
            }
            let connection = Connection(client: client, upstream: upstream)
            Thread { [self] in
                pump(from: client, to: upstream) { frame in
                    if let h = KafkaWire.requestHeader(frame) { connection.sent(h.correlationID, apiKey: h.apiKey, version: h.apiVersion) }
                    return frame
                }
                finish(connection)
            }.start()
            Thread { [self] in
                pump(from: upstream, to: client) { frame in
                    guard let id = KafkaWire.responseCorrelationID(frame), let request = connection.answered(id),
                          request.apiKey == KafkaWire.apiVersionsKey, request.version >= 3 else { return frame }
                    return KafkaWire.droppingTopLevelTaggedFields(apiVersionsResponse: frame) ?? frame
                }
                finish(connection)
            }.start()
        }
    }

    /// Adds sockets to the open set, unless the proxy stopped meanwhile.
    private func track(_ fds: [Int32]) -> Bool {
        sockets.withLock { s in
            guard !s.stopped else { return false }
            s.open.formUnion(fds)
            return true
        }
    }

    /// Called by each of a connection's two threads when its direction ended: the first shuts both
    /// sockets down (so the other thread's read returns), the second closes them.
    private func finish(_ c: Connection) {
        let last = c.directionEnded()
        let fds = [c.client, c.upstream]
        if !last {
            for fd in fds { shutdown(fd, Int32(SHUT_RDWR)) }
            return
        }
        sockets.withLock { s in for fd in fds { s.open.remove(fd) } }
        for fd in fds { close(fd) }
    }

    /// Copies whole frames from `source` to `sink` through `transform` until either side ends.
    private func pump(from source: Int32, to sink: Int32, _ transform: ([UInt8]) -> [UInt8]) {
        while let prefix = readExactly(source, 4), let size = KafkaWire.frameSize(prefix), size >= 0, size < 1 << 30,
              let body = readExactly(source, size) {
            guard writeAll(sink, transform(prefix + body)) else { return }
        }
    }

    private func connectUpstream() -> Int32? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        var addr = loopback(port: upstreamPort)
        let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard rc == 0 else {
            close(fd)
            return nil
        }
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        return fd
    }

    /// One proxied connection: which requests await their response.
    private final class Connection: Sendable {
        let client: Int32
        let upstream: Int32
        private let pending = Mutex<(requests: [Int32: (apiKey: Int16, version: Int16)], ended: Int)>(([:], 0))

        init(client: Int32, upstream: Int32) {
            self.client = client
            self.upstream = upstream
        }

        func sent(_ id: Int32, apiKey: Int16, version: Int16) { pending.withLock { $0.requests[id] = (apiKey, version) } }

        func answered(_ id: Int32) -> (apiKey: Int16, version: Int16)? { pending.withLock { $0.requests.removeValue(forKey: id) } }

        /// True for the second of the two directions to end.
        func directionEnded() -> Bool { pending.withLock { s in s.ended += 1; return s.ended == 2 } }
    }
}

private func loopback(port: Int) -> sockaddr_in {
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = UInt16(port).bigEndian
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    return addr
}

/// Reads exactly `count` bytes, or nil at end of stream or on error.
private func readExactly(_ fd: Int32, _ count: Int) -> [UInt8]? {
    var buffer = [UInt8](repeating: 0, count: count)
    var done = 0
    while done < count {
        let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress! + done, count - done, 0) }
        if n > 0 { done += n; continue }
        if n < 0 && errno == EINTR { continue }
        return nil
    }
    return buffer
}

private func writeAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
    var done = 0
    while done < bytes.count {
        let n = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + done, bytes.count - done, Int32(MSG_NOSIGNAL)) }
        if n > 0 { done += n; continue }
        if n < 0 && errno == EINTR { continue }
        return false
    }
    return true
}
