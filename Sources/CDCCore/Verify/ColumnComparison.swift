/// How the values of one column are compared between source and target: by meaning, in a type both
/// sides can be brought to. `1.50` and `1.5` are equal numerics, two `timestamptz` are equal instants
/// whatever zone they were written in, `json` and `jsonb` compare as `jsonb` values.
public enum CompareType: String, Sendable, Equatable {
    case integer, numeric, float, boolean, text, timestamptz, timestamp, date, json, uuid, bytea, other

    /// The type both columns are compared in.
    public static func common(_ a: ColumnKind, _ b: ColumnKind) -> CompareType {
        let x = CompareType(a), y = CompareType(b)
        if x == y { return x }
        let pair = Set([x, y])
        if pair == [.integer, .numeric] { return .numeric }
        if pair.isSubset(of: [.integer, .numeric, .float]) { return .float }
        if pair == [.timestamp, .timestamptz] { return .timestamptz }
        return .text
    }

    init(_ kind: ColumnKind) {
        switch kind {
        case .integer: self = .integer
        case .numeric: self = .numeric
        case .float: self = .float
        case .bool: self = .boolean
        case .text: self = .text
        case .timestamptz: self = .timestamptz
        case .timestamp: self = .timestamp
        case .date: self = .date
        case .json: self = .json
        case .uuid: self = .uuid
        case .bytea: self = .bytea
        case .time, .array, .other, .interval, .bit, .varbit, .point, .hstore, .geometry: self = .other
        }
    }
}

/// One column compared between the two sides: its name on each side (the same name), its kind on
/// each side and the type they are compared in. Builds the SQL expressions each side evaluates.
///
/// Every identifier here comes from the catalogs; the only literals are numbers computed here.
public struct ComparedColumn: Sendable, Equatable {
    public let name: String
    public let sourceKind: ColumnKind
    public let targetKind: ColumnKind
    public let type: CompareType
    /// Position among the compared columns: the seed of its hash, so equal values in two different
    /// columns hash differently.
    public let position: Int

    public init(name: String, sourceKind: ColumnKind, targetKind: ColumnKind, position: Int) {
        self.name = name
        self.sourceKind = sourceKind
        self.targetKind = targetKind
        self.type = CompareType.common(sourceKind, targetKind)
        self.position = position
    }

    /// The column on `side`, converted to the compare type where the kinds differ.
    func operand(_ side: Side, alias: String) -> String {
        let ref = alias + "." + quoteIdentifier(name)
        let kind = side == .source ? sourceKind : targetKind
        // A `timestamp` compared with a `timestamptz` is read as UTC.
        if type == .timestamptz && kind == .timestamp { return "(\(ref) AT TIME ZONE 'UTC')" }
        return ref
    }

    /// Canonical text of the value: equal values by meaning give equal text. NULL stays NULL.
    public func canonicalText(_ side: Side, alias: String = "t") -> String {
        let v = operand(side, alias: alias)
        switch type {
        case .integer: return "(\(v))::int8::text"
        case .numeric: return "trim_scale((\(v))::numeric)::text"
        case .float: return "(\(v))::float8::text"
        case .boolean: return "(\(v))::bool::text"
        case .timestamptz: return "((\(v)) AT TIME ZONE 'UTC')::text || '+00'"
        case .timestamp: return "(\(v))::timestamp::text"
        case .date: return "(\(v))::date::text"
        case .json: return "(\(v))::jsonb::text"
        case .uuid: return "(\(v))::uuid::text"
        case .text, .bytea, .other: return "(\(v))::text"
        }
    }

    /// A 64-bit hash of the value by meaning, using PostgreSQL's own extended hash functions (the
    /// ones hash partitioning relies on, so they are stable across versions), seeded by the column's
    /// position; a NULL hashes to a per-column constant. `floatTolerance` hashes floats rounded to
    /// multiples of it (rows whose rounding differs are then compared exactly, with the tolerance).
    public func hash(_ side: Side, alias: String = "t", floatTolerance: Double? = nil) -> String {
        let v = operand(side, alias: alias)
        let seed = position
        let h: String
        switch type {
        case .integer: h = "hashint8extended((\(v))::int8, \(seed))"
        case .numeric: h = "hash_numeric_extended((\(v))::numeric, \(seed))"
        case .float:
            if let t = floatTolerance, t > 0 {
                h = "hashfloat8extended(round((\(v))::float8 / \(Self.floatLiteral(t))), \(seed))"
            } else {
                h = "hashfloat8extended((\(v))::float8, \(seed))"
            }
        case .boolean: h = "hashint4extended((\(v))::int4, \(seed))"
        case .timestamptz: h = "timestamp_hash_extended((\(v)) AT TIME ZONE 'UTC', \(seed))"
        case .timestamp: h = "timestamp_hash_extended((\(v))::timestamp, \(seed))"
        case .date: h = "hashint4extended((\(v))::date - DATE '2000-01-01', \(seed))"
        case .json: h = "jsonb_hash_extended((\(v))::jsonb, \(seed))"
        case .uuid: h = "uuid_hash_extended((\(v))::uuid, \(seed))"
        case .text, .bytea, .other: h = "hashtextextended((\(v))::text COLLATE \"C\", \(seed))"
        }
        return "coalesce(\(h), \(Self.nullHash(position)))"
    }

    /// A fixed pseudo-random constant per column position for NULL.
    static func nullHash(_ position: Int) -> String {
        var rng = SplitMix64(seed: 0x5EED_0000_0000_0000 &+ UInt64(position))
        let value = Int64(bitPattern: rng.next())
        // -9223372036854775808 has no positive counterpart: write it as a cast so it parses.
        return value == .min ? "(-9223372036854775807 - 1)" : "(\(value))::int8"
    }

    static func floatLiteral(_ d: Double) -> String { "'\(d)'::float8" }
}

/// Which database an expression runs in.
public enum Side: String, Sendable, Equatable {
    case source, target
}

/// The row hash: the columns' hashes combined with XOR (no overflow, order-independent, and each
/// column's hash is seeded by its position so swapped values still differ).
public func rowHashExpression(_ columns: [ComparedColumn], side: Side, alias: String = "t", floatTolerance: Double? = nil) -> String {
    columns.map { $0.hash(side, alias: alias, floatTolerance: floatTolerance) }.joined(separator: " # ")
}
