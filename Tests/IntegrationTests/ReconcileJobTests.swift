import CDCCore
import CDCPostgres
@testable import CDCR
import Foundation
import Synchronization
import Testing

/// Source and target databases with `public.items` equal on both sides (`rows` rows), and settings
/// pointing at them.
struct ReconcilePair {
    let src: PGConnection
    let tgt: PGConnection
    var settings = Settings()
    let table = TableName(parsing: "public.items")

    init(rows: Int = 1_000) throws {
        let pg = try TestPostgres.sharedCluster()
        let source = try pg.createDatabase("rsrc", fixtureSchema: false)
        let target = try pg.createDatabase("rtgt", fixtureSchema: false)
        src = try PGConnection.connect(source)
        tgt = try PGConnection.connect(target)
        for conn in [src, tgt] {
            try conn.execute("""
                CREATE TABLE public.items (id int PRIMARY KEY, v text NOT NULL, updated_at timestamptz NOT NULL);
                INSERT INTO public.items SELECT i, 'v' || i, timestamptz '2026-11-01 00:00:00+00' + i * interval '1 second'
                FROM generate_series(1, \(rows)) i;
                """)
        }
        try BookkeepingSchema.install(on: tgt)
        settings.sourceURL = source
        settings.targetURL = target
        settings.verify.tables = [table]
    }

    func close() {
        src.close()
        tgt.close()
    }

    func job(_ kind: ReconcileKind = .full, repair: JobRepair = .auto, name: String = "nightly", schedule: String = "0 2 * * *") throws -> ReconcileJob {
        ReconcileJob(name: name, schedule: try JobSchedule(parsing: schedule), kind: kind, tables: [table], repair: repair)
    }

    func run(_ job: ReconcileJob) throws -> ReconcileOutcome {
        try #require(try ReconcileJobRun(job: job, settings: settings).run(trigger: .manual, scheduledFor: nil))
    }

    func targetValue(_ id: Int) throws -> String? { try tgt.query("SELECT v FROM public.items WHERE id = $1", [String(id)]).scalar }

    func discrepancies() throws -> [Discrepancy] { try ReconcileStore.list(on: tgt) }
}

/// A metric's value in the process's registry (0 when absent).
func metricValue(_ name: String, _ labels: String = "") throws -> Double {
    var buffer: [UInt8] = []
    CDCRMetrics.registry.emit(into: &buffer)
    let prefix = labels.isEmpty ? "\(name) " : "\(name){\(labels)} "
    for line in String(decoding: buffer, as: UTF8.self).split(separator: "\n") where line.hasPrefix(prefix) {
        return Double(line.dropFirst(prefix.count)) ?? .nan
    }
    return 0
}

@Suite("Reconcile jobs: runs, policies, automatic repair, guard rails", .serialized)
struct ReconcileJobTests {
    @Test("small drift is repaired automatically through the repair path, then the next run is ok")
    func smallDriftRepaired() throws {
        let p = try ReconcilePair()
        defer { p.close() }
        try p.tgt.execute("DELETE FROM public.items WHERE id IN (3, 4); UPDATE public.items SET v = 'drifted' WHERE id = 7")
        let before = try metricValue("cdcr_reconcile_auto_repaired_total", "table=\"public.items\"")
        let o = try p.run(try p.job())
        #expect(o.status == .drift && o.counts.found == 3 && o.counts.newFound == 3 && o.counts.autoRepaired == 3 && o.remaining == 0)
        #expect(try p.targetValue(7) == "v7" && p.targetValue(3) == "v3")
        let d = try p.discrepancies()
        #expect(d.count == 3 && d.allSatisfy { $0.resolution == .autoRepaired && $0.policy == "source-wins" && $0.repairRunID?.hasPrefix("repair-") == true })
        let changed = try #require(d.first { $0.kind == .different })
        #expect(changed.columns == ["v"] && changed.targetValuesJSON?.contains("drifted") == true && changed.sourceValuesJSON?.contains("\"v7\"") == true)
        // The repair path's log: before-images, undoable.
        let runID = try #require(d.first?.repairRunID)
        let logged = try p.tgt.query("SELECT action, before_image IS NULL FROM cdcr.repair_log WHERE run_id = $1 ORDER BY action", [runID]).rows
        #expect(logged.map { $0[0] ?? "" } == ["insert", "insert", "update"] && logged[2][1] == "f")
        #expect(try metricValue("cdcr_reconcile_auto_repaired_total", "table=\"public.items\"") - before == 3)
        let again = try p.run(try p.job())
        #expect(again.status == .ok && again.counts.found == 0 && again.remaining == 0)
        let runs = try ReconcileStore.runs(job: "nightly", on: p.tgt)
        #expect(runs.map(\.status) == [.ok, .drift] && runs[1].counts.autoRepaired == 3)
    }

