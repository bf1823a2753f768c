import CDCCore
import Testing

@Suite("COPY text format")
struct CopyTextTests {
    func decode(_ text: [UInt8]) -> [String?] { text.withUnsafeBytes { CopyText.decodeRow($0) } }

    @Test("a row decodes to its fields: NULL, escapes, octal and hex bytes, UTF-8")
    func decodesEscapes() {
        let row = Array(#"7\N\ttab\nline\\back\101\x42Ä"#.utf8) + [0x09] + Array("\\N".utf8) + [0x09] + Array("last".utf8) + [0x0A]
        // The first field holds no tab: "7" then an escaped \N inside a field is a literal N.
        #expect(decode(row) == ["7N\ttab\nline\\backABÄ", nil, "last"])
        #expect(decode(Array("\t\n".utf8)) == ["", ""])
    }

    @Test("what appendRow encodes decodes back to the same fields")
    func roundTrip() {
        let fields: [String?] = ["a\tb", nil, "", "back\\slash", "line\nfeed\rcr", "ü €"]
        var data: [UInt8] = []
        CopyText.appendRow(fields, to: &data)
        #expect(decode(data) == fields)
    }
}
