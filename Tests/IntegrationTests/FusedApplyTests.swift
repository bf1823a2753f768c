import CDCCore
@testable import CDCR
import CDCPostgres
import Logging
import Testing

/// Issue #14: the usual batch goes to the target in four round trips (one script, then the
/// settlement pipelined with the COMMIT), with the same outcomes, ledger and guard as the
/// statement-by-statement path, and a failure still names its statement and SQLSTATE.
@Suite("fused apply", .serialized)
struct FusedApplyTests {
    let table = TableName(schema: "public", name: "fa")

    func change(_ id: String, key: Int, status: String? = "new", version: Int64? = nil) -> Result<DecodedMessage, PoisonError> {
        .success(.change(ChangeEvent(
            changeID: id, table: table, operation: status == nil ? .delete : .update,
            key: [("id", .json(.number(String(key))))],
            row: status.map { [("id", .json(.number(String(key)))), ("status", .json(.string($0)))] },
            version: version ?? Int64(id), timestampMicros: nil, format: .native)))
    }

    /// A fresh database with the bookkeeping schema and `public.fa`, and an applier that knows it.
    func setUp() throws -> (PGConnection, BatchApplier) {
        let pg = try TestPostgres.sharedCluster()
        let url = try pg.createDatabase("fa", fixtureSchema: false)
        let conn = try PGConnection.connect(url)
        try BookkeepingSchema.install(on: conn)
        try conn.execute("CREATE TABLE public.fa (id bigint PRIMARY KEY, status text, n int)")
        let applier = BatchApplier(conn: try TargetConnection.open(url), settings: Settings(), logger: Logger(label: "test"))
        applier.learn([table])
        return (conn, applier)
    }

    func apply(_ applier: BatchApplier, _ items: [Result<DecodedMessage, PoisonError>]) throws -> [EventOutcome] {
        try applier.apply(items, prepared: PreparedBatch.make(items, tables: applier.knownTables, settings: Settings()))
    }

