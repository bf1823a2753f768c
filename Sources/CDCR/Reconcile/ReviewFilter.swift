import CDCCore
import Foundation

/// A filter over review items (`cdcr review list`, `review approve --matching FILTER`, `GET /review`).
///
/// The grammar is deliberately small and never SQL: `TERM[,TERM…]`, each `FIELD=VALUE[|VALUE…]`;
/// terms are ANDed, the values of one term ORed. Fields: `table` (source table, `schema.table` or a
/// bare name meaning `public.`), `kind` (missing, extra, different, rule, orphan, schema), `column`
/// (one of the item's differing columns), `status` (a resolution), `run` (the run that found or last
/// saw it), `key` (the key text, as stored), `id`. Values are bound as parameters; a value may not
/// contain `,` `|` or `=`, and a field may appear once.
public struct ReviewFilter: Sendable, Equatable {
    public var tables: [TableName] = []
    public var kinds: [DiscrepancyKind] = []
    public var columns: [String] = []
    public var statuses: [Resolution] = []
    public var runs: [String] = []
    public var keys: [String] = []
    public var ids: [Int64] = []

    public init() {}

    public static let fields = ["table", "kind", "column", "status", "run", "key", "id"]

    /// Parses `FILTER`; the error names the term at fault.
    public init(parsing text: String) throws(ReviewError) {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        guard !trimmed.isEmpty else { throw ReviewError(.usage, "the filter is empty (e.g. table=public.orders,kind=different,column=status)") }
        var seen = Set<String>()
        for term in trimmed.split(separator: ",", omittingEmptySubsequences: false) {
            let parts = term.split(separator: "=", omittingEmptySubsequences: false)
            guard parts.count == 2 else { throw ReviewError(.usage, "filter term '\(term)' is not FIELD=VALUE[|VALUE…]") }
            let field = parts[0].trimmingCharacters(in: .whitespaces).lowercased()
            guard Self.fields.contains(field) else {
                throw ReviewError(.usage, "filter field '\(field)' is unknown; fields: \(Self.fields.joined(separator: ", "))")
            }
            guard seen.insert(field).inserted else { throw ReviewError(.usage, "filter field '\(field)' is given twice; use \(field)=A|B") }
            let values = parts[1].split(separator: "|", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
            guard !values.contains(where: \.isEmpty) else { throw ReviewError(.usage, "filter term '\(term)' has an empty value") }
            switch field {
            case "table": tables = values.map { TableName(parsing: $0) }
            case "kind":
                kinds = try values.map { v throws(ReviewError) in
                    guard let k = DiscrepancyKind(rawValue: v) else {
                        throw ReviewError(.usage, "kind '\(v)' is unknown; kinds: \(DiscrepancyKind.allCases.map(\.rawValue).joined(separator: ", "))")
                    }
                    return k
                }
            case "column": columns = values
            case "status": statuses = try values.map(Self.status)
            case "run": runs = values
            case "key": keys = values
            default:
                ids = try values.map { v throws(ReviewError) in
                    guard let id = Int64(v), id > 0 else { throw ReviewError(.usage, "id '\(v)' is not a positive integer") }
                    return id
                }
            }
        }
    }

    /// A resolution by name (`status=` values, `--status`).
    public static func status(_ text: String) throws(ReviewError) -> Resolution {
        guard let r = Resolution(rawValue: text) else {
            throw ReviewError(.usage, "status '\(text)' is unknown; statuses: \(Resolution.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        return r
    }

    /// The filter as `AND`ed conditions on `cdcr.discrepancies`, with the parameters they bind from
    /// `$firstParam` on.
    func sql(firstParam: Int = 1) -> (conditions: String, params: [String?]) {
        var params: [String?] = []
        var conditions: [String] = []
        func add(_ values: [String], _ condition: (String) -> String) {
            guard !values.isEmpty else { return }
            params.append(pgArrayLiteral(values))
            conditions.append(condition("$\(firstParam + params.count - 1)::text[]"))
        }
        add(tables.map(\.description)) { "table_name = ANY(\($0))" }
        add(kinds.map(\.rawValue)) { "kind = ANY(\($0))" }
        add(columns) { "columns && \($0)" }
        add(statuses.map(\.rawValue)) { "resolution = ANY(\($0))" }
        add(runs) { "(last_run_id = ANY(\($0)) OR first_run_id = ANY(\($0)))" }
        add(keys) { "key_text = ANY(\($0))" }
        add(ids.map(String.init)) { "id = ANY(\($0)::bigint[])" }
        return (conditions.isEmpty ? "true" : conditions.joined(separator: " AND "), params)
    }
}

/// A review command or request that cannot be done; `code` says which exit code / HTTP status.
public struct ReviewError: Error, CustomStringConvertible, Sendable {
    public enum Code: Sendable {
        /// A bad filter, flag or body (exit 64, HTTP 400).
        case usage
        /// No such item (exit 3, HTTP 404).
        case notFound
        /// The item is not in a state that allows it, or repair cannot fix its kind (exit 3, HTTP 409).
        case conflict
    }
    public let code: Code
    public let description: String

    public init(_ code: Code, _ description: String) {
        self.code = code
        self.description = description
    }
}