    @Test("mass drift: nothing repaired, everything queued, the metric counts it; extra rows need allow_delete")
    func massDriftQueued() throws {
        var p = try ReconcilePair()
        defer { p.close() }
        // 50 of 1 000 rows is 5 %, above the default 1 %; 50 is below the default 1 000 rows.
        try p.tgt.execute("UPDATE public.items SET v = 'bulk' WHERE id <= 50")
        let before = try metricValue("cdcr_reconcile_mass_drift_total", "table=\"public.items\"")
        let o = try p.run(try p.job())
        #expect(o.status == .drift && o.counts.autoRepaired == 0 && o.counts.queued == 50 && o.massDrift == [p.table] && o.remaining == 50)
        #expect(try p.tgt.query("SELECT count(*) FROM public.items WHERE v = 'bulk'").scalar == "50")
        let d = try p.discrepancies()
        #expect(d.count == 50 && d.allSatisfy { $0.resolution == .queued && $0.reason?.contains("max_auto_repair_percent") == true })
        #expect(try metricValue("cdcr_reconcile_mass_drift_total", "table=\"public.items\"") - before == 1)
        #expect(try metricValue("cdcr_review_open_items") == 50)
        #expect(try metricValue("cdcr_reconcile_discrepancies", "table=\"public.items\",kind=\"different\"") == 50)

        // Raised limits: queued items wait for a person and are not repaired behind their back;
        // a new extra row is queued without allow_delete and deleted with it.
        var policy = TablePolicy()
        policy.maxAutoRepairPercent = 10
        p.settings.reconcile.tables[p.table] = policy
        try p.tgt.execute("INSERT INTO public.items VALUES (5000, 'extra', now())")
        let second = try p.run(try p.job())
        #expect(second.counts.autoRepaired == 0 && second.massDrift.isEmpty)
        let extra = try #require(try p.discrepancies().first { $0.kind == .extra })
        #expect(extra.resolution == .queued && extra.reason?.contains("allow_delete") == true && extra.rowKeyJSON?.contains("5000") == true)
        // A person rejected deleting row 5000: later runs keep it even with allow_delete; a new
        // extra row (5001) is deleted.
        try ReconcileStore.resolve([extra.id], as: .rejected, reason: "the new system owns it", by: "alice", on: p.tgt)
        try p.tgt.execute("INSERT INTO public.items VALUES (5001, 'extra too', now())")
        policy.allowDelete = true
        p.settings.reconcile.tables[p.table] = policy
        let third = try p.run(try p.job())
        #expect(third.counts.autoRepaired == 1)
        #expect(try p.tgt.query("SELECT string_agg(id::text, ',' ORDER BY id) FROM public.items WHERE id >= 5000").scalar == "5000")
        let kept = try #require(try p.discrepancies().first { $0.keyText == "5000" && $0.resolution == .open })
        #expect(kept.reason?.contains("rejected earlier") == true && kept.reason?.contains("alice") == true)
    }

