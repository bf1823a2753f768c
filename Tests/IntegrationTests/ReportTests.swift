import CDCCore
import CDCPostgres
import CDCR
import Foundation
import Testing

/// Runs and discrepancies over several days with explicit times, planted through `ReconcileStore`
/// and dated by SQL, around the report day 2026-11-20.
struct PlantedHistory {
    let target: String
    let conn: PGConnection
    var runs: [String: String] = [:]

    init(_ pg: TestPostgres) throws {
        target = try pg.createDatabase("rptgt", fixtureSchema: false)
        conn = try PGConnection.connect(target)
        try BookkeepingSchema.install(on: conn)
    }

    /// A run of `job` over `tables` from `started` to `finished` (nil: still running).
    mutating func run(_ name: String, job: String, _ tables: [String], _ status: RunStatus, _ started: String, _ finished: String?) throws {
        let id = "rec-\(name)"
        try ReconcileStore.startRun(id: id, job: job, kind: .full, trigger: .schedule, scheduledFor: nil,
                                    tables: tables.map { TableName(parsing: $0) }, on: conn)
        try conn.query("UPDATE cdcr.reconcile_runs SET started_at = $2::timestamptz, finished_at = $3::timestamptz, status = $4 WHERE run_id = $1",
                       [id, started, finished, status.rawValue])
        runs[name] = id
    }

    /// A discrepancy first seen at `seen`, then given `resolution` with its times.
    func plant(_ table: String, _ key: String, _ kind: DiscrepancyKind, seen: String, run: String, _ resolution: Resolution = .open,
               resolved: String? = nil, queued: String? = nil, decided: String? = nil, applied: String? = nil, by: String? = nil) throws {
        let t = TableName(parsing: table)
        let id = try ReconcileStore.record([Finding(table: t, targetTable: t, rowKeyJSON: "{\"id\": \"\(key)\"}", keyText: key, kind: kind)],
                                           runID: runs[run]!, on: conn).ids[0]
        if resolution != .open { try ReconcileStore.resolve([id], as: resolution, reason: "planted", by: by, on: conn) }
        try conn.query("""
            UPDATE cdcr.discrepancies SET first_seen_at = $2::timestamptz, last_seen_at = $2::timestamptz, resolved_at = $3::timestamptz,
                   queued_at = $4::timestamptz, decided_at = $5::timestamptz, applied_at = $6::timestamptz WHERE id = $1
            """, [String(id), seen, resolved, queued, decided, applied])
    }
}

