import CDCCore
import CDCKafka
import CDCPostgres
@testable import CDCR
import Foundation
import Testing

/// What an unlucky operator meets: malformed connection strings, negative numbers, a source without
/// the change log, a dev broker whose client hangs up. Each stops with a clear message or survives.
@Suite("operator input")
struct OperatorInputTests {
    @Test("a malformed connection string is a configuration error (exit 64, the setting named), never retried, its password never printed", arguments: [
        ["--target", "postgresql://u:SECRETPW@[::1:55599/db"],
        ["--target", "postgresql://u:SEC%ZZRETPW@127.0.0.1:1/db"],
        ["--target", "notaurl-SECRETPW"],
        ["--target", "host=127.0.0.1 password='SECRETPW"],
    ])
    func malformedURL(_ flags: [String]) throws {
        for command in [["run", "--brokers", "127.0.0.1:1"], ["verify", "--source", "postgresql://x@127.0.0.1:1/x"], ["init"]] {
            let started = ContinuousClock.now
            let r = try CDCRProcess.run(command + flags, timeout: .seconds(30))
            #expect(r.status == 64, "\(command[0]): \(r.stderr)")
            #expect(ContinuousClock.now - started < .seconds(10), "refused at once, not retried")
            #expect(r.stderr.contains("target_url") && r.stderr.contains("malformed connection string"), "\(r.stderr)")
            #expect(!(r.stderr + r.stdout).contains("SECRETPW") && !(r.stderr + r.stdout).contains("SEC%ZZ"))
        }
    }

