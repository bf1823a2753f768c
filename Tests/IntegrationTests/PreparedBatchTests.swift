import CDCCore
@testable import CDCR
import Testing

/// `PreparedBatch` is pure (no server): what the consume thread hands the apply thread, and when the
/// prepared plan may be used at all.
@Suite("prepared batches")
struct PreparedBatchTests {
    let orders = TargetTable(name: TableName(schema: "public", name: "orders"), columns: [
        ColumnInfo(name: "id", sqlType: "bigint", kind: .integer, notNull: true),
        ColumnInfo(name: "status", sqlType: "text", kind: .text, notNull: false),
    ], primaryKey: [0])

    func change(_ id: String, key: Int, table: String = "public.orders", status: String? = "new") -> Result<DecodedMessage, PoisonError> {
        .success(.change(ChangeEvent(
            changeID: id, table: TableName(parsing: table), operation: status == nil ? .delete : .update,
            key: [("id", .json(.number(String(key))))],
            row: status.map { [("id", .json(.number(String(key)))), ("status", .json(.string($0)))] },
            version: Int64(id), timestampMicros: nil, format: .native)))
    }

    @Test("a clean batch is resolved, planned and encoded; a repeated ID is left out of the plan")
    func clean() throws {
        let items = [change("1", key: 1), change("2", key: 2), change("3", key: 1, status: "paid"), change("2", key: 2, status: "dup"),
                     .failure(PoisonError(.undecodable, "bad")), .success(.tombstone)]
        let p = PreparedBatch.make(items, tables: [orders.name: orders], settings: Settings())
        #expect(p.ledger.count == 3 && p.ledger.first == [true, true, true, false, false, false])
        #expect(p.changes.compactMap { $0 }.count == 4, "every change of a known table is resolved")
        let staged = try #require(p.staged)
        #expect(p.plannedChanges == 3)
        #expect(staged.plan.tables.count == 1 && staged.plan.tables[0].rows.count == 2)
        #expect(staged.plan.tables[0].rows[0].members == [0, 2] && staged.plan.tables[0].rows[0].values[1] == "paid")
        #expect(staged.stage.count == 1 && !staged.stage[0].anyKeep && !staged.stage[0].data.isEmpty)
        #expect(p.unknownTables.isEmpty)
    }

    @Test("no plan when a change's table is unknown or a truncate is to be applied")
    func incomplete() {
        let unknown = PreparedBatch.make([change("1", key: 1), change("2", key: 1, table: "public.other")],
                                         tables: [orders.name: orders], settings: Settings())
        #expect(unknown.staged == nil && unknown.unknownTables == [TableName(parsing: "public.other")])
        #expect(unknown.changes[0] != nil && unknown.changes[1] == nil)

        let items: [Result<DecodedMessage, PoisonError>] = [change("1", key: 1), .success(.truncate(orders.name, version: 5))]
        #expect(PreparedBatch.make(items, tables: [orders.name: orders], settings: Settings()).staged != nil, "an ignored truncate changes nothing")
        var applying = Settings()
        applying.applyTruncate = true
        #expect(PreparedBatch.make(items, tables: [orders.name: orders], settings: applying).staged == nil)
    }
}