    @Test("a stretch of rows on one side only is one range finding, queued, never repaired row by row")
    func rangeQueued() throws {
        let p = try ReconcilePair(rows: 5_000)
        defer { p.close() }
        try p.tgt.execute("DELETE FROM public.items WHERE id BETWEEN 1001 AND 4000")
        let o = try p.run(try p.job())
        #expect(o.status == .drift && o.counts.autoRepaired == 0 && o.counts.queued >= 1)
        #expect(try Expect.count(p.tgt, "SELECT count(*) FROM public.items") == 2_000, "nothing repaired")
        let ranges = try p.discrepancies().filter { $0.keyText.hasPrefix("range:") }
        let range = try #require(ranges.first)
        #expect(range.kind == .missing && range.rowKeyJSON == nil && range.resolution == .queued)
        // Its rows, and any listed edges, add up to exactly the missing stretch.
        let listed = try p.discrepancies().filter { !$0.keyText.hasPrefix("range:") }.count
        let inRanges = ranges.map { r in
            ((try? JSONParser.parse(r.sourceValuesJSON ?? ""))?["rows"]?.int64Value) ?? 0
        }.reduce(0, +)
        #expect(inRanges + Int64(listed) == 3_000, "\(ranges.map(\.digest)) + \(listed) listed")
    }

    @Test("newest-wins leaves a target row that is newer and reports it, and repairs one that is older")
    func newestWins() throws {
        var p = try ReconcilePair()
        defer { p.close() }
        var policy = TablePolicy()
        policy.policy = .newestWins
        policy.column = "updated_at"
        p.settings.reconcile.tables[p.table] = policy
        // Row 1: the new system wrote it later (dual write). Row 2: the target is behind.
        try p.tgt.execute("UPDATE public.items SET v = 'new system', updated_at = updated_at + interval '1 hour' WHERE id = 1")
        try p.src.execute("UPDATE public.items SET v = 'source newer', updated_at = updated_at + interval '1 hour' WHERE id = 2")
        let o = try p.run(try p.job())
        #expect(o.counts.found == 2 && o.counts.autoRepaired == 1 && o.remaining == 1)
        #expect(try p.targetValue(1) == "new system" && p.targetValue(2) == "source newer")
        let d = try p.discrepancies()
        let kept = try #require(d.first { $0.keyText == "1" })
        #expect(kept.resolution == .open && kept.policy == "newest-wins" && kept.reason?.contains("target row is newer") == true)
        #expect(kept.targetValuesJSON?.contains("new system") == true)
        #expect(d.first { $0.keyText == "2" }?.resolution == .autoRepaired)

        // A newest-wins column that does not exist stops the run, naming the setting.
        policy.column = "nope"
        p.settings.reconcile.tables[p.table] = policy
        let bad = try p.run(try p.job())
        #expect(bad.status == .error && bad.configProblem && bad.error?.contains("reconcile.tables.public.items.column") == true)
    }

    @Test("a difference gone at the next run (the stream caught up) is resolved_by_stream, not repaired")
    func resolvedByStream() throws {
        let p = try ReconcilePair(rows: 100)
        defer { p.close() }
        try p.tgt.execute("UPDATE public.items SET v = 'late' WHERE id IN (5, 6)")
        let first = try p.run(try p.job(repair: .off))
        #expect(first.counts.found == 2 && first.remaining == 2)
        #expect(try p.discrepancies().allSatisfy { $0.resolution == .open && $0.reason?.contains("repair is off") == true })
        // The stream delivers row 5; row 6 still differs.
        try p.tgt.execute("UPDATE public.items SET v = 'v5' WHERE id = 5")
        let second = try p.run(try p.job(repair: .off))
        #expect(second.counts.found == 1 && second.counts.resolvedByStream == 1 && second.counts.newFound == 0)
        let byKey = Dictionary(uniqueKeysWithValues: try p.discrepancies().map { ($0.keyText, $0) })
        #expect(byKey["5"]?.resolution == .resolvedByStream && byKey["5"]?.repairRunID == nil)
        #expect(byKey["6"]?.resolution == .open && byKey["6"]?.timesSeen == 2)
        // repair: review queues what is found.
        let third = try p.run(try p.job(repair: .review))
        let six = try #require(byKey["6"])
        let sixNow = try ReconcileStore.get(six.id, on: p.tgt)
        #expect(third.counts.queued == 1 && sixNow?.resolution == .queued)
    }