    @Test("a clean batch takes four round trips; repeats, in-batch stale changes and guard losers get the outcomes and ledger entries they always had")
    func cleanBatch() throws {
        let (conn, applier) = try setUp()
        defer { conn.close(); applier.conn.close() }
        // Key 9 already holds version 50: its change below loses the guard.
        try conn.execute("INSERT INTO cdcr.row_versions (table_name, row_key, version, deleted) VALUES ('public.fa', '9', 50, false)")

        let items = [change("1", key: 1), change("2", key: 2), change("4", key: 1, status: "paid"), change("3", key: 1, status: "older"),
                     change("2", key: 2, status: "repeat"), change("5", key: 9), .success(.tombstone), .failure(PoisonError(.undecodable, "bad")),
                     change("6", key: 7, status: nil)]
        let outcomes = try apply(applier, items)
        #expect(outcomes[0] == .applied && outcomes[1] == .applied && outcomes[2] == .applied)
        #expect(outcomes[3] == .stale, "older than a change of the same key earlier in the batch")
        #expect(outcomes[4] == .duplicate, "its ID came earlier in the batch")
        #expect(outcomes[5] == .stale, "the stored version 50 is newer")
        #expect(outcomes[6] == .skipped(.tombstone))
        if case .deadLettered = outcomes[7] {} else { Issue.record("poison: \(outcomes[7])") }
        #expect(outcomes[8] == .applied, "a delete of a row the target does not have")
        #expect(applier.roundTrips == 4, "BEGIN…MERGE as one script (1 + 2 COPYs), then settle + COMMIT: \(applier.phases)")
        #expect(applier.phases.map(\.0) == ["claim_stage_guard_merge", "settle_commit"], "the fused path ran")

        #expect(try conn.query("SELECT id::text, status FROM public.fa ORDER BY id").rows == [["1", "paid"], ["2", "new"]])
        #expect(try conn.query("SELECT change_id, outcome::text FROM cdcr.ledger ORDER BY change_id").rows
            == [["1", "a"], ["2", "a"], ["3", "s"], ["4", "a"], ["5", "s"], ["6", "a"]])
        #expect(try conn.query("SELECT row_key, version::text, deleted::text FROM cdcr.row_versions ORDER BY row_key").rows
            == [["1", "4", "false"], ["2", "2", "false"], ["7", "6", "true"], ["9", "50", "false"]])
        #expect(try conn.query("SELECT count(*) FROM pg_stat_activity WHERE state = 'idle in transaction' AND datname = current_database()").scalar == "0", "committed")
    }

    @Test("upserts of new keys go as plain INSERTs; a key that is not new redoes the batch with the guard and the MERGE, which the table then keeps to")
    func insertOnly() throws {
        let (conn, applier) = try setUp()
        defer { conn.close(); applier.conn.close() }
        try conn.execute("""
            CREATE FUNCTION fa_count() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.n := coalesce(NEW.n, 0) + 1; RETURN NEW; END $$;
            CREATE TRIGGER fa_count BEFORE INSERT OR UPDATE ON public.fa FOR EACH ROW EXECUTE FUNCTION fa_count();
            """)
        #expect(try apply(applier, [change("1", key: 1), change("2", key: 2), change("3", key: 1, status: "paid")]) == [.applied, .applied, .applied])
        #expect(applier.phases.map(\.0) == ["claim_stage_insert", "settle_commit"] && applier.roundTrips == 4, "\(applier.phases)")
        #expect(try conn.query("SELECT id::text, status, n::text FROM public.fa ORDER BY id").rows == [["1", "paid", "1"], ["2", "new", "1"]],
                "one row per key, written once (the trigger ran once)")
        #expect(try conn.query("SELECT row_key, version::text, deleted::text FROM cdcr.row_versions ORDER BY row_key").rows
            == [["1", "3", "false"], ["2", "2", "false"]])
        #expect(try conn.query("SELECT string_agg(change_id || outcome::text, ',' ORDER BY change_id) FROM cdcr.ledger").scalar == "1a,2a,3a")

        // Key 1 is in the table and its versions (version 3): the plain INSERT meets 23505, the batch
        // is redone; key 5 is in the table only (written outside cdcr): the MERGE updates it.
        try conn.execute("INSERT INTO public.fa (id, status) VALUES (5, 'outside')")
        #expect(try apply(applier, [change("7", key: 1, status: "late", version: 2), change("8", key: 5, status: "mine")]) == [.stale, .applied])
        #expect(applier.phases.map(\.0) == ["claim_stage_guard_merge", "settle_commit"], "redone the usual way: \(applier.phases)")
        #expect(applier.insertOnlyPause[table] == BatchApplier.insertOnlyPauseBatches - 1)
        #expect(try conn.query("SELECT id::text, status FROM public.fa ORDER BY id").rows == [["1", "paid"], ["2", "new"], ["5", "mine"]])
        #expect(try conn.query("SELECT string_agg(change_id || outcome::text, ',' ORDER BY change_id) FROM cdcr.ledger").scalar == "1a,2a,3a,7s,8a",
                "nothing of the first attempt stayed")

        // Paused: new keys go through the guard and the MERGE for a while.
        #expect(try apply(applier, [change("9", key: 9)]) == [.applied])
        #expect(applier.phases.first?.0 == "claim_stage_guard_merge")
        applier.insertOnlyPause[table] = 1
        #expect(try apply(applier, [change("10", key: 10)]) == [.applied])
        #expect(applier.insertOnlyPause[table] == nil)
        #expect(try apply(applier, [change("11", key: 11)]) == [.applied])
        #expect(applier.phases.first?.0 == "claim_stage_insert", "tried again after the pause")
    }

    @Test("a redelivered batch falls back to the claim that skips duplicates, in the same call; the next new batch is fused again")
    func redelivery() throws {
        let (conn, applier) = try setUp()
        defer { conn.close(); applier.conn.close() }
        let first = [change("1", key: 1), change("2", key: 2)]
        #expect(try apply(applier, first) == [.applied, .applied])

        // The same IDs again, plus one new one: the fused claim's COPY meets 23505, everything is
        // rolled back, and the batch is applied the step-by-step way.
        let again = first + [change("3", key: 3)]
        #expect(try apply(applier, again) == [.duplicate, .duplicate, .applied])
        #expect(applier.roundTrips > 4)
        #expect(try conn.query("SELECT count(*) FROM public.fa").scalar == "3")
        #expect(try conn.query("SELECT string_agg(change_id, ',' ORDER BY change_id) FROM cdcr.ledger").scalar == "1,2,3")

        // `expectDuplicates` now holds for one batch; one that finds none resets it.
        #expect(try apply(applier, [change("4", key: 4)]) == [.applied])
        #expect(try apply(applier, [change("5", key: 5)]) == [.applied])
        #expect(applier.roundTrips == 4, "fused again: \(applier.phases)")
    }

    @Test("a value the target refuses fails the fused MERGE with its SQLSTATE; the batch is isolated and only that change dead-lettered")
    func poisonValue() throws {
        let (conn, applier) = try setUp()
        defer { conn.close(); applier.conn.close() }
        try conn.execute("ALTER TABLE public.fa ADD CONSTRAINT no_evil CHECK (status <> 'evil')")
        applier.learn([table])
        let items = [change("1", key: 1), change("2", key: 2, status: "evil"), change("3", key: 3)]
        let outcomes = try apply(applier, items)
        #expect(outcomes[0] == .applied && outcomes[2] == .applied)
        guard case let .deadLettered(p) = outcomes[1] else { Issue.record("\(outcomes[1])"); return }
        #expect(p.sqlState == "23514", "the MERGE's check violation, classified as before: \(p)")
        #expect(try conn.query("SELECT string_agg(id::text, ',' ORDER BY id) FROM public.fa").scalar == "1,3")
        #expect(try conn.query("SELECT string_agg(change_id, ',' ORDER BY change_id) FROM cdcr.ledger").scalar == "1,3",
                "the dead-lettered change's claim is removed")
    }

    @Test("script: two COPYs and statements in one message, one result each; a failure names its statement and SQLSTATE")
    func script() throws {
        let (conn, applier) = try setUp()
        defer { conn.close(); applier.conn.close() }
        let before = conn.roundTrips
        let results = try conn.script([
            .sql("BEGIN"), .copyIn("COPY public.fa (id, status) FROM STDIN", data: Array("1\ta\n2\tb\n".utf8)),
            .sql("SELECT count(*) FROM public.fa"), .copyIn("COPY public.fa (id, status) FROM STDIN", data: Array("3\tc\n".utf8)),
            .sql("SELECT string_agg(status, '' ORDER BY id) FROM public.fa"), .sql("COMMIT"),
        ])
        #expect(conn.roundTrips - before == 3, "one for the message, one per COPY")
        #expect(results.map(\.affected) == [0, 2, 1, 1, 1, 0])
        #expect(results[2].scalar == "2" && results[4].scalar == "abc")

        do {
            _ = try conn.script([.sql("BEGIN"), .copyIn("COPY public.fa (id, status) FROM STDIN", data: Array("4\td\n1\tdup\n".utf8)),
                                 .sql("SELECT 1/0"), .sql("COMMIT")])
            Issue.record("a duplicate key did not fail the script")
        } catch {
            #expect(error.step == 1 && error.error.sqlState == "23505", "\(error)")
        }
        _ = try conn.execute("ROLLBACK")
        #expect(try conn.query("SELECT count(*) FROM public.fa").scalar == "3", "nothing of the failed script stayed")

        do {
            _ = try conn.script([.sql("SELECT 1"), .sql("SELECT 1/0"), .sql("INSERT INTO public.fa (id) VALUES (99)")])
            Issue.record("division by zero did not fail the script")
        } catch {
            #expect(error.step == 1 && error.error.sqlState == "22012", "\(error)")
        }
        #expect(try conn.query("SELECT count(*) FROM public.fa WHERE id = 99").scalar == "0", "the statements after the failure did not run")
    }

    @Test("pipeline: bound parameters, one round trip; a failure names its statement, the rest is skipped, the connection stays usable")
    func pipeline() throws {
        let (conn, applier) = try setUp()
        defer { conn.close(); applier.conn.close() }
        let before = conn.roundTrips
        let results = try conn.pipeline([("BEGIN", []), ("INSERT INTO public.fa (id, status) VALUES ($1, $2)", ["1", "o'neil"]),
                                         ("SELECT status FROM public.fa WHERE id = $1", ["1"]), ("COMMIT", [])])
        #expect(conn.roundTrips - before == 1)
        #expect(results.count == 4 && results[1].affected == 1 && results[2].scalar == "o'neil")

        do {
            _ = try conn.pipeline([("BEGIN", []), ("INSERT INTO public.fa (id) VALUES ($1)", ["2"]),
                                   ("INSERT INTO public.fa (id) VALUES ($1)", ["1"]), ("COMMIT", [])])
            Issue.record("a duplicate key did not fail the pipeline")
        } catch {
            #expect(error.step == 2 && error.error.sqlState == "23505", "\(error)")
        }
        _ = try conn.execute("ROLLBACK")
        #expect(try conn.query("SELECT string_agg(id::text, ',') FROM public.fa").scalar == "1", "the failed pipeline's transaction was rolled back")
    }

    @Test("quoteLiteral reads back as the string it quoted, with or without backslashes")
    func literals() throws {
        let (conn, applier) = try setUp()
        defer { conn.close(); applier.conn.close() }
        for s in ["plain", "o'neil", #"back\slash"#, #"both\' '\"#, "ünï", ""] {
            #expect(try conn.query("SELECT \(quoteLiteral(s))").scalar == s)
        }
    }
}
