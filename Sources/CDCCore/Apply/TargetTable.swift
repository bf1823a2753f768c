/// How a target column's type reads a JSON value. Derived from the catalog's type.
public enum ColumnKind: Sendable, Hashable {
    case bool, integer, numeric, float, text, date, timestamp, timestamptz, time, json, uuid, bytea, array, other
    /// `interval`, `bit(n)`, `bit varying`, `point`, `hstore` (extension), PostGIS `geometry`/`geography`.
    case interval, bit, varbit, point, hstore, geometry

    /// Maps a PostgreSQL type name (`pg_type.typname`) and category (`typcategory`) to a kind.
    public init(typeName: String, category: String) {
        switch typeName {
        case "bool": self = .bool
        case "int2", "int4", "int8", "oid": self = .integer
        case "numeric": self = .numeric
        case "float4", "float8": self = .float
        case "text", "varchar", "bpchar", "name", "citext": self = .text
        case "date": self = .date
        case "timestamp": self = .timestamp
        case "timestamptz": self = .timestamptz
        case "time", "timetz": self = .time
        case "json", "jsonb": self = .json
        case "uuid": self = .uuid
        case "bytea": self = .bytea
        case "interval": self = .interval
        case "bit": self = .bit
        case "varbit": self = .varbit
        case "point": self = .point
        case "hstore": self = .hstore
        case "geometry", "geography": self = .geometry
        default: self = category == "A" ? .array : .other
        }
    }
}

/// A column of a target table as the catalog describes it.
public struct ColumnInfo: Sendable, Equatable {
    public let name: String
    /// `format_type(atttypid, atttypmod)`, used to declare staging columns.
    public let sqlType: String
    public let kind: ColumnKind
    public let notNull: Bool

    public init(name: String, sqlType: String, kind: ColumnKind, notNull: Bool) {
        self.name = name
        self.sqlType = sqlType
        self.kind = kind
        self.notNull = notNull
    }

    /// The `(n)` of `sqlType` (`bit(8)`, `timestamp(3) without time zone`), nil when not declared.
    public var typeModifier: Int? {
        guard let open = sqlType.firstIndex(of: "("), let close = sqlType[open...].firstIndex(of: ")") else { return nil }
        return Int(sqlType[sqlType.index(after: open)..<close])
    }
}

/// A target table resolved against the catalog: the only source of identifiers that reach SQL.
public struct TargetTable: Sendable, Equatable {
    public let name: TableName
    public let columns: [ColumnInfo]
    /// Indices into `columns` of the primary-key columns, in key order.
    public let primaryKey: [Int]
    private let index: [String: Int]

    public init(name: TableName, columns: [ColumnInfo], primaryKey: [Int]) {
        self.name = name
        self.columns = columns
        self.primaryKey = primaryKey
        var index: [String: Int] = [:]
        for (i, c) in columns.enumerated() { index[c.name] = i }
        self.index = index
    }

    public func columnIndex(_ name: String) -> Int? { index[name] }

    public static func == (lhs: TargetTable, rhs: TargetTable) -> Bool {
        lhs.name == rhs.name && lhs.columns == rhs.columns && lhs.primaryKey == rhs.primaryKey
    }
}

/// Quotes an identifier for SQL. Only ever applied to names read from the catalog.
public func quoteIdentifier(_ name: String) -> String {
    "\"" + name.replacingAll("\"", with: "\"\"") + "\""
}

extension TableName {
    /// `"schema"."table"`, quoted.
    public var quoted: String { quoteIdentifier(schema) + "." + quoteIdentifier(name) }
}

extension String {
    func replacingAll(_ target: Character, with replacement: String) -> String {
        guard contains(target) else { return self }
        var out = ""
        for c in self { if c == target { out += replacement } else { out.append(c) } }
        return out
    }
}