    @Test("a malformed URL in the config file or the environment names the setting too")
    func malformedURLElsewhere() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("cdcr-url-\(UUID().uuidString).json").path
        try #"{"source_url": "postgresql://u:SECRETPW@[::1/db"}"#.write(toFile: path, atomically: true, encoding: .utf8)
        let fromFile = try CDCRProcess.run(["audit", "--config", path, "--target", "postgresql://x@127.0.0.1:1/x"])
        #expect(fromFile.status == 64 && fromFile.stderr.contains("source_url") && !fromFile.stderr.contains("SECRETPW"), "\(fromFile.stderr)")
        let fromEnv = try CDCRProcess.run(["init"], env: ["CDCR_TARGET_URL": "postgresql://u:SECRETPW@h:99999/db"])
        #expect(fromEnv.status == 64 && fromEnv.stderr.contains("CDCR_TARGET_URL") && !fromEnv.stderr.contains("SECRETPW"), "\(fromEnv.stderr)")
    }

    @Test("libpq's error text is scrubbed of the password, as written and percent-decoded")
    func scrubbing() {
        let url = "postgresql://app:p%40ss%2Fw0rd@db:5432/x"
        let scrubbed = ConnectionString.scrub(#"could not connect: "p%40ss%2Fw0rd" and "p@ss/w0rd""#, conninfo: url)
        #expect(!scrubbed.contains("w0rd"), "\(scrubbed)")
        let pairs = ConnectionString.scrub(#"missing "=" after "TopSecret" in connection info string"#, conninfo: "host=db password=TopSecret")
        #expect(!pairs.contains("TopSecret"), "\(pairs)")
        #expect(ConnectionString.secrets(of: "postgres://db/x?user=a&password=s3cr%65t").contains("s3cret"))
        // Malformed: every part of the string is taken out of the message.
        let malformed = ConnectionString.scrub("bad URI postgresql://u:SECRETPW@[::1:5/db here", conninfo: "postgresql://u:SECRETPW@[::1:5/db")
        #expect(!malformed.contains("SECRETPW"), "\(malformed)")
        #expect((try? ConnectionString(validating: "postgresql://app@[::1]:5432,other:5433/db?sslmode=require")) != nil)
        #expect((try? ConnectionString(validating: "postgresql:///db?host=/tmp")) != nil)
        #expect((try? ConnectionString(validating: "host=/tmp dbname='my db' password='it\\'s'"))?.secrets == ["it's"])
    }

    @Test("the admin token comparison takes no shortcut: equal only when every byte and the length match")
    func tokenComparison() {
        #expect(constantTimeEqual("Bearer abc", "Bearer abc"))
        #expect(!constantTimeEqual("Bearer abd", "Bearer abc"))
        #expect(!constantTimeEqual("Bearer ab", "Bearer abc"))
        #expect(!constantTimeEqual("Bearer abc\u{0}", "Bearer abc"))
        #expect(!constantTimeEqual("", "Bearer abc"))
    }

    @Test("a negative number is read as a value and refused by name, not as a missing value")
    func negativeNumbers() throws {
        let r = try CDCRProcess.run(["run", "--target", "postgresql://x@127.0.0.1:1/x", "--batch-max-events", "-5"])
        #expect(r.status == 64)
        #expect(r.stderr.contains("batch.max_events") && r.stderr.contains("got -5"), "\(r.stderr)")
        #expect(!r.stderr.contains("Missing value"))
        let lag = try CDCRProcess.run(["lag", "--window", "-3"])
        #expect(lag.status == 64 && lag.stderr.contains("--window"), "\(lag.stderr)")
    }

    @Test("a non-string entry in tables says which one")
    func tablesEntry() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("cdcr-tables-\(UUID().uuidString).json").path
        try #"{"tables": ["public.orders", 5, "public.items"]}"#.write(toFile: path, atomically: true, encoding: .utf8)
        #expect {
            _ = try SettingsLoader.load(file: path, environment: [:], overrides: SettingsOverrides())
        } throws: { error in
            let d = (error as? ConfigError)?.description ?? ""
            return d.contains("tables") && d.contains("entry 2") && d.contains("5")
        }
    }

    @Test("a second brokers key in the config file is an error that names it")
    func duplicateConfigKey() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("cdcr-dup-\(UUID().uuidString).json").path
        try #"{"brokers": "good:9092", "group": "g", "brokers": "evil:9092"}"#.write(toFile: path, atomically: true, encoding: .utf8)
        #expect {
            _ = try SettingsLoader.load(file: path, environment: [:], overrides: SettingsOverrides())
        } throws: { error in
            (error as? ConfigError)?.description.contains("duplicate member name 'brokers'") == true
        }
    }

    @Test("run --source against a source without the change log says to install it")
    func sourceWithoutChangeLog() throws {
        let pg = try TestPostgres.sharedCluster()
        let source = try pg.createDatabase("nolog")
        let target = try pg.createDatabase()
        let r = try CDCRProcess.run(["run", "--brokers", "127.0.0.1:1", "--target", target, "--source", source,
                                     "--gap-fill-interval", "1", "--gap-fill-window", "2", "--gap-fill-settle", "0",
                                     "--kafka-property", "log_level=0"], timeout: .seconds(60))
        #expect(r.status == 64, "\(r.stderr.suffix(1500))")
        #expect(r.stderr.contains("cdcr source install") && r.stderr.contains("source_url"), "\(r.stderr.suffix(1500))")
        let conn = try PGConnection.connect(target)
        defer { conn.close() }
        let replay = try CDCRProcess.run(["replay", "--target", target, "--source", source,
                                          "--from", try utcInstant(conn, "-1 hour"), "--to", try utcInstant(conn, "-30 minutes")])
        #expect(replay.stderr.contains("cdcr source install"), "\(replay.stderr.suffix(1500))")
    }

    @Test("dev-kafka --port survives clients that hang up mid-transfer")
    func devKafkaSurvivesHangups() throws {
        let port = freePort()
        let broker = try CDCRProcess.start(["dev-kafka", "--port", "\(port)", "--topic", "t"])
        defer { broker.signal(SIGKILL); _ = broker.wait(timeout: .seconds(5)) }
        let deadline = ContinuousClock.now + .seconds(10)
        while !broker.stdout.contains("bootstrap="), ContinuousClock.now < deadline { usleep(50_000) }
        // An ApiVersions request, then a reset before the answer is read: the forwarder then writes
        // to a closed socket.
        var request = KafkaEncoder()
        request.i16(18); request.i16(0); request.i32(1); request.string("hangup")
        let frame = withUnsafeBytes(of: Int32(request.bytes.count).bigEndian) { Array($0) } + request.bytes
        for _ in 0..<40 {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var addr = sockaddr_in()
            addr.sin_family = sa_family_t(AF_INET)
            addr.sin_port = in_port_t(UInt16(port).bigEndian)
            addr.sin_addr.s_addr = inet_addr("127.0.0.1")
            let ok = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
            if ok == 0 {
                _ = frame.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                var hard = linger(l_onoff: 1, l_linger: 0)
                setsockopt(fd, SOL_SOCKET, SO_LINGER, &hard, socklen_t(MemoryLayout<linger>.size))
            }
            close(fd)
        }
        usleep(500_000)
        #expect(!broker.hasExited, "dev-kafka died: status \(broker.wait(timeout: .seconds(1)))")
        // Still serving through the port.
        let producer = try KafkaProducer(properties: [("bootstrap.servers", "127.0.0.1:\(port)"), ("log_level", "0")])
        defer { producer.close() }
        try producer.send([OutgoingMessage(topic: "t", partition: 0, key: nil, value: Array("x".utf8))])
    }
}
