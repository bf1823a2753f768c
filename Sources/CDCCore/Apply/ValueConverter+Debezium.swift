/// Debezium values whose PostgreSQL text depends on the target column's type (docs/DEBEZIUM.md).
/// Whatever cannot be read with certainty is refused, naming the column, the semantic type and the
/// column's type; nothing here grows beyond a small multiple of the value's own size.
extension ValueConverter {
    static func pgText(debezium json: JSONValue, field: DebeziumField, column: ColumnInfo) throws(PoisonError) -> String? {
        if case .null = json { return nil }
        func fail(_ why: String) -> PoisonError {
            PoisonError(.invalidValue, "column \(column.name) (\(column.sqlType)): Debezium \(field.typeName): \(why)")
        }
        switch field.semantic {
        case "io.debezium.time.MicroDuration"?:
            guard let micros = json.int64Value else { throw fail("not an integer of microseconds") }
            switch column.kind {
            case .interval, .text: return CivilTime.intervalString(micros: micros)
            case .integer, .numeric: return String(micros)
            default: throw fail("an interval cannot go into this column")
            }
        case "io.debezium.data.Bits"?:
            guard let b64 = json.stringValue, let bytes = DecimalBytes.base64Decode(b64) else { throw fail("value is not base64") }
            return try bitsText(bytes, field: field, column: column, fail: fail)
        case "io.debezium.data.Json"?:
            guard let s = json.stringValue else { throw fail("value is not a JSON text") }
            if column.kind == .hstore { return try hstoreLiteral(jsonText: s, column: column, semantic: field.typeName) }
            return s
        case "io.debezium.data.geometry.Point"?, "io.debezium.data.geometry.Geometry"?, "io.debezium.data.geometry.Geography"?:
            return try geometryText(json, column: column, semantic: field.typeName)
        default:
            break
        }
        switch (field.schemaType, json) {
        case let ("bytes"?, .string(b64)):
            // The JSON converter writes Connect bytes as standard base64, whatever binary.handling.mode.
            guard let bytes = DecimalBytes.base64Decode(b64) else { throw fail("bytes are not base64") }
            guard column.kind == .bytea else { throw fail("bytes cannot go into this column") }
            return byteaHex(bytes)
        case let ("string"?, .string(s)) where column.kind == .bytea:
            return try binaryText(s, column: column, semantic: "bytea (string: binary.handling.mode base64, base64-url-safe or hex)")
        case ("map"?, .object):
            if column.kind == .hstore { return try hstoreLiteral(json, column: column, semantic: "hstore (map)") }
            if column.kind == .json { return json.serialized }
            throw fail("a map can only go into an hstore or json column")
        default:
            return try pgText(json: json, column: column, format: .debezium)
        }
    }

    /// io.debezium.data.Bits: little-endian bytes (bit 0 = the rightmost bit of the bit string),
    /// `length` = the column's declared bits. Exact into `bit(length)`. A `bit varying` source loses
    /// its leading zeros (the bytes are sized by content), so into a varbit column the length is only
    /// known when the source column is `BIT` (column.propagate.source.type).
    static func bitsText(_ bytes: [UInt8], field: DebeziumField, column: ColumnInfo, fail: (String) -> PoisonError) throws(PoisonError) -> String {
        guard let length = field.length, length > 0 else { throw fail("no length parameter") }
        let n: Int
        switch column.kind {
        case .bit:
            n = column.typeModifier ?? 1
            guard Int64(n) == length else { throw fail("the source has \(length) bits, the column \(n)") }
        case .varbit:
            guard field.sourceType == "BIT", length <= Int64(Int32.max) else {
                throw fail("a bit varying value's length is lost in Debezium's encoding (leading zero bits are dropped); cdcr only decodes it into bit(n), or when the schema's __debezium.source.column.type says BIT")
            }
            n = Int(length)
        default:
            throw fail("bits can only go into a bit or bit varying column")
        }
        // Every set bit must lie within n; the bytes never outnumber ceil(n / 8) when they are not zero.
        for (i, b) in bytes.enumerated() where b != 0 {
            let highest = i * 8 + (7 - b.leadingZeroBitCount)
            guard highest < n else { throw fail("bit \(highest) is set beyond the length \(n)") }
        }
        var text = [UInt8](repeating: 48, count: n)
        for (i, b) in bytes.enumerated() where b != 0 {
            for bit in 0..<8 where b & (1 << bit) != 0 { text[n - 1 - (i * 8 + bit)] = 49 }
        }
        return String(decoding: text, as: UTF8.self)
    }

