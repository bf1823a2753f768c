import CDCCore
import CDCKafka
import CDCPostgres
import CDCR
import Foundation
import Testing

/// docs/DEBEZIUM.md, row by row: each case is one Debezium event (with its field schema, or without
/// a schema) applied by the real `cdcr run` into a real PostgreSQL column, compared as `col::text`.
@Suite("Debezium types through cdcr run")
struct DebeziumTypesIntegrationTests {
    struct Case {
        let pgType: String
        /// The field's schema without `"field"`, or nil for a schemaless event.
        let schema: String?
        let value: String
        /// `col::text` after applying, or nil: dead-lettered as invalid_value.
        let expected: String?
    }

    static let cases: [Case] = [
        Case(pgType: "numeric(10,2)", schema: #"{"type":"bytes","name":"org.apache.kafka.connect.data.Decimal","parameters":{"scale":"2"}}"#, value: #""BNI=""#, expected: "12.34"),
        Case(pgType: "numeric(10,2)", schema: #"{"type":"bytes","name":"org.apache.kafka.connect.data.Decimal","parameters":{"scale":"2"}}"#, value: #""/gw=""#, expected: "-5.00"),
        Case(pgType: "numeric", schema: #"{"type":"struct","name":"io.debezium.data.VariableScaleDecimal","fields":[{"type":"int32","field":"scale"},{"type":"bytes","field":"value"}]}"#, value: #"{"scale":3,"value":"MDk="}"#, expected: "12.345"),
        Case(pgType: "numeric", schema: nil, value: #"{"scale":3,"value":"MDk="}"#, expected: "12.345"),
        Case(pgType: "numeric", schema: #"{"type":"string"}"#, value: #""NAN""#, expected: "NaN"),
        Case(pgType: "numeric", schema: nil, value: #""POSITIVE_INFINITY""#, expected: "Infinity"),
        Case(pgType: "numeric", schema: #"{"type":"double"}"#, value: "12.5", expected: "12.5"),
        Case(pgType: "double precision", schema: #"{"type":"double"}"#, value: #""-Infinity""#, expected: "-Infinity"),
        Case(pgType: "money", schema: #"{"type":"bytes","name":"org.apache.kafka.connect.data.Decimal","parameters":{"scale":"2"}}"#, value: #""BNI=""#, expected: "$12.34"),
        Case(pgType: "date", schema: #"{"type":"int32","name":"io.debezium.time.Date"}"#, value: "19000", expected: "2022-01-08"),
        Case(pgType: "date", schema: #"{"type":"int32","name":"io.debezium.time.Date"}"#, value: "-719163", expected: "0001-12-31 BC"),
        Case(pgType: "date", schema: nil, value: "19000", expected: "2022-01-08"),
        Case(pgType: "date", schema: #"{"type":"int32","name":"io.debezium.time.Date"}"#, value: "2147483647", expected: nil),
        Case(pgType: "time", schema: #"{"type":"int64","name":"io.debezium.time.MicroTime"}"#, value: "86400000000", expected: "24:00:00"),
        Case(pgType: "time", schema: #"{"type":"int64","name":"io.debezium.time.NanoTime"}"#, value: "45296123456000", expected: "12:34:56.123456"),
        Case(pgType: "time(3)", schema: #"{"type":"int32","name":"io.debezium.time.Time"}"#, value: "45296123", expected: "12:34:56.123"),
        Case(pgType: "time(3)", schema: nil, value: "45296123", expected: nil),
        Case(pgType: "timestamp", schema: #"{"type":"int64","name":"io.debezium.time.MicroTimestamp"}"#, value: "1529507596945104", expected: "2018-06-20 15:13:16.945104"),
        Case(pgType: "timestamp", schema: #"{"type":"int64","name":"io.debezium.time.MicroTimestamp"}"#, value: "9223372036825200000", expected: "infinity"),
        Case(pgType: "timestamp", schema: #"{"type":"int64","name":"io.debezium.time.NanoTimestamp"}"#, value: "1529507596945104000", expected: "2018-06-20 15:13:16.945104"),
        Case(pgType: "timestamp(3)", schema: #"{"type":"int64","name":"io.debezium.time.Timestamp"}"#, value: "-1", expected: "1969-12-31 23:59:59.999"),
        Case(pgType: "timestamp", schema: nil, value: "1529507596945104", expected: "2018-06-20 15:13:16.945104"),
        Case(pgType: "timestamptz", schema: #"{"type":"string","name":"io.debezium.time.ZonedTimestamp"}"#, value: #""2018-06-20T15:13:16.945104Z""#, expected: "2018-06-20 15:13:16.945104+00"),
        Case(pgType: "timestamptz", schema: #"{"type":"string","name":"io.debezium.time.ZonedTimestamp"}"#, value: #""infinity""#, expected: "infinity"),
        Case(pgType: "timetz", schema: #"{"type":"string","name":"io.debezium.time.ZonedTime"}"#, value: #""15:13:16.945104Z""#, expected: "15:13:16.945104+00"),
        Case(pgType: "interval", schema: #"{"type":"int64","name":"io.debezium.time.MicroDuration"}"#, value: "9000000000", expected: "02:30:00"),
        Case(pgType: "interval", schema: nil, value: "9000000000", expected: "02:30:00"),
        Case(pgType: "interval", schema: #"{"type":"string","name":"io.debezium.time.Interval"}"#, value: #""P1Y2M3DT4H5M6.78S""#, expected: "1 year 2 mons 3 days 04:05:06.78"),
        Case(pgType: "bit(10)", schema: #"{"type":"bytes","name":"io.debezium.data.Bits","parameters":{"length":"10"}}"#, value: #""BQI=""#, expected: "1000000101"),
        Case(pgType: "bit varying(10)", schema: #"{"type":"bytes","name":"io.debezium.data.Bits","parameters":{"length":"10"}}"#, value: #""BQI=""#, expected: nil),
        Case(pgType: "bit(1)", schema: #"{"type":"boolean"}"#, value: "true", expected: "1"),
        Case(pgType: "bit(1)", schema: nil, value: "false", expected: "0"),
        Case(pgType: "point", schema: #"{"type":"struct","name":"io.debezium.data.geometry.Point","fields":[]}"#, value: #"{"x":1.5,"y":-2,"wkb":"AQEAAAAAAAAAAAD4PwAAAAAAAADA","srid":null}"#, expected: "(1.5,-2)"),
        Case(pgType: "point", schema: nil, value: #"{"x":1.5,"y":-2,"wkb":"AQEAAAAAAAAAAAD4PwAAAAAAAADA","srid":null}"#, expected: "(1.5,-2)"),
        Case(pgType: "bytea", schema: #"{"type":"struct","name":"io.debezium.data.geometry.Geometry","fields":[]}"#, value: #"{"wkb":"AQEAAAAAAAAAAAD4PwAAAAAAAADA","srid":4326}"#, expected: "\\x0101000000000000000000f83f00000000000000c0"),
        Case(pgType: "text", schema: #"{"type":"struct","name":"io.debezium.data.geometry.Geometry","fields":[]}"#, value: #"{"wkb":"AQEAAAAAAAAAAAD4PwAAAAAAAADA","srid":4326}"#, expected: nil),
        Case(pgType: "hstore", schema: #"{"type":"string","name":"io.debezium.data.Json"}"#, value: #""{\"a\":\"1\",\"k \\\"q\\\"\":\"x\\\\y\",\"n\":null}""#, expected: #""a"=>"1", "n"=>NULL, "k \"q\""=>"x\\y""#),
        Case(pgType: "hstore", schema: nil, value: #""{\"a\":\"1\"}""#, expected: #""a"=>"1""#),
        Case(pgType: "hstore", schema: #"{"type":"map","keys":{"type":"string"},"values":{"type":"string","optional":true}}"#, value: #"{"a":"1","n":null}"#, expected: #""a"=>"1", "n"=>NULL"#),
        Case(pgType: "hstore", schema: nil, value: #"{"a":"1"}"#, expected: #""a"=>"1""#),
        Case(pgType: "jsonb", schema: #"{"type":"string","name":"io.debezium.data.Json"}"#, value: #""{\"a\": [1, null]}""#, expected: #"{"a": [1, null]}"#),
        Case(pgType: "json", schema: #"{"type":"string","name":"io.debezium.data.Json"}"#, value: #""{\"a\":1}""#, expected: #"{"a":1}"#),
        Case(pgType: "xml", schema: #"{"type":"string","name":"io.debezium.data.Xml"}"#, value: #""<a>1</a>""#, expected: "<a>1</a>"),
        Case(pgType: "uuid", schema: #"{"type":"string","name":"io.debezium.data.Uuid"}"#, value: #""A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11""#, expected: "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
        Case(pgType: "mood", schema: #"{"type":"string","name":"io.debezium.data.Enum","parameters":{"allowed":"sad,happy"}}"#, value: #""happy""#, expected: "happy"),
        Case(pgType: "bytea", schema: #"{"type":"bytes"}"#, value: #""3q2+7w==""#, expected: "\\xdeadbeef"),
        Case(pgType: "bytea", schema: #"{"type":"bytes"}"#, value: #""AAAA""#, expected: "\\x000000"),
        Case(pgType: "bytea", schema: #"{"type":"string"}"#, value: #""3q2-7w==""#, expected: "\\xdeadbeef"),
        Case(pgType: "bytea", schema: #"{"type":"string"}"#, value: #""deadbeef00""#, expected: "\\xdeadbeef00"),
        Case(pgType: "bytea", schema: #"{"type":"string"}"#, value: #""AAAA""#, expected: nil),
        Case(pgType: "bytea", schema: nil, value: #""3q2+7w==""#, expected: "\\xdeadbeef"),
        Case(pgType: "int4[]", schema: #"{"type":"array","items":{"type":"int32","optional":true}}"#, value: "[1,null,3]", expected: "{1,NULL,3}"),
        Case(pgType: "text[]", schema: nil, value: #"["a\"b",null,""]"#, expected: #"{"a\"b",NULL,""}"#),
        Case(pgType: "date[]", schema: #"{"type":"array","items":{"type":"int32","name":"io.debezium.time.Date","optional":true}}"#, value: "[0,null]", expected: "{1970-01-01,NULL}"),
        Case(pgType: "numeric[]", schema: #"{"type":"array","items":{"type":"struct","name":"io.debezium.data.VariableScaleDecimal","optional":true}}"#, value: #"[{"scale":3,"value":"MDk="},null]"#, expected: "{12.345,NULL}"),
        Case(pgType: "int4[]", schema: #"{"type":"array","items":{"type":"int32","optional":true}}"#, value: "[]", expected: "{}"),
        Case(pgType: "inet", schema: #"{"type":"string"}"#, value: #""192.168.0.1/24""#, expected: "192.168.0.1/24"),
        Case(pgType: "cidr", schema: #"{"type":"string"}"#, value: #""10.0.0.0/8""#, expected: "10.0.0.0/8"),
        Case(pgType: "macaddr", schema: #"{"type":"string"}"#, value: #""08:00:2b:01:02:03""#, expected: "08:00:2b:01:02:03"),
        Case(pgType: "ltree", schema: #"{"type":"string","name":"io.debezium.data.Ltree"}"#, value: #""a.b.c""#, expected: "a.b.c"),
        Case(pgType: "int4range", schema: #"{"type":"string"}"#, value: #""[1,5)""#, expected: "[1,5)"),
        Case(pgType: "tstzrange", schema: #"{"type":"string"}"#, value: #""[\"2018-06-20 15:13:16+00\",)""#, expected: #"["2018-06-20 15:13:16+00",)"#),
        Case(pgType: "tsvector", schema: #"{"type":"string","name":"io.debezium.data.TsVector"}"#, value: #""'a' 'b'""#, expected: "'a' 'b'"),
    ]

    static let postgis = FileManager.default.fileExists(atPath: "/usr/share/postgresql/15/extension/postgis.control")

    static var allCases: [Case] {
        cases + (postgis ? [
            Case(pgType: "geometry", schema: #"{"type":"struct","name":"io.debezium.data.geometry.Geometry","fields":[]}"#, value: #"{"wkb":"AQEAAAAAAAAAAAD4PwAAAAAAAADA","srid":4326}"#, expected: "0101000020E6100000000000000000F83F00000000000000C0"),
            Case(pgType: "geography", schema: #"{"type":"struct","name":"io.debezium.data.geometry.Geography","fields":[]}"#, value: #"{"wkb":"AQEAAAAAAAAAAAD4PwAAAAAAAADA","srid":4326}"#, expected: "0101000020E6100000000000000000F83F00000000000000C0"),
        ] : [])
    }

    static func message(_ i: Int, _ c: Case, topic: String) -> OutgoingMessage {
        let after = #"{"id":\#(i),"c\#(i)":\#(c.value)}"#
        let source = #"{"schema":"public","table":"types","lsn":\#(1000 + i),"ts_ms":1}"#
        let payload = #"{"before":null,"after":\#(after),"source":\#(source),"op":"c","ts_ms":1}"#
        let value: String
        if let schema = c.schema {
            let field = String(schema.dropLast()) + #","optional":true,"field":"c\#(i)"}"#
            let row = #"{"type":"struct","fields":[{"type":"int32","field":"id"},\#(field)]"#
            value = #"{"schema":{"type":"struct","fields":[\#(row),"field":"before"},\#(row),"field":"after"}]},"payload":\#(payload)}"#
        } else {
            value = payload
        }
        return OutgoingMessage(topic: topic, partition: 0, key: Array(#"{"id":\#(i)}"#.utf8), value: Array(value.utf8))
    }

    @Test("every row of docs/DEBEZIUM.md lands as its expected text, or is dead-lettered as invalid_value")
    func everyType() throws {
        let pg = try TestPostgres.sharedCluster()
        let kafka = try TestKafka()
        let target = try pg.createDatabase(fixtureSchema: false)
        let conn = try PGConnection.connect(target)
        try conn.execute("CREATE EXTENSION hstore; CREATE EXTENSION ltree; CREATE TYPE mood AS ENUM ('sad', 'happy')")
        if Self.postgis { try conn.execute("CREATE EXTENSION postgis") }
        let cases = Self.allCases
        let columns = cases.enumerated().map { "c\($0.offset) \($0.element.pgType)" }.joined(separator: ", ")
        try conn.execute("CREATE TABLE public.types (id int PRIMARY KEY, \(columns))")
        try kafka.createTopic("types")
        try kafka.send(cases.enumerated().map { Self.message($0.offset, $0.element, topic: "types") })

        let r = try CDCRProcess.run(runArgs(brokers: kafka.brokers, topic: "types", group: "g", target: target))
        #expect(r.status == 0, "\(r.stderr)")
        let refused = cases.enumerated().filter { $0.element.expected == nil }.map(\.offset)
        let dead = try kafka.read(topic: "types.dlq", count: refused.count, timeout: .seconds(15))
        var deadIDs: [Int: String] = [:]
        for m in dead {
            guard let key = m.key, let id = (try? JSONParser.parse(bytes: key))?["id"]?.int64Value else { continue }
            deadIDs[Int(id)] = m.header(DeadLetterWriter.Header.reason)
        }
        try conn.execute("SET TimeZone = 'UTC'")
        for (i, c) in cases.enumerated() {
            let label = "c\(i) \(c.pgType) \(c.schema == nil ? "schemaless" : "with schema") \(c.value)"
            if let expected = c.expected {
                let got = try conn.query("SELECT c\(i)::text FROM public.types WHERE id = $1", [String(i)]).rows.first?[0]
                #expect(got == expected, "\(label)")
            } else {
                #expect(deadIDs[i] == "invalid_value", "\(label) must be dead-lettered")
            }
        }
        #expect(Set(deadIDs.keys) == Set(refused), "only the refused cases are dead-lettered")
    }

    @Test("op m (a logical decoding message) is skipped and counted, the change after it applies")
    func logicalMessage() throws {
        let pg = try TestPostgres.sharedCluster()
        let kafka = try TestKafka()
        let target = try pg.createDatabase(fixtureSchema: false)
        let conn = try PGConnection.connect(target)
        try conn.execute("CREATE TABLE public.types (id int PRIMARY KEY, c0 interval)")
        try kafka.createTopic("msg")
        let m = #"{"op":"m","ts_ms":1,"source":{"lsn":5,"schema":"","table":""},"message":{"prefix":"p","content":"aGk="}}"#
        try kafka.send([
            OutgoingMessage(topic: "msg", partition: 0, key: nil, value: Array(m.utf8)),
            Self.message(0, Case(pgType: "interval", schema: nil, value: "9000000000", expected: nil), topic: "msg"),
        ])
        let r = try CDCRProcess.run(runArgs(brokers: kafka.brokers, topic: "msg", group: "g", target: target))
        #expect(r.status == 0, "\(r.stderr)")
        let summary = try runSummary(r.stdout)
        #expect(summary["logical_message"]?.int64Value == 1 && summary["applied"]?.int64Value == 1 && summary["dead_lettered"]?.int64Value == 0, "\(r.stdout)")
        #expect(try conn.query("SELECT c0::text FROM public.types").scalar == "02:30:00")
    }

    @Test("a hostile decimal scale is dead-lettered fast in small memory; the good messages around it apply")
    func hostileDecimal() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/time") else {
            Issue.record("/usr/bin/time is missing: scripts/test.sh installs the Debian package time")
            return
        }
        let pg = try TestPostgres.sharedCluster()
        let kafka = try TestKafka()
        let target = try pg.createDatabase(fixtureSchema: false)
        let conn = try PGConnection.connect(target)
        try conn.execute("CREATE TABLE public.types (id int PRIMARY KEY, c0 numeric, c1 numeric, c2 numeric, c3 numeric)")
        try kafka.createTopic("hostile")
        let decimal = #"{"type":"bytes","name":"org.apache.kafka.connect.data.Decimal","parameters":{"scale":"2000000000"}}"#
        let vsd = #"{"type":"struct","name":"io.debezium.data.VariableScaleDecimal","fields":[]}"#
        try kafka.send([
            Self.message(0, Case(pgType: "numeric", schema: nil, value: #""1.5""#, expected: nil), topic: "hostile"),
            Self.message(1, Case(pgType: "numeric", schema: decimal, value: #""AQ==""#, expected: nil), topic: "hostile"),
            Self.message(2, Case(pgType: "numeric", schema: vsd, value: #"{"scale":2147483647,"value":"AQ=="}"#, expected: nil), topic: "hostile"),
            Self.message(3, Case(pgType: "numeric", schema: nil, value: #"{"scale":2147483647,"value":"AQ=="}"#, expected: nil), topic: "hostile"),
            Self.message(0, Case(pgType: "numeric", schema: nil, value: #""2.5""#, expected: nil), topic: "hostile"),
        ].enumerated().map { i, m in
            // The last one updates row 0 at a later LSN.
            i == 4 ? OutgoingMessage(topic: m.topic, partition: 0, key: m.key, value: Array(String(decoding: m.value!, as: UTF8.self).replacingOccurrences(of: #""lsn":1000"#, with: #""lsn":2000"#).utf8)) : m
        })
        let rss = FileManager.default.temporaryDirectory.appendingPathComponent("cdcr-rss-\(UUID().uuidString)").path
        var env = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("CDCR_") }
        env["CDCR_ADMIN_LISTEN"] = "127.0.0.1:0"
        let start = ContinuousClock.now
        let p = try ChildProcess(["/usr/bin/time", "-f", "%M", "-o", rss, CDCRProcess.binary] + runArgs(brokers: kafka.brokers, topic: "hostile", group: "g", target: target), env: env)
        let status = p.wait(timeout: .seconds(120))
        let took = ContinuousClock.now - start
        #expect(status == 0, "\(p.stderr)")
        let peakKB = Int((try String(contentsOfFile: rss, encoding: .utf8)).split(separator: "\n").last.map(String.init) ?? "") ?? -1
        #expect(peakKB > 0 && peakKB < 300_000, "peak RSS \(peakKB) kB (the unbounded expansion took 4.6 GB)")
        #expect(took < .seconds(30), "took \(took) (the unbounded expansion took ~190 s)")
        let summary = try runSummary(p.stdout)
        #expect(summary["applied"]?.int64Value == 2 && summary["dead_lettered"]?.int64Value == 3, "\(p.stdout)")
        let dead = try kafka.read(topic: "hostile.dlq", count: 3, timeout: .seconds(15))
        #expect(dead.count == 3 && dead.allSatisfy { $0.header(DeadLetterWriter.Header.reason) == "invalid_value" })
        #expect(try conn.query("SELECT c0::text FROM public.types WHERE id = 0").scalar == "2.5")
    }
}
