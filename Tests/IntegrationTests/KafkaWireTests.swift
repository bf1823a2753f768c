import Testing

/// The proxy's ApiVersions rewrite on hand-built frames (no server needed).
@Suite("Kafka wire: the ApiVersions v3 rewrite of the test proxy")
struct KafkaWireTests {
    /// A frame: the 4-byte size prefix, then `payload`.
    static func frame(_ payload: [UInt8]) -> [UInt8] {
        let n = UInt32(payload.count)
        return [UInt8(n >> 24), UInt8(n >> 16 & 0xFF), UInt8(n >> 8 & 0xFF), UInt8(n & 0xFF)] + payload
    }

    /// Response header v0 (correlation ID 7), error 0, two api keys (the second with a tagged field of
    /// its own), throttle time 0, then `tagged` as the top-level tagged-field section.
    static func apiVersionsV3(tagged: [UInt8]) -> [UInt8] {
        let header: [UInt8] = [0, 0, 0, 7]
        let keys: [UInt8] = [3]                              // compact array: 2 entries + 1
            + [0, 0, 0, 0, 0, 9, 0]                          // Produce 0…9, no tagged fields
            + [0, 18, 0, 0, 0, 3, 1, 5, 2, 0xAB, 0xCD]       // ApiVersions 0…3, one tagged field (tag 5, 2 bytes)
        return frame(header + [0, 0] + keys + [0, 0, 0, 0] + tagged)
    }

    /// What tansu 0.6 sends: SupportedFeatures (tag 0) empty, FinalizedFeaturesEpoch (tag 1) -1,
    /// FinalizedFeatures (tag 2) empty, ZkMigrationReady (tag 3) false.
    static let tansuTags: [UInt8] = [4, 0, 1, 1, 1, 8] + [UInt8](repeating: 0xFF, count: 8) + [2, 1, 1, 3, 1, 0]

    @Test("the top-level tagged fields become one empty section, the size prefix follows, the rest is unchanged")
    func dropsTopLevelTaggedFields() throws {
        let original = Self.apiVersionsV3(tagged: Self.tansuTags)
        let rewritten = try #require(KafkaWire.droppingTopLevelTaggedFields(apiVersionsResponse: original))
        #expect(rewritten == Self.apiVersionsV3(tagged: [0]))
        #expect(KafkaWire.frameSize(rewritten) == original.count - 4 - Self.tansuTags.count + 1)
        // The per-entry tagged field of ApiVersions is kept.
        #expect(rewritten.count == original.count - Self.tansuTags.count + 1)
        #expect(Array(rewritten[18..<29]) == [0, 18, 0, 0, 0, 3, 1, 5, 2, 0xAB, 0xCD])
    }

    @Test("nothing to drop, an error response, or a frame that does not parse exactly: passed through")
    func leavesOthersAlone() {
        #expect(KafkaWire.droppingTopLevelTaggedFields(apiVersionsResponse: Self.apiVersionsV3(tagged: [0])) == nil)
        var failed = Self.apiVersionsV3(tagged: Self.tansuTags)
        failed[9] = 35  // UNSUPPORTED_VERSION: the broker may answer in the v0 layout
        #expect(KafkaWire.droppingTopLevelTaggedFields(apiVersionsResponse: failed) == nil)
        let truncated = Self.frame(Array(Self.apiVersionsV3(tagged: Self.tansuTags).dropFirst(4).dropLast(3)))
        #expect(KafkaWire.droppingTopLevelTaggedFields(apiVersionsResponse: truncated) == nil)
        let trailing = Self.frame(Array(Self.apiVersionsV3(tagged: Self.tansuTags).dropFirst(4)) + [0])
        #expect(KafkaWire.droppingTopLevelTaggedFields(apiVersionsResponse: trailing) == nil)
        let wrongSize = Array(Self.apiVersionsV3(tagged: Self.tansuTags).dropLast())
        #expect(KafkaWire.droppingTopLevelTaggedFields(apiVersionsResponse: wrongSize) == nil)
    }

    @Test("request and response headers: api key, version and correlation ID")
    func headers() {
        // ApiVersions v3, correlation ID 0x01020304, client ID "t", then the body.
        let request = Self.frame([0, 18, 0, 3, 1, 2, 3, 4, 0, 1, 0x74, 0])
        let h = KafkaWire.requestHeader(request)
        #expect(h?.apiKey == 18 && h?.apiVersion == 3 && h?.correlationID == 0x0102_0304)
        #expect(KafkaWire.responseCorrelationID(Self.apiVersionsV3(tagged: [0])) == 7)
        #expect(KafkaWire.requestHeader(Self.frame([0, 18, 0])) == nil)
    }
}
