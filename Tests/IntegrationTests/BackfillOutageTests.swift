import CDCCore
import CDCPostgres
import CDCR
import Foundation
import Testing

/// The database name at the end of a test URL.
private func databaseName(_ url: String) -> String { String(url.split(separator: "/").last!) }

/// Ends every backend of cdcr's backfill (its writers, reader and checkers) in `conn`'s database.
private func terminateBackfillBackends(_ conn: PGConnection) throws -> Int {
    try Expect.count(conn, """
        SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                              WHERE application_name LIKE 'cdcr-backfill%' AND datname = current_database()) t
        """)
}

private func chunks(_ tgt: PGConnection) -> Int { (try? Expect.count(tgt, "SELECT coalesce(max(chunks), 0) FROM cdcr.backfill_state")) ?? 0 }

@Suite("backfill: database outages are waited out", .serialized)
struct BackfillOutageTests {
    @Test("the source and target cluster crashes mid-run and comes back: the backfill reconnects, resumes from its checkpoint and ends exact")
    func clusterCrash() throws {
        let pg = try TestPostgres()  // private: this test crashes it
        let source = try pg.createDatabase("src"), target = try pg.createDatabase("tgt")
        var src = try PGConnection.connect(source)
        try populateOrders(src, rows: 6_000)
        try populateOrders(try PGConnection.connect(target), rows: 30)  // rows the backfill updates
        let p = try CDCRProcess.start(["backfill", "--source", source, "--target", target, "--table", "public.orders",
                                       "--chunk-rows", "100", "--max-rows-per-second", "1500", "--json"])
        var tgt = try PGConnection.connect(target)
        #expect(waitUntil(timeout: .seconds(60)) { chunks(tgt) >= 8 }, "\(p.stderr)")
        // An immediate stop loses the chunks whose asynchronous commits were not flushed yet: they
        // are lost together with their checkpoints, and redone.
        pg.crash()
        Thread.sleep(forTimeInterval: 3)
        try pg.start()
        #expect(p.wait(timeout: .seconds(120)) == 0, "\(p.stderr)")
        #expect(p.stderr.contains("reconnecting"), "\(p.stderr)")
        (src, tgt) = (try PGConnection.connect(source), try PGConnection.connect(target))
        let t = try #require(try backfillTables(p.stdout)["public.orders"]?["total"], "\(p.stdout)")
        #expect(t["rows_read"]?.int64Value == 6_000 && t["chunks"]?.int64Value == 60, "\(p.stdout)")
        #expect(t["inserted"]?.int64Value == 5_970 && t["updated"]?.int64Value == 30, "\(p.stdout)")
        #expect(t["verified"]?.int64Value == 60, "\(p.stdout)")
        #expect(try sameRows(src, tgt, ["public.orders"]) == 0)
        #expect(try Expect.count(tgt, "SELECT count(DISTINCT change_id) FROM cdcr.ledger WHERE change_id LIKE 'backfill:%'") == 60)
        #expect(try Expect.count(tgt, "SELECT rows_read FROM cdcr.backfill_state WHERE done") == 6_000)
        pg.crash()
    }

    @Test("backends terminated and the target refusing connections for a while: waited out, exact; past --outage-timeout: exit 1 naming the outage")
    func terminatedAndRefused() throws {
        let pg = try TestPostgres.sharedCluster()
        let (source, target, src, tgt) = try backfillDatabases(pg)
        let admin = try PGConnection.connect(pg.url())
        try populateOrders(src, rows: 5_000)
        let p = try CDCRProcess.start(["backfill", "--source", source, "--target", target, "--table", "public.orders",
                                       "--chunk-rows", "100", "--max-rows-per-second", "1500", "--json"])
        _ = waitUntil(timeout: .seconds(60)) { chunks(tgt) >= 5 }
        // The source's backends first: the read in hand fails, the writes in flight finish or roll back.
        #expect(try terminateBackfillBackends(src) >= 2)
        let atSourceOutage = chunks(tgt)
        #expect(waitUntil(timeout: .seconds(30)) { chunks(tgt) >= atSourceOutage + 3 }, "\(p.stderr)")
        try admin.execute("ALTER DATABASE \(databaseName(target)) ALLOW_CONNECTIONS false")
        #expect(try terminateBackfillBackends(tgt) >= 2)
        let before = chunks(tgt)
        Thread.sleep(forTimeInterval: 4)
        #expect(chunks(tgt) == before, "nothing moved while refused")
        try admin.execute("ALTER DATABASE \(databaseName(target)) ALLOW_CONNECTIONS true")
        #expect(p.wait(timeout: .seconds(120)) == 0, "\(p.stderr)")
        let t = try #require(try backfillTables(p.stdout)["public.orders"]?["total"], "\(p.stdout)")
        #expect(t["rows_read"]?.int64Value == 5_000 && t["inserted"]?.int64Value == 5_000 && t["chunks"]?.int64Value == 50, "\(p.stdout)")
        #expect(try sameRows(src, tgt, ["public.orders"]) == 0)
        #expect(try rowsWithKnownVersion(tgt, "public.orders") == 5_000)
        #expect(try backfillRanges(tgt, "public.orders") == 50, "every chunk's range recorded once, none twice after the outages")

        // An outage longer than --outage-timeout ends the run: exit 1, the outage named; the checkpoint holds.
        let q = try CDCRProcess.start(["backfill", "--source", source, "--target", target, "--table", "public.orders", "--restart",
                                       "--chunk-rows", "100", "--max-rows-per-second", "1000", "--outage-timeout", "2"])
        _ = waitUntil(timeout: .seconds(60)) { (try? Expect.count(tgt, "SELECT coalesce(max(chunks), 0) FROM cdcr.backfill_state WHERE NOT done")) ?? 0 >= 3 }
        try admin.execute("ALTER DATABASE \(databaseName(target)) ALLOW_CONNECTIONS false")
        _ = try terminateBackfillBackends(tgt)
        let status = q.wait(timeout: .seconds(60))
        try admin.execute("ALTER DATABASE \(databaseName(target)) ALLOW_CONNECTIONS true")
        #expect(status == 1, "\(q.stderr)")
        #expect(q.stderr.contains("stayed unreachable"), "\(q.stderr)")
        let rest = try backfill(source, target, ["--table", "public.orders", "--chunk-rows", "500", "--json"])
        #expect(rest.status == 0, "\(rest.stderr)")
        #expect(try backfillTables(rest.stdout)["public.orders"]?["resumed"] == .bool(true))
        #expect(try sameRows(src, tgt, ["public.orders"]) == 0)
    }

    @Test("a database unreachable at the start is an error at once (exit 1), not an outage to wait out")
    func unreachableAtStart() throws {
        let pg = try TestPostgres.sharedCluster()
        let source = try pg.createDatabase("src")
        let started = ContinuousClock.now
        let r = try backfill(source, "postgresql://postgres@127.0.0.1:\(freePort())/nothing", ["--table", "public.orders"])
        #expect(r.status == 1, "\(r.stderr)")
        #expect(r.stderr.contains("cannot connect"), "\(r.stderr)")
        #expect(ContinuousClock.now - started < .seconds(20))
    }
}