    /// bytea from a string: a `bytes` field read without its schema (standard base64) or a `string`
    /// field in binary mode base64, base64-url-safe or hex. The one reading that fits is used; a text
    /// valid both as hex and as base64 (such as `"abcd"`) is refused, since the mode is not in the event.
    static func binaryText(_ s: String, column: ColumnInfo, semantic: String) throws(PoisonError) -> String {
        let u = Array(s.utf8)
        if u.isEmpty { return "\\x" }
        let isHex = u.count % 2 == 0 && u.allSatisfy { ($0 >= 48 && $0 <= 57) || ($0 >= 97 && $0 <= 102) || ($0 >= 65 && $0 <= 70) }
        let b64 = strictBase64(u)
        switch (isHex, b64) {
        case (true, nil): return "\\x" + s.lowercased()
        case let (false, bytes?): return byteaHex(bytes)
        case (true, _?):
            throw PoisonError(.invalidValue, "column \(column.name) (\(column.sqlType)): Debezium \(semantic): \(quoted(String(s.prefix(40)))) is valid as hex and as base64; the binary.handling.mode is not in the event (use the schema: bytes fields are base64)")
        case (false, nil):
            throw PoisonError(.invalidValue, "column \(column.name) (\(column.sqlType)): Debezium \(semantic): \(quoted(String(s.prefix(40)))) is neither base64 nor hex")
        }
    }

    /// Padded base64 in one alphabet (standard or URL-safe), as Java's encoders write it; nil otherwise.
    static func strictBase64(_ u: [UInt8]) -> [UInt8]? {
        guard u.count % 4 == 0 else { return nil }
        var standard = false, urlSafe = false, padding = 0
        for (i, c) in u.enumerated() {
            switch c {
            case 61: padding += 1; if i < u.count - 2 { return nil }
            case 43, 47: standard = true
            case 45, 95: urlSafe = true
            case 65...90, 97...122, 48...57: break
            default: return nil
            }
            if c != 61 && padding > 0 { return nil }
        }
        guard !(standard && urlSafe), padding <= 2 else { return nil }
        return DecimalBytes.base64Decode(String(decoding: u, as: UTF8.self))
    }

    /// Debezium's string decimal mode writes special values by name.
    static func specialNumeric(_ s: String) -> String {
        switch s {
        case "POSITIVE_INFINITY": "Infinity"
        case "NEGATIVE_INFINITY": "-Infinity"
        default: s
        }
    }

    /// A JSON object into a column that is not json: a VariableScaleDecimal into numeric, a point,
    /// a geometry, an hstore (map mode); anything else keeps its JSON text (PostgreSQL judges it).
    static func objectText(_ json: JSONValue, column: ColumnInfo, format: EventFormat) throws(PoisonError) -> String {
        switch column.kind {
        case .numeric where json["scale"] != nil && json["value"] != nil:
            let v = try DebeziumDecoder.variableScaleDecimal(json, column: column.name)
            if case let .text(t) = v { return t }
            return json.serialized
        case .point, .geometry:
            return try geometryText(json, column: column, semantic: "geometry (schemaless)")
        case .bytea where json["wkb"] != nil:
            return try geometryText(json, column: column, semantic: "geometry (schemaless)")
        case .hstore:
            return try hstoreLiteral(json, column: column, semantic: "hstore (map)")
        default:
            return json.serialized
        }
    }

