import CDCCore
import CDCKafka
import CDCPostgres
import Foundation

/// A random sequence of native changes over many keys of `public.orders`, with the final state it
/// must produce. Change IDs and versions are the sequence numbers, as the source change log gives them.
struct Workload {
    struct Change {
        let id: Int
        let key: Int
        let row: [(String, JSONValue)]?  // nil = delete
    }

    var changes: [Change] = []
    var state: [Int: [(String, JSONValue)]] = [:]

    init(changes count: Int, keys: Int, seed: UInt64) {
        var rng = SplitMix64(seed: seed)
        for i in 1...count {
            let key = Int(rng.next() % UInt64(keys)) + 1
            let row: [(String, JSONValue)]?
            if state[key] != nil && rng.next() % 4 == 0 {
                row = nil
            } else {
                row = [
                    ("id", .number(String(key))), ("customer_id", .number(String(i))), ("status", .string("s\(i % 7)")),
                    ("amount", .string("\(i).\(i % 100 < 10 ? "0" : "")\(i % 100)")), ("created_at", .string("2026-11-20T10:00:00.\(100_000 + i % 899_999)Z")),
                    ("shipped_on", i % 3 == 0 ? .null : .string("2026-11-\(10 + i % 18)")), ("note", i % 5 == 0 ? .string("tab\there \"q\" \\ é") : .null),
                    ("attrs", .object([("n", .number(String(i)))])), ("ext_id", .null), ("updated_local", .null),
                ]
            }
            state[key] = row
            if row == nil { state.removeValue(forKey: key) }
            changes.append(Change(id: i, key: key, row: row))
        }
    }

    func message(_ c: Change, topic: String, partitions: Int) -> OutgoingMessage {
        let value = JSONValue.object([
            ("change_id", .string(String(c.id))), ("table", .string("public.orders")),
            ("operation", .string(c.row == nil ? "DELETE" : "UPDATE")), ("key", .object([("id", .number(String(c.key)))])),
            ("data", c.row.map { .object($0) } ?? .null), ("timestamp", .number(String(1_795_168_800_000 + c.id))),
            ("version", .number(String(c.id))),
        ])
        return OutgoingMessage(topic: topic, partition: Int32(c.key % partitions), key: Array("{\"id\":\(c.key)}".utf8), value: Array(value.serialized.utf8))
    }

    /// The expected final rows as a JSON array (for `Expect.differences`).
    var expectedRows: JSONValue { .array(state.keys.sorted().map { .object(state[$0]!) }) }
}

/// Polls `condition` until it holds or `timeout` passes.
func waitUntil(timeout: Duration = .seconds(60), _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try condition() { return true }
        usleep(100_000)
    }
    return try condition()
}

/// Ledger size of a target, or -1 when it cannot be read (yet).
func ledgerCount(_ url: String) -> Int {
    guard let c = try? PGConnection.connect(url) else { return -1 }
    defer { c.close() }
    return (try? Expect.count(c, "SELECT count(*) FROM cdcr.ledger")) ?? -1
}
