import CDCCore
import CDCPostgres
import CDCR
import Foundation
import Testing

/// Source and target `public.orders` with planted differences, and review items recorded for them
/// through `ReconcileStore` as a reconcile run would.
struct ReviewFixture {
    let source: String
    let target: String
    let src: PGConnection
    let tgt: PGConnection
    let runID: String
    /// Item ID per planted key.
    var ids: [String: Int64] = [:]

    var common: [String] { ["--source", source, "--target", target] }

    /// Orders 1…20 on both sides, then: 3 and 9 differ in `status`, 5 is missing from the target,
    /// 7 is extra in the target, 11 differs in `amount` (and is made equal again before an apply).
    init(_ pg: TestPostgres) throws {
        source = try pg.createDatabase("rvsrc")
        target = try pg.createDatabase("rvtgt")
        src = try PGConnection.connect(source)
        tgt = try PGConnection.connect(target)
        let fill = "INSERT INTO public.orders (id, customer_id, status, amount) SELECT i, i % 4, 'paid', i * 1.5 FROM generate_series(1, 20) i"
        try src.execute(fill)
        try tgt.execute(fill)
        try tgt.execute("""
            UPDATE public.orders SET status = 'lost' WHERE id IN (3, 9);
            UPDATE public.orders SET amount = 99 WHERE id = 11;
            DELETE FROM public.orders WHERE id = 5;
            """)
        try src.execute("DELETE FROM public.orders WHERE id = 7")
        try BookkeepingSchema.install(on: tgt)
        runID = ReconcileStore.newRunID()
        let table = TableName(parsing: "public.orders")
        try ReconcileStore.startRun(id: runID, job: "nightly", kind: .full, trigger: .schedule, scheduledFor: Date(), tables: [table], on: tgt)
        func finding(_ id: Int, _ kind: DiscrepancyKind, _ columns: [String] = []) -> Finding {
            var f = Finding(table: table, targetTable: table, rowKeyJSON: "{\"id\": \"\(id)\"}", keyText: String(id), kind: kind)
            f.columns = columns
            if kind != .missing { f.targetValuesJSON = "{\"id\": \(id), \"status\": \"\(id == 7 ? "paid" : "lost")\"}" }
            if kind != .extra { f.sourceValuesJSON = "{\"id\": \(id), \"status\": \"paid\"}" }
            return f
        }
        let findings = [finding(3, .different, ["status"]), finding(5, .missing), finding(7, .extra), finding(9, .different, ["status"]),
                        finding(11, .different, ["amount"])]
        let recorded = try ReconcileStore.record(findings, runID: runID, on: tgt)
        for (f, id) in zip(findings, recorded.ids) { ids[f.keyText] = id }
        try ReconcileStore.resolve([ids["3"]!, ids["5"]!, ids["7"]!], as: .queued, policy: "manual", reason: "policy manual", on: tgt)
        var counts = RunCounts()
        counts.found = 5
        counts.newFound = 5
        counts.queued = 3
        try ReconcileStore.finishRun(id: runID, status: .drift, counts: counts, error: nil, on: tgt)
    }

    func status(_ id: Int) throws -> String? {
        try tgt.query("SELECT status FROM public.orders WHERE id = $1", [String(id)]).rows.first?[0] ?? nil
    }

