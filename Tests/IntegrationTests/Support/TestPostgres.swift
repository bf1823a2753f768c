import CDCCore
import CDCPostgres
import CDCR
import Foundation
import Synchronization

/// A private PostgreSQL cluster for tests: initdb in a temp dir, listening on a free loopback port,
/// run as the `postgres` OS user when the tests run as root. Stopped when the test process exits.
final class TestPostgres: Sendable {
    let dir: String
    let port: Int
    private let bin: String
    private static let counter = Atomic<Int>(0)
    private static let all = Mutex<[String]>([])

    /// One cluster shared by the tests of this process (each test makes its own databases).
    static let shared: Result<TestPostgres, TestEnvironmentError> = Result { () throws(TestEnvironmentError) in try TestPostgres() }

    static func sharedCluster() throws -> TestPostgres { try shared.get() }

    init() throws(TestEnvironmentError) {
        guard let bin = Self.findBin() else {
            throw TestEnvironmentError("PostgreSQL server binaries not found: install the Debian package postgresql (scripts/test.sh does)")
        }
        self.bin = bin
        self.port = freePort()
        self.dir = FileManager.default.temporaryDirectory.appendingPathComponent("cdcr-test-pg-\(getpid())-\(Self.counter.add(1, ordering: .relaxed).newValue)").path
        try? FileManager.default.removeItem(atPath: dir)
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        if getuid() == 0 { _ = shell(["chown", "postgres:", dir]) }
        let initdb = runAsOwner(["\(bin)/initdb", "-D", "\(dir)/data", "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8"])
        guard initdb.status == 0 else { throw TestEnvironmentError("initdb failed: \(initdb.output)") }
        try start()
        Self.all.withLock { list in
            if list.isEmpty { atexit { TestPostgres.stopAll() } }
            list.append(dir)
        }
    }

    func start() throws(TestEnvironmentError) {
        let r = runAsOwner([
            "\(bin)/pg_ctl", "-D", "\(dir)/data", "-l", "\(dir)/server.log", "-w", "-t", "60",
            "-o", "-p \(port) -k \(dir) -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200", "start",
        ])
        guard r.status == 0 else {
            let log = (try? String(contentsOfFile: "\(dir)/server.log", encoding: .utf8)) ?? ""
            throw TestEnvironmentError("pg_ctl start failed: \(r.output) \(log)")
        }
    }

    /// Stops the server abruptly (as a crash would).
    func crash() {
        _ = runAsOwner(["\(bin)/pg_ctl", "-D", "\(dir)/data", "-m", "immediate", "-w", "stop"])
    }

    func url(_ database: String = "postgres") -> String { "postgresql://postgres@127.0.0.1:\(port)/\(database)" }

    /// Creates a fresh database, optionally with the fixture schema, and returns its URL.
    func createDatabase(_ prefix: String = "t", fixtureSchema: Bool = true) throws -> String {
        let name = "\(prefix)_\(Self.counter.add(1, ordering: .relaxed).newValue)_\(UInt32.random(in: 0...UInt32.max))"
        let admin = try PGConnection.connect(url())
        try admin.execute("CREATE DATABASE \(name)")
        admin.close()
        if fixtureSchema {
            let conn = try PGConnection.connect(url(name))
            try conn.execute(try String(contentsOfFile: Fixtures.root + "/schema.sql", encoding: .utf8))
            conn.close()
        }
        return url(name)
    }

    static func stopAll() {
        guard let bin = findBin() else { return }
        for dir in all.withLock({ $0 }) {
            _ = runAsOwnerStatic(["\(bin)/pg_ctl", "-D", "\(dir)/data", "-m", "immediate", "stop"])
            try? FileManager.default.removeItem(atPath: dir)
        }
    }

    private static func findBin() -> String? {
        let dirs = (try? FileManager.default.contentsOfDirectory(atPath: "/usr/lib/postgresql")) ?? []
        for v in dirs.sorted(by: { (Int($0) ?? 0) > (Int($1) ?? 0) }) where FileManager.default.isExecutableFile(atPath: "/usr/lib/postgresql/\(v)/bin/initdb") {
            return "/usr/lib/postgresql/\(v)/bin"
        }
        return nil
    }

    private func runAsOwner(_ args: [String]) -> (status: Int32, output: String) { Self.runAsOwnerStatic(args) }

    private static func runAsOwnerStatic(_ args: [String]) -> (status: Int32, output: String) {
        getuid() == 0 ? shell(["runuser", "-u", "postgres", "--"] + args) : shell(args)
    }
}

struct TestEnvironmentError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

/// Runs a command to completion, capturing stdout and stderr together.
@discardableResult
func shell(_ args: [String]) -> (status: Int32, output: String) {
    guard let child = try? ChildProcess(args) else { return (127, "cannot start \(args[0])") }
    let status = child.wait(timeout: .seconds(300))
    return (status, child.stdout + child.stderr)
}

/// A TCP port free on loopback right now.
func freePort() -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = 0
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } }
    _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
    return Int(UInt16(bigEndian: addr.sin_port))
}

enum Fixtures {
    /// `../shared/fixtures` next to the project root.
    static let root: String = {
        let projectRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent()
        return projectRoot.deletingLastPathComponent().appendingPathComponent("shared/fixtures").path
    }()

    static let projectRoot: String = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().path
}

extension TestPostgres {
    /// A source database whose change log captures `tables`, an empty target, and a connection to
    /// the source.
    func sourceAndTarget(capturing tables: [String]) throws -> (source: String, target: String, src: PGConnection) {
        let source = try createDatabase("src")
        let target = try createDatabase("tgt")
        let src = try PGConnection.connect(source)
        try SourceChangeLog.install(on: src, tables: tables.map { TableName(parsing: $0) })
        return (source, target, src)
    }
}
