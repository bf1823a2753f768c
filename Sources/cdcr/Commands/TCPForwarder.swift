import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Forwards loopback TCP connections from a fixed port to the mock broker's ephemeral port, so
/// `cdcr dev-kafka --port N` gives clients a stable bootstrap address. Clients then follow the
/// broker address the metadata advertises, so only bootstrap traffic passes through here.
enum TCPForwarder {
    struct SocketError: Error, CustomStringConvertible {
        let description: String
    }

    static func start(listenPort: Int, targetPort: Int) throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw SocketError(description: "socket() failed") }
        var yes: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
        var addr = loopback(port: listenPort)
        let bound = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(fd, 64) == 0 else {
            close(fd)
            throw SocketError(description: String(cString: strerror(errno)))
        }
        Thread.detachNewThread {
            while true {
                let client = accept(fd, nil, nil)
                if client < 0 { continue }
                let upstream = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
                var target = loopback(port: targetPort)
                let ok = withUnsafePointer(to: &target) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(upstream, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
                }
                if ok != 0 { close(client); close(upstream); continue }
                Thread.detachNewThread { pump(from: client, to: upstream) }
                Thread.detachNewThread { pump(from: upstream, to: client) }
            }
        }
    }

    private static func pump(from: Int32, to: Int32) {
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(from, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            var sent = 0
            while sent < n {
                // MSG_NOSIGNAL: a client gone mid-transfer is an EPIPE here, never a SIGPIPE that
                // would end the whole dev-kafka process.
                let w = buffer.withUnsafeBytes { send(to, $0.baseAddress!.advanced(by: sent), n - sent, Int32(MSG_NOSIGNAL)) }
                if w <= 0 { shutdown(from, Int32(SHUT_RDWR)); shutdown(to, Int32(SHUT_RDWR)); close(from); return }
                sent += w
            }
        }
        shutdown(to, Int32(SHUT_WR))
        close(from)
    }

    private static func loopback(port: Int) -> sockaddr_in {
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        return addr
    }
}
