import CDCCore
import CDCPostgres
@testable import CDCR
import Foundation
import Testing

@Suite("configuration and secrets")
struct ConfigTests {
    @Test("the example config file loads, and precedence is flags > environment > file > defaults")
    func precedence() throws {
        let file = Fixtures.projectRoot + "/config/cdcr.example.json"
        let fromFile = try SettingsLoader.load(file: file, environment: [:], overrides: SettingsOverrides())
        #expect(fromFile.group == "cdcr" && fromFile.tables?.count == 2 && fromFile.batchMaxEvents == 20_000)
        #expect(fromFile.targetTable(for: TableName(parsing: "legacy.orders")) == TableName(parsing: "public.orders"))
        #expect(fromFile.kafkaProperties.contains { $0 == ("session.timeout.ms", "30000") })
        #expect(fromFile.effectiveChangeLogRetentionDays == 7)

        let env = ["CDCR_GROUP": "from-env", "CDCR_TOPICS": "a, b", "CDCR_BROKERS": "env:9092"]
        var flags = SettingsOverrides()
        flags.brokers = "flag:9092"
        let merged = try SettingsLoader.load(file: file, environment: env, overrides: flags)
        #expect(merged.group == "from-env" && merged.topics == ["a", "b"] && merged.brokers == "flag:9092")
        #expect(merged.deadLetterTopic(for: "a") == "a.dlq")
    }

    @Test("bad values stop with a message naming the setting", arguments: [
        (["CDCR_FORMAT": "xml"], "CDCR_FORMAT"),
        (["CDCR_BATCH_MAX_EVENTS": "lots"], "CDCR_BATCH_MAX_EVENTS"),
        (["CDCR_BATCH_MAX_EVENTS": "0"], "--batch-max-events"),
        (["CDCR_ON_POISON": "ignore"], "CDCR_ON_POISON"),
        (["CDCR_CHANGE_LOG_RETENTION_DAYS": "-1"], "change_log_retention_days"),
    ])
    func badEnvironment(_ env: [String: String], _ named: String) {
        #expect {
            _ = try SettingsLoader.load(file: nil, environment: env, overrides: SettingsOverrides())
        } throws: { error in
            (error as? ConfigError)?.description.contains(named) == true
        }
    }

    @Test("the verify section loads, and a bad value in it is refused by name")
    func verifySection() throws {
        let dir = FileManager.default.temporaryDirectory.path
        let good = "\(dir)/cdcr-verify-good-\(getpid()).json", bad = "\(dir)/cdcr-verify-bad-\(getpid()).json"
        try #"{"verify": {"tables": ["shop.orders"], "float_tolerance": 0.001, "settle_seconds": 5}}"#.write(toFile: good, atomically: true, encoding: .utf8)
        try #"{"verify": {"float_tolerance": -1}}"#.write(toFile: bad, atomically: true, encoding: .utf8)
        let s = try SettingsLoader.load(file: good, environment: [:], overrides: SettingsOverrides())
        #expect(s.verify.tables == [TableName(schema: "shop", name: "orders")] && s.verify.floatTolerance == 0.001 && s.verify.settleSeconds == 5)
        #expect {
            _ = try SettingsLoader.load(file: bad, environment: [:], overrides: SettingsOverrides())
        } throws: { error in
            (error as? ConfigError)?.description.contains("verify.float_tolerance") == true
        }
    }

    @Test("an unknown key in the config file is refused by name")
    func unknownKey() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("cdcr-cfg-\(UUID().uuidString).json").path
        try #"{"brokers": "x:1", "batch": {"max_evnts": 5}}"#.write(toFile: path, atomically: true, encoding: .utf8)
        #expect {
            _ = try SettingsLoader.load(file: path, environment: [:], overrides: SettingsOverrides())
        } throws: { error in
            (error as? ConfigError)?.description.contains("batch.max_evnts") == true
        }
    }

    @Test("a bad flag stops the binary with a message naming it")
    func badFlag() throws {
        let r = try CDCRProcess.run(["run", "--target", "postgresql://x@127.0.0.1:1/x", "--on-poison", "ignore"])
        #expect(r.status != 0)
        #expect(r.stderr.contains("--on-poison") && r.stderr.contains("'ignore'"))
    }

    @Test("connection strings are redacted")
    func redaction() {
        #expect(redactConnectionString("postgresql://app:s3cret@db:5432/x?sslmode=require") == "postgresql://app:***@db:5432/x?sslmode=require")
        #expect(redactConnectionString("postgres://db/x?user=a&password=s3cret") == "postgres://db/x?user=a&password=***")
        #expect(redactConnectionString("host=db password=s3cret user=a") == "host=db password=*** user=a")
        #expect(redactConnectionString("postgresql://app@db/x") == "postgresql://app@db/x")
    }

    @Test("an unreachable target is waited out and its password never logged")
    func secretsNotLogged() throws {
        let port = freePort()
        let p = try CDCRProcess.start(["run", "--brokers", "127.0.0.1:1", "--target", "postgresql://app:TopSecret42@127.0.0.1:\(port)/x"])
        sleep(3)
        #expect(!p.hasExited, "a target outage is waited out, not fatal")
        p.signal(SIGTERM)
        _ = p.wait(timeout: .seconds(20))
        #expect(p.stderr.contains("target unavailable, retrying"))
        #expect(p.stderr.contains("app:***@127.0.0.1"))
        #expect(!p.stderr.contains("TopSecret42") && !p.stdout.contains("TopSecret42"))
    }
}

@Suite("bookkeeping")
struct BookkeepingTests {
    @Test("init is idempotent, and pruning removes only ledger entries and tombstones older than the retention")
    func pruning() throws {
        let pg = try TestPostgres.sharedCluster()
        let target = try pg.createDatabase()
        #expect(try CDCRProcess.run(["init", "--target", target]).status == 0)
        let again = try CDCRProcess.run(["init", "--target", target])
        #expect(again.status == 0 && again.stdout.contains("up to date"))
        let conn = try PGConnection.connect(target)
        try conn.execute("""
            INSERT INTO cdcr.ledger (change_id, table_name, outcome, processed_at) VALUES
              ('old', 'public.orders', 'a', now() - interval '10 days'), ('new', 'public.orders', 'a', now());
            INSERT INTO cdcr.row_versions (table_name, row_key, version, deleted, updated_at) VALUES
              ('public.orders', '1', 5, true, now() - interval '10 days'), ('public.orders', '2', 5, false, now() - interval '10 days'),
              ('public.orders', '3', 5, true, now());
            """)
        #expect(try BookkeepingSchema.prune(on: conn, olderThanDays: 7, chunk: 1) == 2)
        #expect(try Expect.count(conn, "SELECT count(*) FROM cdcr.ledger") == 1)
        #expect(try Expect.count(conn, "SELECT count(*) FROM cdcr.row_versions") == 2, "live rows' versions are kept however old")
    }
}
