import CDCCore
import CDCPostgres
@testable import CDCR
import Foundation
import Logging
import Synchronization
import Testing

/// A clock the test moves by hand.
final class ManualClock: Sendable {
    private let seconds: Atomic<Int64>
    init(_ start: Int64) { seconds = Atomic(start) }
    func set(_ t: Int64) { seconds.store(t, ordering: .relaxed) }
    var now: Date { Date(timeIntervalSince1970: TimeInterval(seconds.load(ordering: .relaxed))) }
}

@Suite("Reconcile scheduler: catch-up after downtime, no overlap", .serialized)
struct ReconcileSchedulerTests {
    /// 2026-12-01 10:00:00 UTC.
    let t0 = CivilTime.days(year: 2026, month: 12, day: 1) * 86_400 + 10 * 3_600

    func scheduler(_ p: ReconcilePair, jobs: [ReconcileJob], clock: ManualClock) -> ReconcileScheduler {
        var settings = p.settings
        settings.reconcile.jobs = jobs
        return ReconcileScheduler(settings: settings, logger: Logger(label: "test"), now: { clock.now })
    }

    @Test("after five hours down, an hourly job runs once (catch_up), then on its next slot (schedule)")
    func oneCatchUpRun() throws {
        let p = try ReconcilePair(rows: 50)
        defer { p.close() }
        let job = try p.job(.quick, name: "hourly", schedule: "0 * * * *")
        // The job last ran for the 10:00 slot.
        try ReconcileStore.startRun(id: "rec-earlier", job: "hourly", kind: .quick, trigger: .schedule,
                                    scheduledFor: Date(timeIntervalSince1970: TimeInterval(t0)), tables: [p.table], on: p.tgt)
        try ReconcileStore.finishRun(id: "rec-earlier", status: .ok, counts: RunCounts(), error: nil, on: p.tgt)
        let clock = ManualClock(t0 + 5 * 3_600 + 20 * 60)
        let s = scheduler(p, jobs: [job], clock: clock)
        let ran = try s.tick()
        #expect(ran.count == 1 && ran[0].status == .ok)
        var runs = try ReconcileStore.runs(job: "hourly", on: p.tgt)
        #expect(runs.count == 2 && runs[0].trigger == .catchUp && runs[0].scheduledFor == "2026-12-01T15:00:00.000Z")
        // Same time again, and a minute later: nothing more.
        #expect(try s.tick().isEmpty)
        clock.set(t0 + 5 * 3_600 + 21 * 60)
        #expect(try s.tick().isEmpty)
        // A fresh scheduler (a restart) decides from cdcr.reconcile_runs: nothing either.
        #expect(try scheduler(p, jobs: [job], clock: clock).tick().isEmpty)
        // 16:00:10: the regular slot.
        clock.set(t0 + 6 * 3_600 + 10)
        #expect(try s.tick().count == 1)
        runs = try ReconcileStore.runs(job: "hourly", on: p.tgt)
        #expect(runs.count == 3 && runs[0].trigger == .schedule && runs[0].scheduledFor == "2026-12-01T16:00:00.000Z")
    }

    @Test("a job that never ran waits for its first slot; --list's decisions say when")
    func firstSlot() throws {
        let p = try ReconcilePair(rows: 10)
        defer { p.close() }
        let clock = ManualClock(t0 + 5 * 60)
        let s = scheduler(p, jobs: [try p.job(.quick, name: "fresh", schedule: "every 15m")], clock: clock)
        #expect(try s.tick().isEmpty)
        #expect(try s.decisions().first?.decision == .wait(until: t0 + 15 * 60))
        clock.set(t0 + 15 * 60 + 3)
        let ran = try s.tick()
        #expect(ran.count == 1)
        #expect(try ReconcileStore.runs(job: "fresh", on: p.tgt).first?.trigger == .schedule)
    }

