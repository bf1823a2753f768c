import CDCCore
@testable import CDCR
import CDCPostgres
import Dispatch
import Foundation
import Logging
import Synchronization
import Testing

/// Issue #15: range watermarks. A backfill chunk into an empty key range records the range and its
/// watermark instead of a version entry per row; the version guard (fused and step by step, the
/// insert-only path too) reads a key's version as the greater of its entry and its range's floor,
/// and the fence keeps a guard from reading the floors while a chunk is recording one.
@Suite("range watermarks in the version guard", .serialized)
struct RangeFloorTests {
    let table = TableName(schema: "public", name: "rf")

    func change(_ id: String, key: Int, status: String? = "new", version: Int64?) -> Result<DecodedMessage, PoisonError> {
        .success(.change(ChangeEvent(
            changeID: id, table: table, operation: status == nil ? .delete : .update,
            key: [("id", .json(.number(String(key))))],
            row: status.map { [("id", .json(.number(String(key)))), ("status", .json(.string($0)))] },
            version: version, timestampMicros: nil, format: .native)))
    }

    /// A fresh database with the bookkeeping schema and `ddl`'s table `name` (`public.rf` unless
    /// given), and an applier that knows it.
    func setUp(_ database: String, settings: Settings = Settings(), ddl: String = "CREATE TABLE public.rf (id bigint PRIMARY KEY, status text)",
               name: TableName? = nil) throws -> (String, PGConnection, BatchApplier) {
        let pg = try TestPostgres.sharedCluster()
        let url = try pg.createDatabase(database, fixtureSchema: false)
        let conn = try PGConnection.connect(url)
        try BookkeepingSchema.install(on: conn)
        try conn.execute(ddl)
        let applier = BatchApplier(conn: try TargetConnection.open(url), settings: settings, logger: Logger(label: "test"))
        applier.learn([name ?? table])
        return (url, conn, applier)
    }

    /// Ranges [start, 100) at 50, [100, 200) at 80, [300, end) at 90 — a gap at [200, 300) — and the
    /// copied rows 1…150 without entries; key 30 has an entry above its floor, key 40 one below it.
    func seedRanges(_ conn: PGConnection) throws {
        try conn.execute("""
            INSERT INTO cdcr.backfill_ranges (table_name, run_id, chunk, lower_key, upper_key, version) VALUES
                ('public.rf', 'r1', 1, NULL, '["100"]', 50), ('public.rf', 'r1', 2, '["100"]', '["200"]', 80),
                ('public.rf', 'r1', 4, '["300"]', NULL, 90);
            INSERT INTO public.rf SELECT g, 'copy' FROM generate_series(1, 150) g;
            INSERT INTO cdcr.row_versions (table_name, row_key, version, deleted) VALUES ('public.rf', '30', 70, false), ('public.rf', '40', 10, false);
            """)
    }

    func statuses(_ conn: PGConnection, _ keys: [Int]) throws -> [String] {
        try keys.map { try conn.query("SELECT coalesce((SELECT status FROM public.rf WHERE id = $1::bigint), '-')", [String($0)]).scalar ?? "?" }
    }

