@testable import CDCCore
import Foundation
import Testing

/// `../shared/fixtures`, beside the project root.
let fixturesRoot: String = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("shared/fixtures").path

/// Each fixture line as (key bytes, value bytes, the raw line).
func fixtureMessages(_ name: String) throws -> [(key: [UInt8]?, value: [UInt8]?, line: JSONValue)] {
    let text = try String(contentsOfFile: "\(fixturesRoot)/\(name)", encoding: .utf8)
    return try text.split(separator: "\n").map { raw in
        let line = try JSONParser.parse(String(raw))
        let key = line["key"].flatMap { $0.isNull ? nil : Array($0.serialized.utf8) }
        let value: [UInt8]? = line["value_raw"]?.stringValue.map { Array($0.utf8) }
            ?? line["value"].flatMap { $0.isNull ? nil : Array($0.serialized.utf8) }
        return (key, value, line)
    }
}

@Suite("decoders against every fixture")
struct DecoderFixtureTests {
    let decoder = EventDecoder()

    @Test("native sequence: ids, tables, versions, operations")
    func nativeSequence() throws {
        let events = try fixtureMessages("native/sequence.jsonl").map { try decoder.decode(key: $0.key, value: $0.value) }
        let changes = events.compactMap { if case let .change(c) = $0 { c } else { nil } }
        #expect(changes.count == 9)
        #expect(changes.map(\.changeID) == ["101", "102", "103", "102", "104", "105", "102", "99", "106"])
        #expect(changes[5].table == TableName(schema: "public", name: "orders"), "a bare table name means public")
        #expect(changes[4].operation == .delete && changes[4].row == nil)
        #expect(changes.allSatisfy { $0.format == .native && $0.version == Int64($0.changeID) })
        #expect(changes[0].timestampMicros == CivilTime.parseInstant("2026-11-20T10:00:00Z"))
        #expect(changes[8].key.map(\.0) == ["order_id", "line_no"])
    }

    @Test("native poison: each bad line fails with the reason its expect names")
    func nativePoison() throws {
        let expected: [String: PoisonReason?] = [
            "undecodable": .undecodable, "unknown operation": .unknownOperation, "no key": .noKey,
            // Decodable: these fail later, against the catalog or the column's type.
            "unknown table": nil, "hostile table name": nil, "hostile column name": nil,
            "value not of the column's type": nil, "applied": nil,
        ]
        for m in try fixtureMessages("native/poison.jsonl") {
            let expect = try #require(m.line["expect"]?.stringValue)
            let want = try #require(expected[expect], "unlisted expectation \(expect)")
            do {
                _ = try decoder.decode(key: m.key, value: m.value)
                #expect(want == nil, "\(expect) decoded but should fail with \(String(describing: want))")
            } catch {
                #expect(error.reason == want, "\(expect)")
            }
        }
    }

    @Test("Debezium with and without schema decode to the same values once typed")
    func debeziumEquivalence() throws {
        let withSchema = try fixtureMessages("debezium/with-schema.jsonl").map { try decoder.decode(key: $0.key, value: $0.value) }
        let noSchema = try fixtureMessages("debezium/no-schema.jsonl").map { try decoder.decode(key: $0.key, value: $0.value) }
        #expect(withSchema.count == noSchema.count)
        let orders = TargetTable(name: TableName(schema: "public", name: "orders"), columns: [
            ColumnInfo(name: "id", sqlType: "bigint", kind: .integer, notNull: true),
            ColumnInfo(name: "customer_id", sqlType: "bigint", kind: .integer, notNull: false),
            ColumnInfo(name: "status", sqlType: "text", kind: .text, notNull: false),
            ColumnInfo(name: "amount", sqlType: "numeric(12,2)", kind: .numeric, notNull: false),
            ColumnInfo(name: "created_at", sqlType: "timestamp with time zone", kind: .timestamptz, notNull: false),
            ColumnInfo(name: "shipped_on", sqlType: "date", kind: .date, notNull: false),
            ColumnInfo(name: "note", sqlType: "text", kind: .text, notNull: false),
            ColumnInfo(name: "attrs", sqlType: "jsonb", kind: .json, notNull: false),
            ColumnInfo(name: "ext_id", sqlType: "uuid", kind: .uuid, notNull: false),
            ColumnInfo(name: "updated_local", sqlType: "timestamp without time zone", kind: .timestamp, notNull: false),
        ], primaryKey: [0])
        for (i, (a, b)) in zip(withSchema, noSchema).enumerated() {
            guard case let .change(ca) = a, case let .change(cb) = b else {
                #expect(a == b, "line \(i + 1): both tombstones")
                continue
            }
            #expect(ca.changeID == cb.changeID, "line \(i + 1): change IDs derive from position and key only")
            #expect(ca.version == cb.version && ca.operation == cb.operation && ca.table == cb.table)
            guard ca.table.name == "orders" else { continue }
            let ra = try ResolvedChange.resolve(ca, index: i, table: orders)
            let rb = try ResolvedChange.resolve(cb, index: i, table: orders)
            #expect(ra == rb, "line \(i + 1) resolves identically with and without schema")
        }
        // Spot checks of logical types.
        guard case let .change(first) = withSchema[0], case let .change(paid) = withSchema[2], case let .change(toast) = withSchema[3] else {
            Issue.record("fixture layout changed")
            return
        }
        #expect(first.operation == .read && first.version == 1000)
        let r = try ResolvedChange.resolve(paid, index: 2, table: orders)
        #expect(r.values[3] == "99.90" && r.values[5] == "2026-11-21" && r.values[9] == "2026-11-20T09:00:00.000001")
        let t = try ResolvedChange.resolve(toast, index: 3, table: orders)
        #expect(t.keep == [6], "the unavailable TOASTed note is kept")
        #expect(t.values[9] == "2026-11-20T10:00:02.500000")
    }

    @Test("Debezium tombstone and truncate")
    func debeziumSpecials() throws {
        let msgs = try fixtureMessages("debezium/with-schema.jsonl")
        #expect(try decoder.decode(key: msgs[5].key, value: msgs[5].value) == .tombstone)
        let t = try fixtureMessages("debezium/truncate.jsonl")[0]
        #expect(try decoder.decode(key: t.key, value: t.value) == .truncate(TableName(schema: "public", name: "order_items"), version: 1800))
    }

    @Test("forced formats refuse the other format")
    func forced() throws {
        let native = try fixtureMessages("native/sequence.jsonl")[0]
        #expect(throws: PoisonError.self) { try EventDecoder(choice: .debezium).decode(key: native.key, value: native.value) }
        let dbz = try fixtureMessages("debezium/no-schema.jsonl")[1]
        #expect(throws: PoisonError.self) { try EventDecoder(choice: .native).decode(key: dbz.key, value: dbz.value) }
    }
}
