/// A schema-qualified table name. A bare name means `public`.
public struct TableName: Hashable, Sendable, CustomStringConvertible, Comparable {
    public let schema: String
    public let name: String

    public init(schema: String, name: String) {
        self.schema = schema
        self.name = name
    }

    /// Parses `schema.table` or a bare `table` (meaning `public.table`). Splits at the first dot only;
    /// whatever the text holds, the result is only ever matched against the catalog, never spliced into SQL.
    public init(parsing text: String) {
        if let dot = text.firstIndex(of: ".") {
            self.init(schema: String(text[..<dot]), name: String(text[text.index(after: dot)...]))
        } else {
            self.init(schema: "public", name: text)
        }
    }

    public var description: String { "\(schema).\(name)" }

    public static func < (lhs: TableName, rhs: TableName) -> Bool { lhs.description < rhs.description }
}

/// What a change does to its row.
public enum ChangeOperation: String, Sendable, Equatable {
    case insert = "INSERT"
    case update = "UPDATE"
    /// A snapshot read (Debezium `op: r`): applied like an insert.
    case read = "READ"
    case delete = "DELETE"

    /// The `operation` label of `cdcr_events_total`.
    public var metricLabel: String {
        switch self {
        case .insert: "insert"
        case .update: "update"
        case .read: "read"
        case .delete: "delete"
        }
    }

    /// INSERT, UPDATE and snapshot reads all upsert the row.
    public var isUpsert: Bool { self != .delete }
}

/// Which wire format an event came in; decides how a JSON string in a `json` column is read.
public enum EventFormat: String, Sendable, Equatable, CaseIterable {
    case native
    case debezium
}

/// One column value of a change, before it is converted for the target column.
public enum ColumnValue: Sendable, Equatable {
    case null
    /// Already in PostgreSQL's text input form (a decoded logical type).
    case text(String)
    /// A raw JSON value; the target column's type decides how it is read.
    case json(JSONValue)
    /// Debezium's `__debezium_unavailable_value`: an unchanged TOASTed column. The target keeps its value.
    case unavailable
    /// A Debezium value whose PostgreSQL text depends on the target column's type as well as on its
    /// field schema (an interval in microseconds, bits, a geometry, a JSON text that may be an hstore,
    /// bytes): converted by `ValueConverter` once the column is known.
    case debezium(JSONValue, DebeziumField)
}

/// What a Debezium field's schema says about its value (docs/DEBEZIUM.md).
public struct DebeziumField: Sendable, Equatable {
    /// The column's name, for error messages.
    public var column: String
    /// The schema's `name` (the semantic type, such as `io.debezium.time.MicroDuration`), if any.
    public var semantic: String?
    /// The Connect schema type: `int64`, `bytes`, `string`, `boolean`, `struct`, `map`, `array`, …
    public var schemaType: String?
    /// `io.debezium.data.Bits`' `length` parameter: the column's declared number of bits.
    public var length: Int64?
    /// `__debezium.source.column.type` (set with `column.propagate.source.type`), upper-case.
    public var sourceType: String?

    public init(column: String, semantic: String?, schemaType: String?, length: Int64? = nil, sourceType: String? = nil) {
        self.column = column
        self.semantic = semantic
        self.schemaType = schemaType
        self.length = length
        self.sourceType = sourceType
    }

    /// `semantic` or the schema type, for messages.
    public var typeName: String { semantic ?? schemaType ?? "schemaless" }
}

/// Where a message came from in Kafka.
public struct SourcePosition: Sendable, Hashable, CustomStringConvertible {
    public let topic: String
    public let partition: Int32
    public let offset: Int64

    public init(topic: String, partition: Int32, offset: Int64) {
        self.topic = topic
        self.partition = partition
        self.offset = offset
    }

    public var description: String { "\(topic)/\(partition)@\(offset)" }
}

/// One decoded row change, format-independent.
public struct ChangeEvent: Sendable, Equatable {
    /// Unique per change; the ledger key.
    public var changeID: String
    /// The source table (before `table_map` renames).
    public var table: TableName
    public var operation: ChangeOperation
    /// Primary-key columns and values. May be empty for Debezium events with a null message key:
    /// the applier then takes the key columns from the row image.
    public var key: [(String, ColumnValue)]
    /// The whole row after the change (upserts), or the before-image if any (deletes).
    public var row: [(String, ColumnValue)]?
    /// Grows with every change of a row; nil when the event has none (applied unconditionally).
    public var version: Int64?
    /// When the change happened at the source, microseconds since the Unix epoch.
    public var timestampMicros: Int64?
    public var format: EventFormat

    public init(
        changeID: String, table: TableName, operation: ChangeOperation, key: [(String, ColumnValue)],
        row: [(String, ColumnValue)]?, version: Int64?, timestampMicros: Int64?, format: EventFormat
    ) {
        self.changeID = changeID
        self.table = table
        self.operation = operation
        self.key = key
        self.row = row
        self.version = version
        self.timestampMicros = timestampMicros
        self.format = format
    }

    public static func == (lhs: ChangeEvent, rhs: ChangeEvent) -> Bool {
        lhs.changeID == rhs.changeID && lhs.table == rhs.table && lhs.operation == rhs.operation
            && lhs.key.elementsEqual(rhs.key, by: { $0.0 == $1.0 && $0.1 == $1.1 })
            && lhs.version == rhs.version && lhs.timestampMicros == rhs.timestampMicros && lhs.format == rhs.format
            && (lhs.row == nil) == (rhs.row == nil)
            && (lhs.row ?? []).elementsEqual(rhs.row ?? [], by: { $0.0 == $1.0 && $0.1 == $1.1 })
    }
}

/// What decoding one Kafka message produced.
public enum DecodedMessage: Sendable, Equatable {
    case change(ChangeEvent)
    /// A Kafka tombstone (null value) after a Debezium delete: nothing to do.
    case tombstone
    /// A Debezium logical decoding message (`op: m`, from `pg_logical_emit_message`): no row change.
    case logicalMessage
    /// A Debezium truncate of a table; applied only with `--apply-truncate`.
    case truncate(TableName, version: Int64?)
}
