import CDCCore
@testable import CDCR
import CDCPostgres
import Logging
import Testing

/// A batch into a target whose statistics say it is empty (VACUUMed while empty) reads the target
/// by key: the MERGE is not a nested loop with a sequential scan of the target per staged row
/// (O(n²) in the batch, as the rescans read the statement's own inserts).
@Suite("apply: batch plans that stay linear in the batch's size", .serialized)
struct ApplyPlanTests {
    let table = TableName(schema: "public", name: "ap")

    func change(_ id: Int, key: Int, delete: Bool = false) -> Result<DecodedMessage, PoisonError> {
        .success(.change(ChangeEvent(
            changeID: "c\(id)", table: table, operation: delete ? .delete : .update,
            key: [("id", .json(.number(String(key))))],
            row: delete ? nil : [("id", .json(.number(String(key)))), ("status", .json(.string("s\(id)")))],
            version: Int64(id), timestampMicros: nil, format: .native)))
    }

    @Test("a 6,000-change batch with a delete (the MERGE path) into a vacuumed empty table scans it a few times, not once per change")
    func noScanPerRow() throws {
        let pg = try TestPostgres.sharedCluster()
        let url = try pg.createDatabase("ap", fixtureSchema: false)
        let conn = try PGConnection.connect(url)
        defer { conn.close() }
        try BookkeepingSchema.install(on: conn)
        try conn.execute("CREATE TABLE public.ap (id bigint PRIMARY KEY, status text); ALTER TABLE public.ap SET (autovacuum_enabled = false)")
        try conn.execute("VACUUM ANALYZE public.ap")  // statistics say: empty
        let before = try tableScans(conn, "public.ap", inserted: 0)
        let target = try TargetConnection.open(url, applying: true)
        let applier = BatchApplier(conn: target, settings: Settings(), logger: Logger(label: "test"))
        applier.learn([table])
        // New keys and one delete: a delete keeps the batch off the insert-only path.
        let items = (1...6_000).map { change($0, key: $0) } + [change(6_001, key: 1, delete: true)]
        let outcomes = try applier.apply(items, prepared: PreparedBatch.make(items, tables: applier.knownTables, settings: Settings()))
        #expect(outcomes.count == items.count)
        target.close()
        #expect(try Expect.count(conn, "SELECT count(*) FROM public.ap") == 5_999)
        let after = try tableScans(conn, "public.ap", inserted: 5_999)
        #expect(after.inserts >= 5_999, "the applier's statistics were not reported")
        // A per-row scan plan shows as ≥ 6,000 scans; reading by key as a handful.
        #expect(after.seqScans - before.seqScans <= 20, "sequential scans of the target: \(after.seqScans - before.seqScans)")
    }
}
