@testable import CDCCore
import Testing

@Suite("apply planning and version rules")
struct PlannerTests {
    let table = TargetTable(name: TableName(schema: "public", name: "t"), columns: [
        ColumnInfo(name: "id", sqlType: "bigint", kind: .integer, notNull: true),
        ColumnInfo(name: "v", sqlType: "text", kind: .text, notNull: false),
        ColumnInfo(name: "big", sqlType: "text", kind: .text, notNull: false),
    ], primaryKey: [0])

    func change(_ i: Int, id: String, version: Int64?, delete: Bool = false, v: String? = "x", keepBig: Bool = false) -> ResolvedChange {
        ResolvedChange(eventIndex: i, table: table, isDelete: delete, keyTexts: [id],
                       values: delete ? [] : [id, v, keepBig ? nil : "big\(i)"], keep: keepBig ? [2] : [], version: version)
    }

    @Test("one staged row per key, the newest version wins, arrival order kept")
    func newestWins() {
        let plan = BatchPlanner.plan([
            change(0, id: "1", version: 1, v: "a"), change(1, id: "2", version: 5), change(2, id: "1", version: 3, v: "b"),
        ])
        #expect(plan.tables.count == 1)
        let rows = plan.tables[0].rows
        #expect(rows.count == 2)
        #expect(rows[0].keyTexts == ["1"] && rows[0].values[1] == "b" && rows[0].members == [0, 2] && rows[0].version == 3)
        #expect(plan.staleInBatch.isEmpty)
    }

    @Test("the values of upserts no staged row carries are kept for the type check; deletes have none")
    func shadowedValuesChecked() {
        let plan = BatchPlanner.plan([
            change(0, id: "1", version: 1, v: "a"), change(1, id: "1", version: 3, v: "b"),  // 0 folded into 1
            change(2, id: "1", version: 2, v: "c"),  // stale in the batch
            change(3, id: "2", version: 1, delete: true), change(4, id: "2", version: 2, v: "d"),  // a delete folded away
        ])
        #expect(plan.checks[table.name] == [["1", "a", "big0"], ["1", "c", "big2"]])
        #expect(plan.tables[0].rows.map { $0.values[1] } == ["b", "d"])
    }

    @Test("an older or equal version after a newer one in the batch is stale")
    func olderIsStale() {
        let plan = BatchPlanner.plan([change(0, id: "1", version: 7), change(1, id: "1", version: 3), change(2, id: "1", version: 7)])
        #expect(plan.staleInBatch == [1, 2])
        #expect(plan.tables[0].rows[0].members == [0])
    }

    @Test("a delete then a late older insert does not resurrect the row")
    func noResurrection() {
        let plan = BatchPlanner.plan([change(0, id: "1", version: 10, delete: true), change(1, id: "1", version: 4)])
        #expect(plan.tables[0].rows[0].isDelete)
        #expect(plan.staleInBatch == [1])
    }

    @Test("a kept (unchanged TOAST) column takes the value of an earlier upsert in the batch")
    func keepMerges() {
        let plan = BatchPlanner.plan([change(0, id: "1", version: 1), change(1, id: "1", version: 2, v: "new", keepBig: true)])
        let row = plan.tables[0].rows[0]
        #expect(row.values[1] == "new" && row.values[2] == "big0" && row.keep.isEmpty)
        let alone = BatchPlanner.plan([change(1, id: "1", version: 2, keepBig: true)]).tables[0].rows[0]
        #expect(alone.keep == [2], "with no earlier image the target's value is kept")
    }

    @Test("changes without a version apply in arrival order")
    func versionless() {
        let plan = BatchPlanner.plan([change(0, id: "1", version: nil, v: "a"), change(1, id: "1", version: nil, v: "b")])
        #expect(plan.tables[0].rows[0].values[1] == "b" && plan.staleInBatch.isEmpty)
    }

    @Test("resolution rejects unknown columns, missing keys and key/data disagreement")
    func resolution() {
        func event(key: [(String, JSONValue)], data: [(String, JSONValue)]?) -> ChangeEvent {
            ChangeEvent(changeID: "1", table: table.name, operation: data == nil ? .delete : .update,
                        key: key.map { ($0.0, .json($0.1)) }, row: data.map { $0.map { ($0.0, .json($0.1)) } },
                        version: 1, timestampMicros: nil, format: .native)
        }
        #expect(throws: PoisonError(.unknownColumn, "column 'nope' does not exist in public.t")) {
            try ResolvedChange.resolve(event(key: [("id", .number("1"))], data: [("id", .number("1")), ("nope", .null)]), index: 0, table: table)
        }
        #expect((try? ResolvedChange.resolve(event(key: [("v", .string("x"))], data: nil), index: 0, table: table)) == nil)
        #expect((try? ResolvedChange.resolve(event(key: [("id", .number("1"))], data: [("id", .number("2"))]), index: 0, table: table)) == nil)
        // Absent columns are kept; "007" and "7" are one key.
        let r = try? ResolvedChange.resolve(event(key: [("id", .string("007"))], data: [("id", .number("7")), ("v", .string("y"))]), index: 0, table: table)
        #expect(r?.keyTexts == ["7"] && r?.keep == [2])
    }

    @Test("COPY text escaping")
    func copyText() {
        var out: [UInt8] = []
        CopyText.appendRow(["a\tb", nil, "c\\d\ne", ""], to: &out)
        #expect(String(decoding: out, as: UTF8.self) == "a\\tb\t\\N\tc\\\\d\\ne\t\n")
    }

    @Test("identifiers are quoted, quotes doubled")
    func quoting() {
        #expect(quoteIdentifier("status\" = 'x'; --") == "\"status\"\" = 'x'; --\"")
        #expect(TableName(parsing: "orders").quoted == "\"public\".\"orders\"")
    }
}