    @Test("a job never overlaps itself: while another session holds its lock nothing runs, then it does")
    func noOverlap() throws {
        let p = try ReconcilePair(rows: 10)
        defer { p.close() }
        let job = try p.job(.quick, name: "locked", schedule: "every 5m")
        let other = try PGConnection.connect(p.settings.targetURL!)
        defer { other.close() }
        #expect(try ReconcileStore.tryLock(job: "locked", on: other))
        #expect(throws: ReconcileLocked.self) { try ReconcileJobRun(job: job, settings: p.settings).run(trigger: .manual, scheduledFor: nil) }
        // The scheduler skips it (logged) and records nothing.
        try ReconcileStore.startRun(id: "rec-before", job: "locked", kind: .quick, trigger: .schedule,
                                    scheduledFor: Date(timeIntervalSince1970: TimeInterval(t0)), tables: [p.table], on: p.tgt)
        try ReconcileStore.finishRun(id: "rec-before", status: .ok, counts: RunCounts(), error: nil, on: p.tgt)
        let clock = ManualClock(t0 + 5 * 60 + 1)
        let s = scheduler(p, jobs: [job], clock: clock)
        #expect(try s.tick().isEmpty)
        #expect(try ReconcileStore.runs(job: "locked", on: p.tgt).count == 1)
        try ReconcileStore.unlock(job: "locked", on: other)
        #expect(try s.tick().count == 1)

        // Two runs at once from two threads: one runs, the other is refused (never both).
        let results = Mutex<[String]>([])
        DispatchQueue.concurrentPerform(iterations: 2) { _ in
            let r: String
            do { r = try ReconcileJobRun(job: job, settings: p.settings).run(trigger: .manual, scheduledFor: nil) == nil ? "skipped" : "ran" } catch is ReconcileLocked {
                r = "locked"
            } catch { r = "error \(error)" }
            results.withLock { $0.append(r) }
        }
        let seen = results.withLock { $0 }.sorted()
        #expect(seen == ["locked", "ran"] || seen == ["ran", "ran"], "\(seen)")
        // Whatever the interleaving, no two runs of the job were ever running together.
        #expect(try p.tgt.query("""
            SELECT count(*) FROM cdcr.reconcile_runs a JOIN cdcr.reconcile_runs b ON a.job = b.job AND a.run_id < b.run_id
            WHERE a.job = 'locked' AND a.started_at < b.finished_at AND b.started_at < a.finished_at
            """).scalar == "0")
    }

    @Test("a run a crashed process left running becomes error when the job next runs")
    func interrupted() throws {
        let p = try ReconcilePair(rows: 10)
        defer { p.close() }
        try ReconcileStore.startRun(id: "rec-crashed", job: "q", kind: .quick, trigger: .manual, scheduledFor: nil, tables: [p.table], on: p.tgt)
        _ = try p.run(try p.job(.quick, name: "q"))
        let crashed = try #require(try ReconcileStore.runs(job: "q", on: p.tgt).first { $0.runID == "rec-crashed" })
        #expect(crashed.status == .error && crashed.error?.contains("interrupted") == true)
    }
}

@Suite("cdcr reconcile: --job exit codes, --list, bad configuration", .serialized)
struct ReconcileCommandTests {
    func config(_ p: ReconcilePair, jobs: String, tables: String = "{}") throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("cdcr-reccmd-\(UUID().uuidString).json").path
        try """
            {"source_url": "\(p.settings.sourceURL!)", "target_url": "\(p.settings.targetURL!)", "verify": {"tables": ["public.items"]},
             "reconcile": {"jobs": \(jobs), "tables": \(tables)}}
            """.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    func cdcr(_ args: [String]) throws -> (status: Int32, out: String, err: String) {
        let r = try CDCRProcess.run(args)
        return (r.status, r.stdout, r.stderr)
    }

    @Test("--job exits 2 while discrepancies stay queued, 0 once repaired; --list shows the last run and the next")
    func jobAndList() throws {
        let p = try ReconcilePair(rows: 200)
        defer { p.close() }
        let jobs = #"[{"name": "nightly", "schedule": "30 2 * * *", "kind": "full", "repair": "auto"}]"#
        let queued = try config(p, jobs: jobs)
        let repairs = try config(p, jobs: jobs, tables: #"{"public.items": {"max_auto_repair_percent": 5}}"#)
        defer { for f in [queued, repairs] { try? FileManager.default.removeItem(atPath: f) } }
        try p.tgt.execute("UPDATE public.items SET v = 'x' WHERE id IN (1, 2, 3)")
        // 3 of 200 rows is 1.5 %: above the default 1 %, so queued.
        let first = try cdcr(["reconcile", "--config", queued, "--job", "nightly", "--json"])
        #expect(first.status == 2, "\(first.err)")
        let json = try JSONParser.parse(first.out.trimmingCharacters(in: .whitespacesAndNewlines))
        #expect(json["status"]?.stringValue == "drift" && json["queued"]?.int64Value == 3 && json["remaining"]?.int64Value == 3)
        #expect(json["mass_drift"].map { $0.serialized } == #"["public.items"]"#)
        // Queued items wait for a person: with raised limits, a fresh history is repaired.
        try p.tgt.execute("DELETE FROM cdcr.discrepancies")
        let second = try cdcr(["reconcile", "--config", repairs, "--job", "nightly"])
        #expect(second.status == 0 && second.out.contains("auto-repaired 3"), "\(second.out) \(second.err)")
        let list = try cdcr(["reconcile", "--config", repairs, "--list", "--json"])
        #expect(list.status == 0, "\(list.err)")
        guard case let .array(items) = try JSONParser.parse(list.out.trimmingCharacters(in: .whitespacesAndNewlines)) else {
            Issue.record("not an array: \(list.out)"); return
        }
        #expect(items.count == 1 && items[0]["job"]?.stringValue == "nightly" && items[0]["kind"]?.stringValue == "full")
        #expect(items[0]["last_run"]?["status"]?.stringValue == "drift" && items[0]["last_run"]?["auto_repaired"]?.int64Value == 3)
        #expect(items[0]["next_run"]?.stringValue?.contains("02:30:00") == true)
        let text = try cdcr(["reconcile", "--config", repairs, "--list"])
        #expect(text.status == 0 && text.out.contains("NEXT RUN") && text.out.contains("30 2 * * *"))
        let unknown = try cdcr(["reconcile", "--config", repairs, "--job", "nope"])
        #expect(unknown.status == 64 && unknown.err.contains("no job named \"nope\""))
    }

    @Test("a bad schedule stops with exit 64 naming reconcile.jobs[i].schedule")
    func badConfig() throws {
        let p = try ReconcilePair(rows: 1)
        defer { p.close() }
        let bad = try config(p, jobs: #"[{"name": "a", "schedule": "every 5m", "kind": "quick"}, {"name": "b", "schedule": "0 25 * * *", "kind": "full"}]"#)
        defer { try? FileManager.default.removeItem(atPath: bad) }
        let r = try cdcr(["reconcile", "--config", bad, "--list"])
        #expect(r.status == 64 && r.err.contains("reconcile.jobs[1].schedule") && r.err.contains("hour 25"), "\(r.err)")
    }

    @Test("--serve: after downtime the scheduler service runs one catch-up at once, and stops on SIGTERM")
    func serveCatchUp() throws {
        let p = try ReconcilePair(rows: 20)
        defer { p.close() }
        let file = try config(p, jobs: #"[{"name": "every-minute", "schedule": "* * * * *", "kind": "quick"}]"#)
        defer { try? FileManager.default.removeItem(atPath: file) }
        // The job last ran for a slot an hour ago: sixty slots missed.
        try ReconcileStore.startRun(id: "rec-old", job: "every-minute", kind: .quick, trigger: .schedule,
                                    scheduledFor: Date().addingTimeInterval(-3_600), tables: [p.table], on: p.tgt)
        try ReconcileStore.finishRun(id: "rec-old", status: .ok, counts: RunCounts(), error: nil, on: p.tgt)
        let port = freePort()
        let child = try CDCRProcess.start(["reconcile", "--config", file, "--serve", "--admin-listen", "127.0.0.1:\(port)"])
        var runs: [ReconcileRunRecord] = []
        let deadline = ContinuousClock.now + .seconds(60)
        while ContinuousClock.now < deadline {
            runs = try ReconcileStore.runs(job: "every-minute", on: p.tgt).filter { $0.runID != "rec-old" && $0.status != .running }
            if !runs.isEmpty { break }
            usleep(200_000)
        }
        // Its metrics are served: the run counted, the schedule's interval for the staleness alert.
        let metrics = shell(["curl", "-sf", "http://127.0.0.1:\(port)/metrics"]).output
        child.signal(SIGTERM)
        #expect(child.wait(timeout: .seconds(30)) == 0, "\(child.stderr)")
        #expect(metrics.contains("cdcr_reconcile_runs_total{job=\"every-minute\",status=\"ok\"} 1"), "\(metrics)")
        #expect(metrics.contains("cdcr_reconcile_schedule_interval_seconds{job=\"every-minute\"} 60"), "\(metrics)")
        #expect(runs.first?.trigger == .catchUp && runs.first?.status == .ok, "\(child.stderr)")
        // One run for the sixty missed slots (a regular one may have followed at the next minute).
        let all = try ReconcileStore.runs(job: "every-minute", on: p.tgt)
        #expect(all.filter { $0.trigger == .catchUp }.count == 1)
    }

    @Test("cdcr run runs the reconcile scheduler next to the applier")
    func insideRun() throws {
        let p = try ReconcilePair(rows: 20)
        defer { p.close() }
        let kafka = try TestKafka()
        try kafka.createTopic("rec-flow")
        let file = try config(p, jobs: #"[{"name": "in-run", "schedule": "every 1h", "kind": "full", "repair": "auto"}]"#,
                              tables: #"{"public.items": {"max_auto_repair_percent": 10}}"#)
        defer { try? FileManager.default.removeItem(atPath: file) }
        try p.tgt.execute("UPDATE public.items SET v = 'drift' WHERE id = 4")
        try ReconcileStore.startRun(id: "rec-old", job: "in-run", kind: .full, trigger: .schedule,
                                    scheduledFor: Date().addingTimeInterval(-5 * 3_600), tables: [p.table], on: p.tgt)
        try ReconcileStore.finishRun(id: "rec-old", status: .ok, counts: RunCounts(), error: nil, on: p.tgt)
        let applier = try CDCRProcess.start(["run", "--config", file, "--brokers", kafka.brokers, "--topic", "rec-flow", "--group", "rec-flow",
                                             "--no-gap-fill", "--kafka-property", "log_level=3"])
        let ran = waitUntil(timeout: .seconds(60)) {
            (try? ReconcileStore.runs(job: "in-run", on: p.tgt).contains { $0.trigger == .catchUp && $0.status == .drift }) == true
        }
        applier.signal(SIGTERM)
        #expect(applier.wait(timeout: .seconds(30)) == 0, "\(applier.stderr.suffix(3000))")
        #expect(ran, "\(applier.stderr.suffix(3000))")
        #expect(try p.targetValue(4) == "v4")
        #expect(try ReconcileStore.runs(job: "in-run", on: p.tgt).first?.counts.autoRepaired == 1)
    }
}