    /// Point `{x, y, wkb, srid}`, Geometry / Geography `{wkb, srid}`: a `point` column takes `(x,y)`;
    /// a PostGIS `geometry`/`geography` column takes the WKB as hex EWKB with the SRID; bytea the WKB.
    static func geometryText(_ json: JSONValue, column: ColumnInfo, semantic: String) throws(PoisonError) -> String {
        func fail(_ why: String) -> PoisonError {
            PoisonError(.invalidValue, "column \(column.name) (\(column.sqlType)): Debezium \(semantic): \(why)")
        }
        switch column.kind {
        case .point:
            guard case let .number(x)? = json["x"], case let .number(y)? = json["y"] else {
                throw fail("a point column needs numeric x and y")
            }
            return "(\(x),\(y))"
        case .geometry, .bytea:
            guard let b64 = json["wkb"]?.stringValue, let wkb = DecimalBytes.base64Decode(b64) else { throw fail("no base64 wkb") }
            if column.kind == .bytea { return byteaHex(wkb) }
            let srid: Int64?
            switch json["srid"] {
            case nil, .null?: srid = nil
            case let v?:
                guard let s = v.int64Value, (0...Int64(Int32.max)).contains(s) else { throw fail("srid is not an integer") }
                srid = s
            }
            return try ewkbHex(wkb, srid: srid, fail: fail)
        default:
            throw fail("a geometry can only go into point, PostGIS geometry/geography or bytea columns")
        }
    }

    /// WKB → hex EWKB: PostGIS reads the SRID from the EWKB header (flag 0x20000000 in the type word).
    static func ewkbHex(_ wkb: [UInt8], srid: Int64?, fail: (String) -> PoisonError) throws(PoisonError) -> String {
        guard wkb.count >= 5, wkb[0] <= 1 else { throw fail("wkb is not Well-Known Binary") }
        guard let srid, srid != 0 else { return String(byteaHex(wkb).dropFirst(2)) }
        let little = wkb[0] == 1
        var type = little
            ? UInt32(wkb[1]) | UInt32(wkb[2]) << 8 | UInt32(wkb[3]) << 16 | UInt32(wkb[4]) << 24
            : UInt32(wkb[4]) | UInt32(wkb[3]) << 8 | UInt32(wkb[2]) << 16 | UInt32(wkb[1]) << 24
        if type & 0x2000_0000 != 0 { return String(byteaHex(wkb).dropFirst(2)) }  // already EWKB with an SRID
        type |= 0x2000_0000
        let s = UInt32(srid)
        func word(_ v: UInt32) -> [UInt8] {
            let le = [UInt8(v & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v >> 16 & 0xFF), UInt8(v >> 24)]
            return little ? le : le.reversed()
        }
        let out = [wkb[0]] + word(type) + word(s) + wkb[5...]
        return String(byteaHex(out).dropFirst(2))
    }

    /// hstore.handling.mode=json: the JSON text of an object of string (or null) values.
    static func hstoreLiteral(jsonText: String, column: ColumnInfo, semantic: String) throws(PoisonError) -> String {
        guard let parsed = try? JSONParser.parse(jsonText) else {
            throw PoisonError(.invalidValue, "column \(column.name) (\(column.sqlType)): Debezium \(semantic): value is not a JSON text")
        }
        return try hstoreLiteral(parsed, column: column, semantic: semantic)
    }

    /// `"key"=>"value", "k2"=>NULL`, every key and value quoted with `"` and `\` escaped.
    static func hstoreLiteral(_ json: JSONValue, column: ColumnInfo, semantic: String) throws(PoisonError) -> String {
        guard let members = json.objectMembers else {
            throw PoisonError(.invalidValue, "column \(column.name) (\(column.sqlType)): Debezium \(semantic): not a JSON object")
        }
        var out = ""
        func quote(_ s: String) {
            out += "\""
            for c in s {
                if c == "\"" || c == "\\" { out += "\\" }
                out.append(c)
            }
            out += "\""
        }
        for (i, (k, v)) in members.enumerated() {
            if i > 0 { out += ", " }
            quote(k)
            out += "=>"
            switch v {
            case .null: out += "NULL"
            case let .string(s): quote(s)
            default:
                throw PoisonError(.invalidValue, "column \(column.name) (\(column.sqlType)): Debezium \(semantic): value of key \(quoted(k)) is not a string")
            }
        }
        return out
    }
}
