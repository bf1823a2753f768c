/// Which format to decode messages as: detected per message, or forced by `--format`.
public enum FormatChoice: String, Sendable, CaseIterable {
    case auto, native, debezium
}

/// Decodes one Kafka message into a change, detecting the format unless one is forced.
public struct EventDecoder: Sendable {
    public let choice: FormatChoice

    public init(choice: FormatChoice = .auto) { self.choice = choice }

    /// `value` nil is a tombstone. Throws a `PoisonError` for anything that cannot be a change.
    public func decode(key: [UInt8]?, value: [UInt8]?) throws(PoisonError) -> DecodedMessage {
        guard let value else { return .tombstone }
        let json: JSONValue
        do {
            json = try JSONParser.parse(bytes: value)
        } catch {
            throw PoisonError(.undecodable, "message value is not JSON (\(error))")
        }
        if case .null = json { return .tombstone }
        // A key need not be JSON (native events ignore it), but one that names a member twice is
        // ambiguous like any other part of an event.
        var keyJSON: JSONValue?
        if let key {
            do {
                keyJSON = try JSONParser.parse(bytes: key)
            } catch where error.isDuplicateName {
                throw PoisonError(.undecodable, "message key is ambiguous (\(error))")
            } catch {}
        }
        switch choice {
        case .native: return try NativeDecoder.decode(json)
        case .debezium: return try DebeziumDecoder.decode(json, messageKey: keyJSON)
        case .auto:
            if DebeziumDecoder.looksLikeEnvelope(json) { return try DebeziumDecoder.decode(json, messageKey: keyJSON) }
            if json["change_id"] != nil || json["operation"] != nil { return try NativeDecoder.decode(json) }
            throw PoisonError(.undecodable, "message is neither a native change event nor a Debezium envelope")
        }
    }
}
