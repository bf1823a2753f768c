@testable import CDCCore
import Testing

/// Decoding Debezium semantic types without a server: limits, boundaries, the target column's type.
@Suite("Debezium semantic types")
struct DebeziumTypesTests {
    static func field(_ type: String, _ name: String? = nil, _ params: String = "") -> JSONValue {
        let n = name.map { #","name":"\#($0)""# } ?? ""
        let p = params.isEmpty ? "" : #","parameters":{\#(params)}"#
        return try! JSONParser.parse(#"{"type":"\#(type)"\#(n)\#(p),"optional":true,"field":"c"}"#)
    }

    static func convert(_ value: String, _ schema: JSONValue?) throws(PoisonError) -> ColumnValue {
        try DebeziumDecoder.convert(try! JSONParser.parse(value), schema: schema, column: "c")
    }

    static func text(_ value: String, _ schema: JSONValue?, into sqlType: String = "text", typname: String = "text", format: EventFormat = .debezium) throws(PoisonError) -> String? {
        let col = ColumnInfo(name: "c", sqlType: sqlType, kind: ColumnKind(typeName: typname, category: typname.hasPrefix("_") ? "A" : "U"), notNull: false)
        return try ValueConverter.pgText(try convert(value, schema), column: col, format: format)
    }

    static func refused(_ value: String, _ schema: JSONValue?, into sqlType: String = "text", typname: String = "text") -> PoisonError? {
        do { _ = try text(value, schema, into: sqlType, typname: typname); return nil } catch { return error }
    }

    // MARK: Task A: bounds before expansion

    @Test("a Decimal scale beyond PostgreSQL numeric is refused at once, naming column and type")
    func hugeDecimalScale() throws {
        let clock = ContinuousClock()
        let start = clock.now
        let e = Self.refused(#""AQ==""#, Self.field("bytes", "org.apache.kafka.connect.data.Decimal", #""scale":"2000000000""#))
        #expect(e?.reason == .invalidValue)
        #expect(e?.message.contains("c") == true && e?.message.contains("Decimal") == true && e?.message.contains("numeric") == true, "\(String(describing: e))")
        #expect(clock.now - start < .milliseconds(50))
        #expect(Self.refused(#""AQ==""#, Self.field("bytes", "org.apache.kafka.connect.data.Decimal", #""scale":"-2000000000""#))?.reason == .invalidValue)
        #expect(Self.refused(#""AQ==""#, Self.field("bytes", "org.apache.kafka.connect.data.Decimal", #""scale":"1001""#)) != nil)
        #expect(try Self.text(#""AQ==""#, Self.field("bytes", "org.apache.kafka.connect.data.Decimal", #""scale":"1000""#))?.count == 1002)
        #expect(try Self.text(#""Aw==""#, Self.field("bytes", "org.apache.kafka.connect.data.Decimal", #""scale":"-3""#)) == "3000", "negative scale (PostgreSQL 15 numeric(p,-s))")
        #expect(Self.refused(#""AQ==""#, Self.field("bytes", "org.apache.kafka.connect.data.Decimal")) != nil, "a missing scale is not 0")
    }

    @Test("a VariableScaleDecimal scale of 2147483647 or below zero is refused; 16383 is the most")
    func hugeVariableScale() throws {
        let vsd = Self.field("struct", "io.debezium.data.VariableScaleDecimal")
        #expect(Self.refused(#"{"scale":2147483647,"value":"AQ=="}"#, vsd)?.reason == .invalidValue)
        #expect(Self.refused(#"{"scale":-1,"value":"AQ=="}"#, vsd)?.reason == .invalidValue)
        let max = try #require(try Self.text(#"{"scale":16383,"value":"AQ=="}"#, vsd))
        #expect(max.count == 16385 && max.hasPrefix("0.000") && max.hasSuffix("1"))
        #expect(Self.refused(#"{"scale":16384,"value":"AQ=="}"#, vsd) != nil)
    }

    @Test("unscaled bytes beyond 131072 integer digits are refused before conversion")
    func tooManyBytes() {
        let bytes = [UInt8](repeating: 0x7F, count: 60_000)
        #expect(throws: DecimalBytes.Refusal.self) { try DecimalBytes.decimalString(bigEndianTwosComplement: bytes, scale: 0) }
        // Redundant sign bytes do not count.
        #expect(try! DecimalBytes.decimalString(bigEndianTwosComplement: [UInt8](repeating: 0, count: 100_000) + [5], scale: 1) == "0.5")
        #expect(try! DecimalBytes.decimalString(bigEndianTwosComplement: [UInt8](repeating: 0xFF, count: 100_000), scale: 0) == "-1")
    }

    @Test("wide decimals convert exactly", arguments: [
        ("f/////////////////////8=", 0, "43556142965880123323311949751266331066367"),
        ("gAAAAAAAAAAAAAAAAAAAAAA=", 2, "-435561429658801233233119497512663310663.68"),
        ("AQAAAAAAAAAA", 0, "18446744073709551616"), ("/w==", 3, "-0.001"), ("", 2, "0.00"),
    ])
    func wideDecimals(_ b64: String, _ scale: Int64, _ expected: String) throws {
        #expect(try DecimalBytes.decimalString(bigEndianTwosComplement: try #require(DecimalBytes.base64Decode(b64)), scale: scale) == expected)
    }

    @Test("dates and timestamps beyond PostgreSQL's range are refused; BC dates are written as BC")
    func timeRanges() throws {
        let date = Self.field("int32", "io.debezium.time.Date")
        #expect(try Self.text("-2440588", date) == "4714-11-24 BC")
        #expect(try Self.text("2145042905", date) == "5874897-12-31")
        #expect(try Self.text("-719163", date) == "0001-12-31 BC")
        #expect(try Self.text("-1", date) == "1969-12-31")
        #expect(Self.refused("-2440589", date) != nil && Self.refused("2145042906", date) != nil)
        #expect(Self.refused("2147483647", date) != nil)
        let micro = Self.field("int64", "io.debezium.time.MicroTimestamp")
        #expect(try Self.text("-1", micro) == "1969-12-31T23:59:59.999999")
        #expect(try Self.text("-210866803200000000", micro) == "4714-11-24T00:00:00.000000 BC")
        #expect(Self.refused("-210866803200000001", micro) != nil)
        #expect(try Self.text("9223372036825200000", micro) == "infinity")
        #expect(try Self.text("-9223372036832400000", micro) == "-infinity")
        let millis = Self.field("int64", "io.debezium.time.Timestamp")
        #expect(Self.refused("9223372036854775807", millis) != nil, "ms × 1000 overflows")
        #expect(try Self.text("-1", millis) == "1969-12-31T23:59:59.999000")
        let nanos = Self.field("int64", "io.debezium.time.NanoTimestamp")
        #expect(try Self.text("1500000000123456789", nanos) == "2017-07-14T02:40:00.123456789")
        #expect(try Self.text("-1", nanos) == "1969-12-31T23:59:59.999999999")
        #expect(try Self.text("9223372036854775807", nanos) == "infinity")
    }

    // MARK: Task B: semantic types

    @Test("times of day: 24:00:00, micro and nano precision, negative refused")
    func times() throws {
        let micro = Self.field("int64", "io.debezium.time.MicroTime")
        #expect(try Self.text("86400000000", micro) == "24:00:00.000000")
        #expect(try Self.text("1", micro) == "00:00:00.000001")
        #expect(Self.refused("-1", micro) != nil && Self.refused("86400000001", micro) != nil)
        let nano = Self.field("int64", "io.debezium.time.NanoTime")
        #expect(try Self.text("45296123456789", nano) == "12:34:56.123456789", "nanoseconds, not microseconds")
        #expect(try Self.text("86400000000000", nano) == "24:00:00.000000000")
        #expect(Self.refused("-1", nano) != nil)
        let millis = Self.field("int32", "io.debezium.time.Time")
        #expect(try Self.text("86400000", millis) == "24:00:00.000000")
    }

    @Test("MicroDuration is microseconds: 9,000,000,000 µs is 02:30:00")
    func microDuration() throws {
        let f = Self.field("int64", "io.debezium.time.MicroDuration")
        #expect(try Self.text("9000000000", f, into: "interval", typname: "interval") == "2:30:00.000000")
        #expect(try Self.text("-1", f, into: "interval", typname: "interval") == "-0:00:00.000001")
        #expect(try Self.text("9000000000", nil, into: "interval", typname: "interval") == "2:30:00.000000", "schemaless too")
        #expect(try Self.text("9000000000", nil, into: "interval", typname: "interval", format: .native) == "9000000000", "native events keep PostgreSQL's reading")
        #expect(Self.refused("1", f, into: "date", typname: "date") != nil)
    }

    @Test("Bits: little-endian bytes, length from the schema")
    func bits() throws {
        let f = Self.field("bytes", "io.debezium.data.Bits", #""length":"10""#)
        // b'1000000101' = 0x205: bytes [0x05, 0x02] little-endian.
        #expect(try Self.text(#""BQI=""#, f, into: "bit(10)", typname: "bit") == "1000000101")
        #expect(try Self.text(#""AQ==""#, f, into: "bit(10)", typname: "bit") == "0000000001")
        #expect(try Self.text(#""""#, f, into: "bit(10)", typname: "bit") == "0000000000")
        #expect(Self.refused(#""BQQ=""#, f, into: "bit(10)", typname: "bit") != nil, "bit 10 set beyond the length")
        #expect(Self.refused(#""BQI=""#, f, into: "bit(12)", typname: "bit") != nil)
        #expect(Self.refused(#""BQI=""#, f, into: "bit varying(10)", typname: "varbit")?.message.contains("leading zero") == true)
        let fixed = Self.field("bytes", "io.debezium.data.Bits", #""length":"10","__debezium.source.column.type":"BIT""#)
        #expect(try Self.text(#""BQI=""#, fixed, into: "bit varying(10)", typname: "varbit") == "1000000101")
        #expect(try Self.text("true", Self.field("boolean"), into: "bit(1)", typname: "bit") == "1")
        #expect(try Self.text("false", nil, into: "bit(1)", typname: "bit") == "0")
        #expect(Self.refused(#""1010""#, nil, into: "bit(4)", typname: "bit") != nil, "schemaless Bits: the length is in the schema")
        #expect(try Self.text(#""1010""#, nil, into: "bit(4)", typname: "bit", format: .native) == "1010", "native events send bits as PostgreSQL text")
        #expect(try Self.text(#""101""#, nil, into: "bit varying(8)", typname: "varbit", format: .native) == "101")
        #expect(try Self.text("true", Self.field("boolean"), into: "boolean", typname: "bool") == "true")
    }

    @Test("Point into point, Geometry into PostGIS (EWKB with the SRID) or bytea")
    func geometry() throws {
        let point = #"{"x":1.5,"y":-2,"wkb":"AQEAAAAAAAAAAAD4PwAAAAAAAADA","srid":null}"#
        #expect(try Self.text(point, Self.field("struct", "io.debezium.data.geometry.Point"), into: "point", typname: "point") == "(1.5,-2)")
        #expect(try Self.text(point, nil, into: "point", typname: "point") == "(1.5,-2)")
        let g = #"{"wkb":"AQEAAAAAAAAAAAD4PwAAAAAAAADA","srid":4326}"#
        #expect(try Self.text(g, Self.field("struct", "io.debezium.data.geometry.Geometry"), into: "geometry", typname: "geometry") == "0101000020e6100000000000000000f83f00000000000000c0")
        #expect(try Self.text(g, Self.field("struct", "io.debezium.data.geometry.Geography"), into: "bytea", typname: "bytea") == "\\x0101000000000000000000f83f00000000000000c0")
        #expect(Self.refused(g, Self.field("struct", "io.debezium.data.geometry.Geometry"), into: "text") != nil)
    }

    @Test("hstore from json mode (a JSON text) and map mode (an object), quoted and escaped")
    func hstore() throws {
        let json = #""{\"a\":\"1\",\"k \\\"q\\\"\":\"x\\\\y\",\"n\":null}""#
        let expected = #""a"=>"1", "k \"q\""=>"x\\y", "n"=>NULL"#
        #expect(try Self.text(json, Self.field("string", "io.debezium.data.Json"), into: "hstore", typname: "hstore") == expected)
        #expect(try Self.text(json, nil, into: "hstore", typname: "hstore") == expected)
        let map = #"{"a":"1","k \"q\"":"x\\y","n":null}"#
        #expect(try Self.text(map, Self.field("map"), into: "hstore", typname: "hstore") == expected)
        #expect(try Self.text(map, nil, into: "hstore", typname: "hstore") == expected)
        #expect(Self.refused(#""{\"a\":1}""#, nil, into: "hstore", typname: "hstore") != nil)
    }

    @Test("VariableScaleDecimal without a schema into numeric; special values in string mode")
    func decimals() throws {
        #expect(try Self.text(#"{"scale":2,"value":"BNI="}"#, nil, into: "numeric", typname: "numeric") == "12.34")
        #expect(Self.refused(#"{"scale":99999,"value":"BNI="}"#, nil, into: "numeric", typname: "numeric") != nil)
        #expect(try Self.text(#""NAN""#, nil, into: "numeric", typname: "numeric") == "NAN")
        #expect(try Self.text(#""POSITIVE_INFINITY""#, nil, into: "numeric", typname: "numeric") == "Infinity")
        #expect(try Self.text(#""-Infinity""#, Self.field("double"), into: "double precision", typname: "float8") == "-Infinity")
    }

    @Test("bytea: bytes fields are base64; a string is base64, base64-url-safe or hex — refused when both")
    func binary() throws {
        #expect(try Self.text(#""3q2+7w==""#, Self.field("bytes"), into: "bytea", typname: "bytea") == "\\xdeadbeef")
        #expect(try Self.text(#""AAAA""#, Self.field("bytes"), into: "bytea", typname: "bytea") == "\\x000000", "the schema says base64")
        #expect(try Self.text(#""3q2-7w==""#, Self.field("string"), into: "bytea", typname: "bytea") == "\\xdeadbeef")
        #expect(try Self.text(#""DEADBEEF00""#, Self.field("string"), into: "bytea", typname: "bytea") == "\\xdeadbeef00")
        #expect(Self.refused(#""AAAA""#, Self.field("string"), into: "bytea", typname: "bytea")?.message.contains("hex and as base64") == true)
        #expect(Self.refused(#""AAAA""#, nil, into: "bytea", typname: "bytea") != nil)
        #expect(try Self.text(#""""#, nil, into: "bytea", typname: "bytea") == "\\x")
    }

    @Test("arrays of semantic types, empty and with NULLs")
    func arrays() throws {
        let dates = try JSONParser.parse(#"{"type":"array","items":{"type":"int32","name":"io.debezium.time.Date","optional":true},"field":"c"}"#)
        #expect(try Self.text("[0,null,-1]", dates, into: "date[]", typname: "_date") == #"{"1970-01-01",NULL,"1969-12-31"}"#)
        #expect(try Self.text("[]", dates, into: "date[]", typname: "_date") == "{}")
        #expect(try Self.text("null", dates, into: "date[]", typname: "_date") == nil)
        let bytes = try JSONParser.parse(#"{"type":"array","items":{"type":"bytes","optional":true},"field":"c"}"#)
        #expect(try Self.text(#"["3q2+7w==",null]"#, bytes, into: "bytea[]", typname: "_bytea") == #"{"\\xdeadbeef",NULL}"#)
    }

    @Test("op m is a logical decoding message: skipped, not poison")
    func logicalMessage() throws {
        let value = #"{"op":"m","ts_ms":1,"source":{"lsn":5,"schema":"","table":""},"message":{"prefix":"p","content":"aGk="}}"#
        #expect(try EventDecoder().decode(key: nil, value: Array(value.utf8)) == .logicalMessage)
    }
}
