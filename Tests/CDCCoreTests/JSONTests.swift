@testable import CDCCore
import Testing

@Suite("JSON")
struct JSONTests {
    @Test("numbers keep their exact text")
    func exactNumbers() throws {
        let v = try JSONParser.parse(#"{"a": 12.340, "b": 123456789012345678901234567890, "c": -0.5e-3}"#)
        #expect(v["a"] == .number("12.340"))
        #expect(v["b"] == .number("123456789012345678901234567890"))
        #expect(v["c"] == .number("-0.5e-3"))
    }

    @Test("escapes, unicode and surrogate pairs round-trip")
    func strings() throws {
        let v = try JSONParser.parse(#"["a\"b\\c\n", "\u00e9\ud83d\ude00", "plain ü"]"#)
        #expect(v == .array([.string("a\"b\\c\n"), .string("é😀"), .string("plain ü")]))
        #expect(try JSONParser.parse(v.serialized) == v)
    }

    @Test("invalid input is rejected with a reason", arguments: [
        "", "not json", "{\"a\":}", "[1,]", "{\"a\" 1}", "01", "1.", "\"\\x\"", "[1] 2", "\"\u{01}\"", "\"\\ud800\"",
    ])
    func invalid(_ text: String) {
        #expect(throws: JSONParseError.self) { try JSONParser.parse(text) }
    }

    @Test("hostile nesting is refused, not a stack overflow")
    func deepNesting() {
        let deep = String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
        #expect(throws: JSONParseError.self) { try JSONParser.parse(deep) }
    }

    @Test("member order is kept")
    func order() throws {
        let v = try JSONParser.parse(#"{"z":1,"a":2}"#)
        #expect(v.objectMembers?.map(\.0) == ["z", "a"])
        #expect(v.serialized == #"{"z":1,"a":2}"#)
    }
}

@Suite("time and decimals")
struct TimeDecimalTests {
    @Test("days since epoch ↔ civil date")
    func civil() {
        #expect(CivilTime.dateString(days: 0) == "1970-01-01")
        #expect(CivilTime.dateString(days: 20777) == "2026-11-20")
        #expect(CivilTime.dateString(days: -1) == "1969-12-31")
        for d in stride(from: Int64(-800_000), to: 800_000, by: 997) {
            let (y, m, dd) = CivilTime.civil(fromDays: d)
            #expect(CivilTime.days(year: y, month: m, day: dd) == d)
        }
    }

    @Test("microsecond timestamps")
    func timestamps() {
        #expect(CivilTime.timestampString(micros: 1_795_168_802_500_000) == "2026-11-20T10:00:02.500000")
        #expect(CivilTime.timestampString(micros: 1_795_165_200_000_001) == "2026-11-20T09:00:00.000001")
        #expect(CivilTime.timestampString(micros: -1) == "1969-12-31T23:59:59.999999")
    }

    @Test("ISO-8601 instants")
    func instants() {
        #expect(CivilTime.parseInstant("2026-11-20T10:00:00Z") == 1_795_168_800_000_000)
        #expect(CivilTime.parseInstant("2026-11-20T10:00:00.123456Z") == 1_795_168_800_123_456)
        #expect(CivilTime.parseInstant("2026-11-20T12:00:00+02:00") == 1_795_168_800_000_000)
        #expect(CivilTime.parseInstant("2026-11-20 10:00:00.5") == 1_795_168_800_500_000)
        #expect(CivilTime.parseInstant("yesterday") == nil)
        #expect(CivilTime.parseInstant("2026-13-01T00:00:00Z") == nil)
    }

    @Test("Connect Decimal bytes", arguments: [
        ("BNI=", 2, "12.34"), ("/gw=", 2, "-5.00"), ("AA==", 2, "0.00"), ("AQ==", 0, "1"), ("/w==", 0, "-1"),
        ("AIAAAAAAAAAAAAAAAAAAAAA=", 3, "170141183460469231731687303715884105.728"),
    ])
    func decimals(_ b64: String, _ scale: Int, _ expected: String) throws {
        let bytes = try #require(DecimalBytes.base64Decode(b64))
        #expect(try DecimalBytes.decimalString(bigEndianTwosComplement: bytes, scale: Int64(scale)) == expected)
    }
}