@Suite("daily report")
struct ReportTests {
    @Test("report JSON checked field by field against planted days of runs and discrepancies; Markdown and HTML render them")
    func dailyReport() throws {
        let pg = try TestPostgres.sharedCluster()
        var h = try PlantedHistory(pg)
        let (orders, items) = ("public.orders", "public.order_items")
        try h.run("A", job: "nightly", [orders], .ok, "2026-11-18 10:00Z", "2026-11-18 10:05Z")
        try h.run("B", job: "nightly", [orders, items], .drift, "2026-11-20 02:00Z", "2026-11-20 02:20Z")
        try h.run("C", job: "quick", [items], .error, "2026-11-20 03:00Z", "2026-11-20 03:01Z")
        try h.run("D", job: "deep", [orders], .running, "2026-11-20 23:00Z", nil)
        try h.run("E", job: "quick", [items], .ok, "2026-11-21 01:00Z", "2026-11-21 01:01Z")  // the next day: not counted
        try h.plant(orders, "1", .different, seen: "2026-11-20 02:05Z", run: "B", .autoRepaired, resolved: "2026-11-20 02:06Z")
        try h.plant(orders, "2", .different, seen: "2026-11-20 02:05Z", run: "B", .autoRepaired, resolved: "2026-11-20 02:06Z")
        try h.plant(orders, "3", .missing, seen: "2026-11-20 02:05Z", run: "B", .queued, queued: "2026-11-20 02:05Z")
        try h.plant(orders, "4", .missing, seen: "2026-11-19 02:05Z", run: "B", .approved, resolved: "2026-11-20 09:00Z",
                    queued: "2026-11-19 02:05Z", decided: "2026-11-20 09:00Z", applied: "2026-11-20 09:30Z", by: "alice")
        try h.plant(orders, "5", .extra, seen: "2026-11-17 02:05Z", run: "A", .resolvedByStream, resolved: "2026-11-20 02:05Z")
        try h.plant(orders, "6", .different, seen: "2026-11-20 05:00Z", run: "B")
        try h.plant(orders, "7", .different, seen: "2026-11-21 00:30Z", run: "E")  // the next day
        try h.plant(orders, "8", .different, seen: "2026-10-10 02:00Z", run: "A", .autoRepaired, resolved: "2026-10-10 02:01Z")
        try h.plant(items, "1", .different, seen: "2026-11-20 02:10Z", run: "B", .rejected, resolved: "2026-11-20 10:00Z",
                    decided: "2026-11-20 10:00Z", by: "bob")

        let r = try CDCRProcess.run(["report", "daily", "--date", "2026-11-20", "--json", "--target", h.target])
        #expect(r.status == 0, "\(r.stderr)")
        let report = try json(r.stdout)
        func counts(_ found: Int, auto: Int = 0, queued: Int = 0, stream: Int = 0, approved: Int = 0, rejected: Int = 0, applied: Int = 0,
                    open: Int = 0, awaiting: Int = 0, rate: String?) -> JSONValue {
            func n(_ v: Int) -> JSONValue { .number(String(v)) }
            return .object([
                ("found", n(found)), ("auto_repaired", n(auto)), ("queued", n(queued)),
                ("resolved", .object([("by_stream", n(stream)), ("approved", n(approved)), ("rejected", n(rejected)), ("total", n(stream + approved + rejected))])),
                ("applied", n(applied)), ("open_at_end", n(open)), ("awaiting_apply", n(awaiting)), ("auto_correction_rate", rate.map(JSONValue.number) ?? .null),
            ])
        }
        func trend(_ direction: String, slope: String, mean: String, change: String, _ daily: [Int]) -> JSONValue {
            .object([("direction", .string(direction)), ("slope_per_day", .number(slope)), ("mean_per_day", .number(mean)),
                     ("relative_change", .number(change)), ("daily", .array(daily.map { .number(String($0)) }))])
        }
        func days30(_ tail: [Int]) -> [Int] { Array(repeating: 0, count: 30 - tail.count) + tail }
        #expect(report["date"] == .string("2026-11-20"))
        #expect(report["audit"] == .string("reject"))
        #expect(report["audit_reasons"] == .array([.string("public.order_items: run rec-C failed"),
                                                   .string("public.order_items: 1 repairs rejected (the target deliberately differs)")]))
        #expect(report["overload_limit"] == .number("1000"))
        #expect(report["runs"] == .object([("drift", .number("1")), ("error", .number("1")), ("running", .number("1"))]))
        #expect(report["totals"] == counts(5, auto: 2, queued: 1, stream: 1, approved: 1, rejected: 1, applied: 1, open: 2, rate: "0.6667"))
        #expect(report["trend"]?["7d"] == trend("increasing", slope: "0.6071", mean: "1", change: "3.6429", [0, 0, 0, 1, 0, 1, 5]))
        #expect(report["trend"]?["30d"]?["direction"] == .string("increasing"))
        #expect(report["trend"]?["30d"]?["daily"] == .array(days30([1, 0, 1, 5]).map { .number(String($0)) }))

        guard case let .array(tables)? = report["tables"], tables.count == 2 else { Issue.record("tables: \(r.stdout)"); return }
        let (oi, o) = (tables[0], tables[1])
        #expect(o["table"] == .string(orders) && oi["table"] == .string(items))
        #expect(o["audit"] == .string("partial") && o["audit_reasons"] == .array([.string("2 items open or queued")]))
        #expect(o["finished_runs"] == .number("1"))
        #expect(o["totals"] == counts(4, auto: 2, queued: 1, stream: 1, approved: 1, applied: 1, open: 2, rate: "0.6667"))
        #expect(o["trend"]?["7d"] == trend("increasing", slope: "0.5", mean: "0.8571", change: "3.5", [0, 0, 0, 1, 0, 1, 4]))
        #expect(o["trend"]?["30d"] == trend("increasing", slope: "0.0369", mean: "0.2", change: "5.3548", days30([1, 0, 1, 4])))
        func kind(_ k: String, _ c: JSONValue) -> JSONValue { .object([("kind", .string(k))] + (c.objectMembers ?? [])) }
        #expect(o["kinds"] == .array([
            kind("different", counts(3, auto: 2, open: 1, rate: "1")),
            kind("extra", counts(0, stream: 1, rate: nil)),
            kind("missing", counts(1, queued: 1, approved: 1, applied: 1, open: 1, rate: "0")),
        ]), "\(o["kinds"]?.serialized ?? "")")
        #expect(oi["audit"] == .string("reject"))
        #expect(oi["kinds"] == .array([kind("different", counts(1, rejected: 1, rate: nil))]))
        #expect(oi["trend"]?["7d"] == trend("stable", slope: "0.1071", mean: "0.1429", change: "4.5", [0, 0, 0, 0, 0, 0, 1]))

        // Mass drift: with a limit of 2, the two open items of orders are an overload.
        let low = try json(try CDCRProcess.run(["report", "daily", "--date", "2026-11-20", "--json", "--overload-rows", "2", "--target", h.target]).stdout)
        guard case let .array(lowTables)? = low["tables"] else { Issue.record("\(low.serialized)"); return }
        #expect(lowTables[1]["audit"] == .string("overload"), "\(low.serialized)")

        // A day with nothing: partial (no run finished), trends over the planted history.
        let quiet = try json(try CDCRProcess.run(["report", "daily", "--date", "2026-11-25", "--json", "--target", h.target]).stdout)
        #expect(quiet["totals"]?["found"] == .number("0") && quiet["audit"] == .string("partial"), "\(quiet.serialized)")

        let md = try CDCRProcess.run(["report", "daily", "--date", "2026-11-20", "--md", "--target", h.target])
        #expect(md.status == 0 && md.stdout.contains("Migration audit: **reject**"), "\(md.stdout)")
        #expect(md.stdout.contains("| public.orders | missing | 1 | 0 | 1 | 0 | 1 | 0 | 1 | 1 | 0.0 % |"), "\(md.stdout)")
        let html = try CDCRProcess.run(["report", "daily", "--date", "2026-11-20", "--html", "--target", h.target])
        #expect(html.stdout.hasPrefix("<!doctype html>") && html.stdout.contains("<td>public.order_items</td><td class=reject>reject</td>"))
        #expect(!html.stdout.contains("<script"))
        let bad = try CDCRProcess.run(["report", "daily", "--date", "yesterday-ish", "--target", h.target])
        #expect(bad.status == 64 && bad.stderr.contains("--date"), "\(bad.stderr)")
    }
}
