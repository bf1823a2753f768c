import CDCCore
import CDCPostgres
import CDCR
import Foundation
import Testing

@Suite("Reconcile store: runs and discrepancies followed across runs")
struct ReconcileStoreTests {
    func finding(_ key: String, _ kind: DiscrepancyKind, table: String = "public.items") -> Finding {
        var f = Finding(table: TableName(parsing: table), targetTable: TableName(parsing: table),
                        rowKeyJSON: "{\"id\": \"\(key)\"}", keyText: key, kind: kind)
        if kind == .different { f.columns = ["v"] }
        return f
    }

    @Test("a difference seen again updates its row, one gone is resolved by the stream, a decided one is history")
    func followsAcrossRuns() throws {
        let pg = try TestPostgres.sharedCluster()
        let conn = try PGConnection.connect(try pg.createDatabase("rstore", fixtureSchema: false))
        defer { conn.close() }
        try BookkeepingSchema.install(on: conn)
        let tables = [TableName(parsing: "public.items")]

        let run1 = ReconcileStore.newRunID()
        try ReconcileStore.startRun(id: run1, job: "nightly", kind: .full, trigger: .schedule, scheduledFor: Date(), tables: tables, on: conn)
        let first = try ReconcileStore.record([finding("1", .missing), finding("2", .different), finding("3", .extra), finding("1", .missing)],
                                              runID: run1, on: conn)
        #expect(first.new == 3)
        #expect(first.ids.count == 4 && first.ids[0] == first.ids[3])
        try ReconcileStore.resolve([first.ids[2]], as: .rejected, reason: "keep it", by: "alice", on: conn)
        var counts = RunCounts()
        counts.found = 3
        counts.newFound = 3
        try ReconcileStore.finishRun(id: run1, status: .drift, counts: counts, error: nil, on: conn)

        // Run 2: 1 seen again, 2 gone (the stream caught up), 3 (rejected) found again is a new row.
        let run2 = ReconcileStore.newRunID()
        try ReconcileStore.startRun(id: run2, job: "nightly", kind: .full, trigger: .manual, scheduledFor: nil, tables: tables, on: conn)
        let second = try ReconcileStore.record([finding("1", .missing), finding("3", .extra)], runID: run2, on: conn)
        #expect(second.new == 1)
        #expect(second.ids[0] == first.ids[0] && second.ids[1] != first.ids[2])
        #expect(try ReconcileStore.resolveGone(runID: run2, targetTables: tables, kinds: [.missing, .extra, .different], on: conn) == 1)

        let all = try ReconcileStore.list(on: conn)
        let byID = Dictionary(uniqueKeysWithValues: all.map { ($0.id, $0) })
        #expect(byID[first.ids[0]]?.timesSeen == 2 && byID[first.ids[0]]?.lastRunID == run2 && byID[first.ids[0]]?.resolution == .open)
        #expect(byID[first.ids[1]]?.resolution == .resolvedByStream && byID[first.ids[1]]?.resolvedAt != nil)
        #expect(byID[first.ids[1]]?.columns == ["v"])
        #expect(byID[first.ids[2]]?.resolution == .rejected && byID[first.ids[2]]?.decidedBy == "alice")
        #expect(byID[second.ids[1]]?.resolution == .open && byID[second.ids[1]]?.firstRunID == run2)
        #expect(try ReconcileStore.list(resolution: .open, on: conn).count == 2)

        // Approved and applied: no longer live, so the same difference later is a new row.
        try ReconcileStore.resolve([first.ids[0]], as: .approved, by: "bob", on: conn)
        #expect(try ReconcileStore.markApplied([first.ids[0]], repairRunID: "repair-x", on: conn) == 1)
        let run3 = ReconcileStore.newRunID()
        try ReconcileStore.startRun(id: run3, job: "nightly", kind: .full, trigger: .manual, scheduledFor: nil, tables: tables, on: conn)
        #expect(try ReconcileStore.record([finding("1", .missing)], runID: run3, on: conn).new == 1)
        let runs = try ReconcileStore.runs(job: "nightly", on: conn)
        #expect(runs.count == 3 && runs.last?.status == .drift && runs.last?.counts == counts && runs.first?.status == .running)
    }
}