    @Test("quick: row counts and failing aggregate rules are rule discrepancies keyed by check name")
    func quickJob() throws {
        var p = try ReconcilePair(rows: 100)
        defer { p.close() }
        let rules = FileManager.default.temporaryDirectory.appendingPathComponent("rec-rules-\(UUID().uuidString).json").path
        try """
            {"checks": [{"name": "items_total", "kind": "aggregate", "table": "public.items",
                         "measures": ["count(*)", "sum(id)"]}]}
            """.write(toFile: rules, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: rules) }
        p.settings.reconcile.rulesFile = rules
        let ok = try p.run(try p.job(.quick))
        #expect(ok.status == .ok && ok.counts.found == 0)
        try p.tgt.execute("DELETE FROM public.items WHERE id = 9")
        let o = try p.run(try p.job(.quick))
        #expect(o.status == .drift && o.counts.found == 2)
        let keys = Set(try p.discrepancies().map { "\($0.kind.rawValue):\($0.keyText)" })
        #expect(keys == ["rule:audit:row_count", "rule:items_total"])
        try p.tgt.execute("INSERT INTO public.items VALUES (9, 'v9', timestamptz '2026-11-01 00:00:09+00')")
        let back = try p.run(try p.job(.quick))
        #expect(back.status == .ok && back.counts.resolvedByStream == 2)
    }

    @Test("a run past its budget ends timeout and keeps what it found before")
    func budgetTimeout() throws {
        let p = try ReconcilePair(rows: 100)
        defer { p.close() }
        try p.tgt.execute("UPDATE public.items SET v = 'drift' WHERE id = 1")
        for conn in [p.src, p.tgt] { try conn.execute("CREATE TABLE public.locked (id int PRIMARY KEY, v text)") }
        // Another session holds the second table: its verify waits until the budget cancels it.
        let holder = try PGConnection.connect(p.settings.targetURL!)
        defer { holder.close() }
        try holder.execute("BEGIN; LOCK TABLE public.locked IN ACCESS EXCLUSIVE MODE")
        var job = try p.job(repair: .off)
        job.tables = [p.table, TableName(parsing: "public.locked")]
        job.budgetSeconds = 4
        let started = ContinuousClock.now
        let o = try p.run(job)
        #expect(ContinuousClock.now - started < .seconds(30))
        #expect(o.status == .timeout && o.error?.contains("budget of 4s ran out") == true, "\(o.error ?? "")")
        let found = try p.discrepancies()
        #expect(o.counts.found == 1 && found.map(\.keyText) == ["1"])
        try holder.execute("ROLLBACK")
        #expect(try ReconcileStore.runs(job: "nightly", on: p.tgt).first?.status == .timeout)
    }

    @Test("deep: verify plus the schema check and the declared references; fixed, they are resolved_by_stream")
    func deepJob() throws {
        var p = try ReconcilePair(rows: 10)
        defer { p.close() }
        try p.src.execute("""
            CREATE TABLE public.parents (id int PRIMARY KEY, name text, region text);
            CREATE TABLE public.children (id int PRIMARY KEY, parent_id int REFERENCES public.parents);
            INSERT INTO public.parents SELECT i, 'p' || i, 'eu' FROM generate_series(1, 5) i;
            INSERT INTO public.children SELECT i, 1 + i % 5 FROM generate_series(1, 20) i;
            """)
        // The target lacks the column region and the foreign key, and parent 2: its children are orphans.
        try p.tgt.execute("""
            CREATE TABLE public.parents (id int PRIMARY KEY, name text);
            CREATE TABLE public.children (id int PRIMARY KEY, parent_id int);
            INSERT INTO public.parents SELECT i, 'p' || i FROM generate_series(1, 5) i WHERE i <> 2;
            INSERT INTO public.children SELECT i, 1 + i % 5 FROM generate_series(1, 20) i;
            """)
        let tables = [TableName(parsing: "public.parents"), TableName(parsing: "public.children")]
        p.settings.verify.tables = tables
        var job = try p.job(.deep, repair: .off, name: "weekly")
        job.tables = tables
        let o = try p.run(job)
        #expect(o.status == .drift && o.error == nil, "\(o.error ?? "")")
        let d = try p.discrepancies()
        let kinds = Set(d.map { "\($0.kind.rawValue) \($0.table)" })
        #expect(kinds == ["missing public.parents", "orphan public.children", "schema *.*"], "\(kinds)")
        let orphan = try #require(d.first { $0.kind == .orphan })
        #expect(orphan.keyText.hasPrefix("fk:") && orphan.sourceValuesJSON != nil && orphan.digest?.isEmpty == false)
        #expect(d.first { $0.kind == .schema }?.digest?.contains("region") == true)

        try p.tgt.execute("ALTER TABLE public.parents ADD COLUMN region text; INSERT INTO public.parents VALUES (2, 'p2', 'eu'); UPDATE public.parents SET region = 'eu'")
        let fixed = try p.run(job)
        #expect(fixed.status == .ok && fixed.counts.resolvedByStream == 3, "\(fixed.error ?? "")")
        #expect(try p.discrepancies().allSatisfy { $0.resolution == .resolvedByStream })
    }

    @Test("target-wins only reports, manual queues everything; the exposition passes promtool check metrics")
    func reportOnlyPolicies() throws {
        var p = try ReconcilePair(rows: 100)
        defer { p.close() }
        try p.tgt.execute("UPDATE public.items SET v = 'target' WHERE id = 1; DELETE FROM public.items WHERE id = 2")
        var policy = TablePolicy()
        policy.policy = .targetWins
        p.settings.reconcile.tables[p.table] = policy
        let reported = try p.run(try p.job())
        #expect(reported.counts.found == 2 && reported.counts.autoRepaired == 0 && reported.counts.queued == 0 && reported.remaining == 2)
        #expect(try p.discrepancies().allSatisfy { $0.resolution == .open && $0.policy == "target-wins" })
        #expect(try p.targetValue(1) == "target")
        // The same open items, now under manual: queued for review, still not repaired.
        policy.policy = .manual
        p.settings.reconcile.tables[p.table] = policy
        let manual = try p.run(try p.job())
        #expect(manual.counts.queued == 2 && manual.counts.newFound == 0 && manual.counts.autoRepaired == 0)
        #expect(try p.discrepancies().allSatisfy { $0.resolution == .queued && $0.policy == "manual" })
        var buffer: [UInt8] = []
        CDCRMetrics.registry.emit(into: &buffer)
        let text = String(decoding: buffer, as: UTF8.self)
        #expect(text.contains("cdcr_reconcile_runs_total{job=\"nightly\",status=\"drift\"}"))
        let check = try promtoolCheckMetrics(text)
        #expect(check.status == 0, "\(check.output)")
    }

    @Test("a repair cut off by the budget records the batches it committed as repaired; the rest stay open")
    func repairCutOff() throws {
        var p = try ReconcilePair(rows: 1_000)
        defer { p.close() }
        var policy = TablePolicy()
        policy.maxAutoRepairPercent = 100
        p.settings.reconcile.tables[p.table] = policy
        try p.tgt.execute("UPDATE public.items SET v = 'drift' WHERE id <= 600")
        // Another session holds row 550: the second repair batch (keys 501-600) waits on it.
        let holder = try PGConnection.connect(p.settings.targetURL!)
        defer { holder.close() }
        try holder.execute("BEGIN; SELECT 1 FROM public.items WHERE id = 550 FOR UPDATE")
        var job = try p.job()
        job.budgetSeconds = 10
        let started = ContinuousClock.now
        let o = try p.run(job)
        let took = ContinuousClock.now - started
        try holder.execute("ROLLBACK")
        // The cut-off batch is not retried past the budget.
        #expect(took < .seconds(20), "\(took)")
        #expect(o.status == .timeout && o.counts.autoRepaired == 500, "\(o.error ?? "")")
        let d = try p.discrepancies()
        let repaired = d.filter { $0.resolution == .autoRepaired }
        #expect(d.count == 600 && repaired.count == 500 && d.filter { $0.resolution == .open }.count == 100)
        #expect(try p.tgt.query("SELECT count(*) FROM public.items WHERE v = 'drift'").scalar == "100")
        #expect(repaired.allSatisfy { Int($0.keyText)! <= 500 && $0.repairRunID != nil })
    }
}
