import CDCCore
import CDCKafka

/// Writes poison messages to the dead-letter topic, unchanged, with headers that say why and where
/// they came from. `write` returns only after the broker acknowledged every message.
public final class DeadLetterWriter {
    private let producer: KafkaProducer
    private let settings: Settings

    public init(settings: Settings) throws {
        self.settings = settings
        self.producer = try KafkaProducer(properties: settings.kafkaClientProperties())
    }

    /// Header names of a dead-lettered message (a public contract; see README).
    public enum Header {
        public static let reason = "cdcr.error.reason"
        public static let message = "cdcr.error.message"
        public static let sqlState = "cdcr.error.sqlstate"
        public static let topic = "cdcr.source.topic"
        public static let partition = "cdcr.source.partition"
        public static let offset = "cdcr.source.offset"
        public static let changeID = "cdcr.change_id"
    }

    /// Writes each message to the dead-letter topic of its own topic, or to `topic` when given.
    public func write(_ items: [(KafkaMessage, PoisonError, changeID: String?)], to topic: String? = nil) throws {
        let messages = items.map { message, poison, changeID in
            var headers: [(String, String)] = [
                (Header.reason, poison.reason.rawValue),
                (Header.message, String(poison.message.prefix(2_000))),
                (Header.topic, message.topic),
                (Header.partition, String(message.partition)),
                (Header.offset, String(message.offset)),
            ]
            if let s = poison.sqlState { headers.append((Header.sqlState, s)) }
            if let changeID { headers.append((Header.changeID, changeID)) }
            return OutgoingMessage(topic: topic ?? settings.deadLetterTopic(for: message.topic), key: message.key, value: message.value, headers: headers)
        }
        try producer.send(messages)
    }

    public func close() { producer.close() }
}

/// Best-effort change ID of a message that could not be decoded, for the dead-letter header.
func salvageChangeID(_ value: [UInt8]?) -> String? {
    guard let value, let json = try? JSONParser.parse(bytes: value) else { return nil }
    switch json["change_id"] {
    case let .string(s)?: return s
    case let .number(n)?: return n
    default: return nil
    }
}
