import CDCCore
import CDCKafka

/// One line of a message file in the fixtures' JSONL format: `topic`, `partition`, `key` (JSON or
/// null), and `value` (JSON or null) or `value_raw` (the message text as is). Used by
/// `cdcr dev-produce` and the tests.
public struct JSONLMessage: Sendable {
    public let topic: String?
    public let partition: Int32?
    public let key: [UInt8]?
    public let value: [UInt8]?
    /// The line's `expect` (fixtures only).
    public let expect: String?

    public init(parsing line: String) throws {
        let json = try JSONParser.parse(line)
        guard json.objectMembers != nil else { throw JSONParseError(reason: "a message line must be a JSON object", offset: 0) }
        topic = json["topic"]?.stringValue
        partition = json["partition"]?.int64Value.map { Int32($0) }
        key = json["key"].flatMap { $0.isNull ? nil : Array($0.serialized.utf8) }
        if let raw = json["value_raw"]?.stringValue {
            value = Array(raw.utf8)
        } else if let v = json["value"], !v.isNull {
            value = Array(v.serialized.utf8)
        } else {
            value = nil
        }
        expect = json["expect"]?.stringValue
    }

    /// The message to produce, to `topic` when given, else to the line's own topic.
    public func outgoing(topic override: String? = nil) -> OutgoingMessage? {
        guard let t = override ?? topic else { return nil }
        return OutgoingMessage(topic: t, partition: partition, key: key, value: value)
    }
}