    func item(_ key: String) throws -> Discrepancy { try #require(try ReconcileStore.get(ids[key]!, on: tgt)) }
}

func json(_ text: String) throws -> JSONValue { try JSONParser.parse(text.trimmingCharacters(in: .whitespacesAndNewlines)) }

@Suite("review queue: approve, reject, apply through repair", .serialized)
struct ReviewTests {
    @Test("the filter grammar: fields, alternatives, and clear refusals; never SQL")
    func filterGrammar() throws {
        let f = try ReviewFilter(parsing: "table=orders|public.order_items, kind=different,column=status,status=queued|open,id=4|5")
        #expect(f.tables == [TableName(parsing: "public.orders"), TableName(parsing: "public.order_items")])
        #expect(f.kinds == [.different] && f.columns == ["status"] && f.statuses == [.queued, .open] && f.ids == [4, 5])
        for (bad, says) in [("", "empty"), ("tablex=1", "unknown"), ("kind=sideways", "kind 'sideways'"), ("table=a,table=b", "twice"),
                            ("status=maybe", "status 'maybe'"), ("id=1;drop table x", "positive integer"), ("column=", "empty value"),
                            ("table=a=b", "FIELD=VALUE")] {
            #expect(throws: ReviewError.self, "\(bad)") { try ReviewFilter(parsing: bad) }
            do { _ = try ReviewFilter(parsing: bad) } catch { #expect(error.description.contains(says), "\(bad): \(error)") }
        }
    }

    @Test("the trend rule and the audit status rule, on hand-computed series")
    func trendAndAudit() {
        let up = DriftTrend(daily: [0, 0, 0, 1, 0, 1, 4])
        #expect(up.slope == 0.5 && up.direction == .increasing)
        #expect(DriftTrend(daily: [4, 1, 0, 1, 0, 0, 0]).direction == .decreasing)
        #expect(DriftTrend(daily: [0, 0, 0, 0, 0, 0, 1]).direction == .stable, "fitted change 0.64 < 1 discrepancy")
        #expect(DriftTrend(daily: [5, 6, 5, 6, 5, 6, 5]).direction == .stable)
        #expect(DriftTrend(daily: Array(repeating: 0, count: 30)).direction == .stable)
        func audit(failed: [String] = [], rejected: Int = 0, open: Int = 0, awaiting: Int = 0, queued: Int = 0, runs: Int = 1) -> AuditStatus {
            AuditStatus.evaluate(failedRuns: failed, rejected: rejected, openAtEnd: open, awaitingApply: awaiting, queued: queued,
                                 finishedRuns: runs, overloadLimit: 10).0
        }
        #expect(audit() == .ok)
        #expect(audit(open: 3) == .partial && audit(awaiting: 1) == .partial && audit(runs: 0) == .partial)
        #expect(audit(open: 10) == .overload && audit(queued: 12) == .overload)
        #expect(audit(failed: ["r"], open: 50) == .reject && audit(rejected: 1) == .reject)
    }

    @Test("approve → applied through repair and logged (undoable), reject → target kept; only open or queued items can be decided")
    func approveRejectApply() throws {
        let pg = try TestPostgres.sharedCluster()
        let f = try ReviewFixture(pg)
        let id = { (key: String) in String(f.ids[key]!) }

        let listed = try CDCRProcess.run(["review", "list", "--json", "--target", f.target])
        #expect(listed.status == 0, "\(listed.stderr)")
        let items = try json(listed.stdout)["items"]
        guard case let .array(all)? = items else { Issue.record("no items: \(listed.stdout)"); return }
        #expect(all.count == 5)
        let queued = try CDCRProcess.run(["review", "list", "--json", "--status", "queued", "--target", f.target])
        guard case let .array(q)? = try json(queued.stdout)["items"] else { Issue.record("\(queued.stdout)"); return }
        #expect(Set(q.compactMap { $0["key_text"]?.stringValue }) == ["3", "5", "7"])

        // Side by side, re-read now: only status differs for 3.
        let shown = try CDCRProcess.run(["review", "show", id("3"), "--json"] + f.common)
        #expect(shown.status == 0, "\(shown.stderr)")
        let detail = try json(shown.stdout)
        #expect(detail["values"] == .string("live") && detail["currently"] == .string("different"), "\(shown.stdout)")
        guard case let .array(cells)? = detail["cells"] else { Issue.record("\(shown.stdout)"); return }
        let differing = cells.filter { $0["differs"] == .bool(true) }.compactMap { $0["column"]?.stringValue }
        #expect(differing == ["status"], "\(shown.stdout)")
        #expect(cells.first { $0["column"] == .string("status") }?["source"] == .string("paid"))
        #expect(cells.first { $0["column"] == .string("status") }?["target"] == .string("lost"))
        let text = try CDCRProcess.run(["review", "show", id("3")] + f.common)
        #expect(text.stdout.contains("* status") && text.stdout.contains("  amount"), "\(text.stdout)")

        var r = try CDCRProcess.run(["review", "approve", id("3"), id("5"), id("11"), "--by", "alice", "--target", f.target])
        #expect(r.status == 0, "\(r.stderr)")
        r = try CDCRProcess.run(["review", "approve", id("3"), "--target", f.target])
        #expect(r.status == 3 && r.stderr.contains("is approved (by alice)"), "\(r.stderr)")
        r = try CDCRProcess.run(["review", "reject", id("9"), "--target", f.target])
        #expect(r.status == 64 && r.stderr.contains("--reason"), "\(r.stderr)")
        r = try CDCRProcess.run(["review", "reject", id("9"), "424242", "--reason", "x", "--target", f.target])
        #expect(r.status == 3 && r.stderr.contains("no review item 424242"), "\(r.stderr)")
        #expect(try f.item("9").resolution == .open, "all or nothing: 9 stays open")
        r = try CDCRProcess.run(["review", "reject", id("9"), "--reason", "the target is right", "--by", "bob", "--target", f.target])
        #expect(r.status == 0, "\(r.stderr)")
        // A failed rule cannot be repaired: approving it is refused, by ID or by filter.
        let rule = try ReconcileStore.record([Finding(table: TableName(parsing: "public.orders"), targetTable: TableName(parsing: "public.orders"),
                                                      rowKeyJSON: nil, keyText: "orders_total", kind: .rule)], runID: f.runID, on: f.tgt).ids[0]
        r = try CDCRProcess.run(["review", "approve", String(rule), id("9"), "--target", f.target])
        #expect(r.status == 3 && r.stderr.contains("is a rule finding, which repair cannot fix"), "\(r.stderr)")
        #expect(r.stderr.contains("item \(id("9")) is rejected (by bob)"), "\(r.stderr)")
        #expect(try f.item("9").resolution == .rejected && f.item("9").decidedBy == "bob", "nothing changed")
        r = try CDCRProcess.run(["review", "approve", "--matching", "kind=rule", "--target", f.target])
        #expect(r.status == 64 && r.stderr.contains("reject them instead"), "\(r.stderr)")
        r = try CDCRProcess.run(["review", "approve", "--matching", "tablex=1", "--target", f.target])
        #expect(r.status == 64 && r.stderr.contains("unknown"), "\(r.stderr)")
        r = try CDCRProcess.run(["review", "approve", "--matching", "table=public.orders,kind=extra", "--by", "carol", "--target", f.target])
        #expect(r.status == 0 && r.stdout.contains(id("7")), "\(r.stdout) \(r.stderr)")
        let nine = try f.item("9")
        #expect(nine.resolution == .rejected && nine.decidedBy == "bob" && nine.reason == "the target is right" && nine.decidedAt != nil)
        #expect(try f.item("3").decidedBy == "alice" && f.item("7").decidedBy == "carol")

        // 11 caught up since it was found: already equal when applied.
        try f.tgt.execute("UPDATE public.orders SET amount = 16.5 WHERE id = 11")
        let applied = try CDCRProcess.run(["review", "apply", "--json"] + f.common)
        #expect(applied.status == 2, "extra row 7 kept without --allow-delete: \(applied.stdout) \(applied.stderr)")
        let result = try json(applied.stdout)
        let run = try #require(result["run_id"]?.stringValue)
        guard case let .array(outcomes)? = result["items"] else { Issue.record("\(applied.stdout)"); return }
        let byKey = Dictionary(uniqueKeysWithValues: outcomes.map { ($0["key_text"]?.stringValue ?? "", $0) })
        #expect(byKey["3"]?["outcome"] == .string("repaired") && byKey["3"]?["action"] == .string("update"), "\(applied.stdout)")
        #expect(byKey["5"]?["outcome"] == .string("repaired") && byKey["5"]?["action"] == .string("insert"))
        #expect(byKey["11"]?["outcome"] == .string("already_equal"))
        #expect(byKey["7"]?["outcome"] == .string("kept_extra"))
        #expect(byKey["9"] == nil, "a rejected item is never applied")
        #expect(result["applied"]?.int64Value == 3 && result["pending"]?.int64Value == 1)

        #expect(try f.status(3) == "paid" && f.status(5) == "paid" && f.status(7) == "paid")
        #expect(try f.status(9) == "lost", "rejected: the target is kept")
        let logged = try f.tgt.query("SELECT row_key ->> 'id', action, before_image ->> 'status' FROM cdcr.repair_log WHERE run_id = $1 ORDER BY 1", [run]).rows
        #expect(logged.map { $0.map { $0 ?? "-" } } == [["3", "update", "lost"], ["5", "insert", "-"]], "\(logged)")
        for key in ["3", "5", "11"] {
            let item = try f.item(key)
            #expect(item.appliedAt != nil && item.repairRunID == run && item.resolution == .approved, "\(key)")
        }
        #expect(try f.item("7").appliedAt == nil)

        let deleting = try CDCRProcess.run(["review", "apply", "--allow-delete", "--json"] + f.common)
        #expect(deleting.status == 0, "\(deleting.stdout) \(deleting.stderr)")
        #expect(try json(deleting.stdout)["items"] == .array([.object([("id", .number(id("7"))), ("table", .string("public.orders")),
                                                                      ("key_text", .string("7")), ("outcome", .string("repaired")),
                                                                      ("action", .string("delete"))])]), "\(deleting.stdout)")
        #expect(try f.tgt.query("SELECT count(*) FROM public.orders WHERE id = 7").scalar == "0")
        let again = try CDCRProcess.run(["review", "apply"] + f.common)
        #expect(again.status == 0 && again.stdout.contains("no approved item"), "\(again.stdout)")

        // The row is gone from both sides now: show falls back to the stored values.
        let gone = try json(try CDCRProcess.run(["review", "show", id("7"), "--json"] + f.common).stdout)
        #expect(gone["values"] == .string("stored") && gone["source_row"] == .bool(false) && gone["target_row"] == .bool(true), "\(gone.serialized)")

        // The applied repair is undone like any repair run.
        let undo = try CDCRProcess.run(["repair-undo", run, "--execute", "--target", f.target])
        #expect(undo.status == 0, "\(undo.stdout) \(undo.stderr)")
        #expect(try f.status(3) == "lost" && f.status(5) == nil)
    }

    @Test("KeyRepair re-reads the keys it is given: non-canonical key texts, keys equal now, a key that is not a value")
    func keyRepair() throws {
        let pg = try TestPostgres.sharedCluster()
        let f = try ReviewFixture(pg)
        var settings = Settings()
        settings.sourceURL = f.source
        settings.targetURL = f.target
        let run = try VerifyRun(settings: settings, options: VerifyOptions())
        defer { run.close() }
        let repair = KeyRepair(run: run, settings: settings, allowDelete: false)
        let table = TableName(parsing: "public.orders")
        let r = try repair.repair(source: table, target: table, keys: [["0003"], ["1"], ["7"], ["3"]])
        #expect(r.outcomes.map(\.key) == [["3"], ["1"], ["7"], ["3"]])
        #expect(r.outcomes.map(\.outcome) == [.repaired("update"), .alreadyEqual, .keptExtra, .repaired("update")])
        #expect(r.summary.updated == 1 && r.runID == repair.runID)
        #expect(try f.status(3) == "paid")
        #expect(throws: VerifyError.self) { try repair.repair(source: table, target: table, keys: [["seven"]]) }

        // A composite key, in key-column order; the same run ID.
        let lines = TableName(parsing: "public.order_items")
        try f.src.execute("INSERT INTO public.order_items VALUES (1, 1, 'a', 1, 1.00), (1, 2, 'b', 2, 2.00)")
        try f.tgt.execute("INSERT INTO public.order_items VALUES (1, 1, 'a', 1, 1.00), (1, 2, 'b', 5, 2.00)")
        let composite = try repair.repair(source: lines, target: lines, keys: [["1", "2"], ["1", "1"]])
        #expect(composite.outcomes.map(\.outcome) == [.repaired("update"), .alreadyEqual] && composite.runID == r.runID)
        #expect(try f.tgt.query("SELECT qty FROM public.order_items WHERE order_id = 1 AND line_no = 2").scalar == "2")
        #expect(try f.tgt.query("SELECT count(*) FROM cdcr.repair_log WHERE run_id = $1", [r.runID]).scalar == "2")
    }
}
