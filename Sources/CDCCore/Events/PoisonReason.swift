/// Why an event cannot be applied. Its raw value is the `cdcr.error.reason` header of the
/// dead-lettered message, so it is part of the public contract.
public enum PoisonReason: String, Sendable, Equatable, CaseIterable {
    /// Not JSON, or JSON that is not a change event of any known format.
    case undecodable
    case unknownOperation = "unknown_operation"
    case noKey = "no_key"
    /// The table is not in the target catalog (or not in the `tables` allowlist).
    case unknownTable = "unknown_table"
    case unknownColumn = "unknown_column"
    /// The table is in a schema events may never write: cdcr's own bookkeeping, a system catalog
    /// (`pg_catalog`, `information_schema`, any `pg_*`) or a schema in the configured deny list.
    case forbiddenTable = "forbidden_table"
    /// A value the target column's type rejects (SQLSTATE class 22).
    case invalidValue = "invalid_value"
    /// A NOT NULL, CHECK, UNIQUE or foreign-key violation (SQLSTATE class 23).
    case constraintViolation = "constraint_violation"
    /// The target refused the change for another permanent reason.
    case rejected
}

/// A change event that must be dead-lettered, with a human-readable explanation.
public struct PoisonError: Error, Sendable, Equatable, CustomStringConvertible {
    public let reason: PoisonReason
    public let message: String
    /// The SQLSTATE when the target refused it.
    public let sqlState: String?

    public init(_ reason: PoisonReason, _ message: String, sqlState: String? = nil) {
        self.reason = reason
        self.message = message
        self.sqlState = sqlState
    }

    public var description: String { "\(reason.rawValue): \(message)" }
}