    @Test("a key's version is the greater of its entry and its range's floor: bounds inclusive below, exclusive above; gaps and versionless changes apply",
          arguments: [true, false])
    func floors(fused: Bool) throws {
        let (_, conn, applier) = try setUp("rf_floors_\(fused)")
        defer { conn.close(); applier.conn.close() }
        try seedRanges(conn)
        let items = [
            change("a", key: 10, status: "older", version: 40),     // floor 50: stale
            change("b", key: 99, status: "newer", version: 60),     // floor 50: applies
            change("c", key: 100, status: "older", version: 60),    // the second range starts here (80): stale
            change("d", key: 150, status: nil, version: 70),        // a delete below the floor 80: stale
            change("e", key: 199, status: "older", version: 79),    // stale
            change("f", key: 200, status: "gap", version: 1),       // the second range ends before 200: no floor
            change("g", key: 350, status: "older", version: 85),    // the open last range (90): stale, not inserted
            change("h", key: 20, status: "versionless", version: nil),  // no version: always applies
            change("i", key: 30, status: "older", version: 60),     // its entry (70) is above its floor (50): stale
            change("j", key: 40, status: "older", version: 45),     // its entry (10) is below its floor (50): stale
            change("k", key: 120, status: nil, version: 81),        // above the floor: deleted
        ]
        let outcomes = fused
            ? try applier.apply(items, prepared: PreparedBatch.make(items, tables: applier.knownTables, settings: Settings()))
            : try applier.apply(items)
        #expect(outcomes == [.stale, .applied, .stale, .stale, .stale, .applied, .stale, .applied, .stale, .stale, .applied], "\(outcomes)")
        if fused { #expect(applier.phases.first?.0 == "claim_stage_guard_merge", "\(applier.phases)") }
        #expect(try statuses(conn, [10, 99, 100, 150, 199, 200, 350, 20, 30, 40, 120])
            == ["copy", "newer", "copy", "copy", "-", "gap", "-", "versionless", "copy", "copy", "-"])
        // Losers write no entry; key 20's versionless entry keeps no version, so its floor still holds.
        #expect(try conn.query("SELECT string_agg(row_key || ':' || coalesce(version::text, 'null'), ',' ORDER BY row_key) FROM cdcr.row_versions").scalar
            == "120:81,20:null,200:1,30:70,40:10,99:60")
        #expect(try applier.apply([change("l", key: 20, status: "late", version: 49)]) == [.stale], "key 20's floor outlives its versionless change")
    }

    @Test("the insert-only path leaves out and reports the rows at or below their floor")
    func insertOnlyPath() throws {
        let (_, conn, applier) = try setUp("rf_insert")
        defer { conn.close(); applier.conn.close() }
        try seedRanges(conn)
        let items = [change("a", key: 250, version: 5), change("b", key: 350, version: 85), change("c", key: 360, version: 95), change("d", key: 300, version: 90)]
        let outcomes = try applier.apply(items, prepared: PreparedBatch.make(items, tables: applier.knownTables, settings: Settings()))
        #expect(applier.phases.first?.0 == "claim_stage_insert", "\(applier.phases)")
        #expect(outcomes == [.applied, .stale, .applied, .stale])
        #expect(try statuses(conn, [250, 350, 360, 300]) == ["new", "-", "new", "-"])
        #expect(try conn.query("SELECT string_agg(row_key, ',' ORDER BY row_key) FROM cdcr.row_versions WHERE row_key::int >= 250").scalar == "250,360")
        #expect(try conn.query("SELECT string_agg(change_id || outcome::text, ',' ORDER BY change_id) FROM cdcr.ledger").scalar == "aa,bs,ca,ds")
    }

    @Test("a truncate raises the floors to its version: late older changes of copied keys stay stale")
    func truncateRaisesFloors() throws {
        var settings = Settings()
        settings.applyTruncate = true
        let (_, conn, applier) = try setUp("rf_truncate", settings: settings)
        defer { conn.close(); applier.conn.close() }
        try seedRanges(conn)
        #expect(try applier.apply([.success(.truncate(table, version: 95))]) == [.applied])
        #expect(try conn.query("SELECT string_agg(version::text, ',' ORDER BY chunk) FROM cdcr.backfill_ranges").scalar == "95,95,95")
        #expect(try applier.apply([change("a", key: 120, status: "resurrected", version: 90), change("b", key: 121, status: "after", version: 96)])
            == [.stale, .applied])
        #expect(try statuses(conn, [120, 121]) == ["-", "after"])
    }

    @Test("composite and uuid keys: ranges compare as row values in the key's own order")
    func compositeKeys() throws {
        let name = TableName(schema: "public", name: "rc")
        let (_, conn, applier) = try setUp("rf_composite", ddl: "CREATE TABLE public.rc (a int, b uuid, v text, PRIMARY KEY (a, b))", name: name)
        defer { conn.close(); applier.conn.close() }
        let mid = "80000000-0000-0000-0000-000000000000"
        try conn.execute("""
            INSERT INTO cdcr.backfill_ranges (table_name, run_id, chunk, lower_key, upper_key, version) VALUES
                ('public.rc', 'r1', 1, NULL, '["5", "\(mid)"]', 50), ('public.rc', 'r1', 2, '["5", "\(mid)"]', NULL, 70)
            """)
        func change(_ id: String, _ a: Int, _ b: String, version: Int64) -> Result<DecodedMessage, PoisonError> {
            .success(.change(ChangeEvent(
                changeID: id, table: name, operation: .update, key: [("a", .json(.number(String(a)))), ("b", .json(.string(b)))],
                row: [("a", .json(.number(String(a)))), ("b", .json(.string(b))), ("v", .json(.string(id)))],
                version: version, timestampMicros: nil, format: .native)))
        }
        let items = [
            change("p", 5, "7fffffff-ffff-ffff-ffff-ffffffffffff", version: 60),  // below (5, mid): floor 50, applies
            change("q", 5, mid, version: 60),                                      // the second range's first key: floor 70, stale
            change("r", 4, "ffffffff-ffff-ffff-ffff-ffffffffffff", version: 55),  // applies
            change("s", 6, "00000000-0000-0000-0000-000000000000", version: 65),  // stale
            change("t", 10, mid, version: 71),                                     // applies
        ]
        #expect(try applier.apply(items, prepared: PreparedBatch.make(items, tables: applier.knownTables, settings: Settings()))
            == [.applied, .stale, .applied, .stale, .applied])
        #expect(try conn.query("SELECT string_agg(v, ',' ORDER BY v) FROM public.rc").scalar == "p,r,t")
    }

    @Test("a chunk holding the table's fence makes the stream's batch wait; the batch then reads the chunk's floor")
    func fence() throws {
        let (url, conn, applier) = try setUp("rf_fence")
        defer { conn.close(); applier.conn.close() }
        let chunk = try PGConnection.connect(url)
        defer { chunk.close() }
        try chunk.execute("BEGIN")
        try chunk.query(RangeFloors.fenceExclusive(table))
        try chunk.execute("""
            INSERT INTO public.rf VALUES (500, 'copy');
            INSERT INTO cdcr.backfill_ranges (table_name, run_id, chunk, lower_key, upper_key, version) VALUES ('public.rf', 'r1', 1, NULL, NULL, 100)
            """)
        let items = [change("a", key: 500, status: nil, version: 50)]
        let prepared = PreparedBatch.make(items, tables: applier.knownTables, settings: Settings())
        let result = Mutex<[EventOutcome]?>(nil)
        let done = DispatchSemaphore(value: 0)
        let box = UncheckedSendable(applier)
        DispatchQueue.global().async {
            result.withLock { $0 = try? box.value.apply(items, prepared: prepared) }
            done.signal()
        }
        #expect(done.wait(timeout: .now() + 1.5) == .timedOut, "the batch waits for the chunk")
        #expect(try conn.query("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())").scalar == "1",
                "the batch's shared request, waiting (other suites' locks are in other databases)")
        try chunk.execute("COMMIT")
        #expect(done.wait(timeout: .now() + 10) == .success)
        #expect(result.withLock { $0 } == [.stale], "the delete is older than the copy's watermark")
        #expect(try statuses(conn, [500]) == ["copy"])
    }
}
