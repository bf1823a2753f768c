import CDCCore

/// The checks of a rules file (`--rules`, see config/checks.example.json and docs/CHECKS.md), plus
/// the ones that run by default: `schema` over the compared tables, and one `references` check per
/// foreign key the source declares between compared tables.
public struct CheckRules: Sendable {
    /// The file's checks, in file order, names unique.
    public var checks: [CheckRule] = []
    /// Statement timeout of every check query, both sides.
    public var statementTimeoutMs = 300_000
    /// Run the `schema` check over the compared tables unless the file has a schema check.
    public var defaultSchema = true
    /// Check every foreign key the source declares between compared tables, in the target.
    public var defaultReferences = true

    /// No checks; the defaults on.
    public init() {}
}

/// One named check.
public struct CheckRule: Sendable {
    /// Unique among the run's checks.
    public let name: String
    /// What it compares.
    public let kind: CheckKind

    /// A check named `name`.
    public init(name: String, kind: CheckKind) {
        self.name = name
        self.kind = kind
    }
}

/// What a check compares.
public enum CheckKind: Sendable {
    case aggregate(AggregateRule)
    case query(QueryRule)
    case references(ReferencesRule)
    case schema(SchemaRule)
    case freshness(FreshnessRule)

    /// The kind's name in rules files, reports and `cdcr.check_results.kind`.
    public var label: String {
        switch self {
        case .aggregate: "aggregate"
        case .query: "query"
        case .references: "references"
        case .schema: "schema"
        case .freshness: "freshness"
        }
    }
}

/// Group-by expressions and measures over one table (source name; the target's is its `table_map` entry).
public struct AggregateRule: Sendable {
    /// The source table.
    public var table: TableName
    /// A predicate over the table's columns, on both sides (shape-checked).
    public var filter: String?
    /// Group-by expressions (shape-checked); none: one group of every row.
    public var groupBy: [String]
    /// The measures, and each one's tolerance at the same index.
    public var measures: [MeasureSpec]
    public var tolerances: [Tolerance]
}

/// A pair of read-only queries returning `keyColumns` key columns, then numeric measures.
public struct QueryRule: Sendable {
    /// The queries (shape-checked), run as `SELECT * FROM (query) q`.
    public var source: String
    public var target: String
    /// Leading columns that are the key.
    public var keyColumns: Int
    /// Applies to every measure column.
    public var tolerance: Tolerance
}

/// child(columns) → parent(parentColumns); orphans counted in the target and the source.
public struct ReferencesRule: Sendable {
    /// The referencing table (source name) and its columns.
    public var child: TableName
    public var columns: [String]
    /// The referenced table (source name) and its columns, in the same order.
    public var parent: TableName
    public var parentColumns: [String]
    /// The source constraint this default check came from, if any.
    public var constraint: String?
}

/// Source vs target catalog of `tables` (nil: the compared tables).
public struct SchemaRule: Sendable {
    /// Source tables; nil: the compared tables.
    public var tables: [TableName]?
}

/// Where the target's newest change is read from.
public enum FreshnessTarget: String, Sendable {
    /// The same column in the target table.
    case column
    /// `cdcr.row_versions.updated_at` of the target table: when cdcr last applied a change to it.
    case rowVersions = "row_versions"
}

/// Newest `column` per side; a lag beyond `maxLagSeconds` fails.
public struct FreshnessRule: Sendable {
    /// The source table and its timestamp column.
    public var table: TableName
    public var column: String
    /// Where the target's newest value comes from.
    public var target: FreshnessTarget
    /// The largest lag that passes.
    public var maxLagSeconds: Double
}

extension CheckRules {
    /// Parses a rules file's text; every problem is a `ConfigError` naming the member (exit 64).
    /// Duplicate member names are refused by the parser; unknown members, duplicate check names,
    /// bad values and expressions of the wrong shape here, before anything connects.
    public static func parse(_ text: String, file: String) throws(ConfigError) -> CheckRules {
        let json: JSONValue
        do { json = try JSONParser.parse(text) } catch {
            throw ConfigError("--rules", "\(file) is not valid JSON: \(error)")
        }
        var r = RuleReader(file: file)
        return try r.rules(json)
    }
}

/// Reads the JSON of a rules file, naming each member it refuses as `checks[i] "name".member (in FILE)`.
struct RuleReader {
    let file: String

    func fail(_ at: String, _ message: String) -> ConfigError { ConfigError("\(at) (in \(file))", message) }

    mutating func rules(_ json: JSONValue) throws(ConfigError) -> CheckRules {
        guard let members = json.objectMembers else { throw ConfigError("--rules", "\(file) must hold a JSON object") }
        var rules = CheckRules()
        for (key, value) in members {
            switch key {
            case "$comment": break
            case "statement_timeout_ms":
                guard let n = value.int64Value, case .number = value, n >= 1, n <= 86_400_000 else { throw fail(key, "must be an integer of milliseconds from 1 to 86400000") }
                rules.statementTimeoutMs = Int(n)
            case "defaults":
                guard let d = value.objectMembers else { throw fail(key, "must be an object") }
                for (k, v) in d {
                    guard case let .bool(b) = v else { throw fail("defaults.\(k)", "must be true or false") }
                    switch k {
                    case "schema": rules.defaultSchema = b
                    case "references": rules.defaultReferences = b
                    default: throw fail("defaults.\(k)", "unknown member (known: schema, references)")
                    }
                }
            case "checks":
                guard case let .array(items) = value else { throw fail(key, "must be an array of checks") }
                var seen = Set<String>()
                for (i, item) in items.enumerated() {
                    let rule = try check(item, at: "checks[\(i)]")
                    guard seen.insert(rule.name).inserted else { throw fail("checks[\(i)].name", "duplicate check name \"\(rule.name)\"") }
                    rules.checks.append(rule)
                }
            default: throw fail(key, "unknown member (known: checks, defaults, statement_timeout_ms)")
            }
        }
        return rules
    }

    func check(_ json: JSONValue, at: String) throws(ConfigError) -> CheckRule {
        guard let members = json.objectMembers else { throw fail(at, "must be an object") }
        guard let name = json["name"]?.stringValue else { throw fail("\(at).name", "required: a unique name") }
        guard !name.isEmpty, name.count <= 100, name.allSatisfy({ $0.isLetter || $0.isNumber || "_-.:".contains($0) }) else {
            throw fail("\(at).name", "\"\(name)\" must be 1–100 letters, digits, '_', '-', '.' or ':'")
        }
        let at = "\(at) \"\(name)\""
        guard let kind = json["kind"]?.stringValue else { throw fail("\(at).kind", "required: aggregate, query, references, schema or freshness") }
        let allowed: Set<String>
        switch kind {
        case "aggregate": allowed = ["table", "filter", "group_by", "measures"]
        case "query": allowed = ["source", "target", "key_columns", "tolerance"]
        case "references": allowed = ["child", "columns", "parent", "parent_columns"]
        case "schema": allowed = ["tables"]
        case "freshness": allowed = ["table", "column", "target", "max_lag_seconds"]
        default: throw fail("\(at).kind", "unknown kind '\(kind)' (aggregate, query, references, schema, freshness)")
        }
        for (key, _) in members where key != "name" && key != "kind" && key != "$comment" && !allowed.contains(key) {
            throw fail("\(at).\(key)", "unknown member of \(kind == "aggregate" ? "an" : "a") \(kind) check (known: \(allowed.sorted().joined(separator: ", ")))")
        }
        func req(_ key: String) throws(ConfigError) -> JSONValue {
            guard let v = json[key] else { throw fail("\(at).\(key)", "required in a \(kind) check") }
            return v
        }
        switch kind {
        case "aggregate":
            var rule = AggregateRule(table: try table(try req("table"), "\(at).table"), filter: nil, groupBy: [], measures: [], tolerances: [])
            if let f = json["filter"] {
                let text = try string(f, "\(at).filter")
                if let problem = predicateShapeProblem(text) { throw fail("\(at).filter", "'\(text)' is not a single predicate: \(problem)") }
                rule.filter = text
            }
            if let g = json["group_by"] {
                for (i, e) in try strings(g, "\(at).group_by").enumerated() {
                    if let problem = expressionShapeProblem(e) { throw fail("\(at).group_by[\(i)]", "'\(e)' is not a single expression: \(problem)") }
                    rule.groupBy.append(e)
                }
            }
            guard case let .array(ms) = try req("measures"), !ms.isEmpty else { throw fail("\(at).measures", "must be a non-empty array") }
            for (i, m) in ms.enumerated() {
                let (spec, tolerance) = try measure(m, "\(at).measures[\(i)]")
                rule.measures.append(spec)
                rule.tolerances.append(tolerance)
            }
            return CheckRule(name: name, kind: .aggregate(rule))
        case "query":
            var sides: [String] = []
            for key in ["source", "target"] {
                let q = try string(try req(key), "\(at).\(key)")
                if let problem = queryShapeProblem(q) { throw fail("\(at).\(key)", "not a single read-only query: \(problem)") }
                sides.append(q)
            }
            var keys = 1
            if let k = json["key_columns"] {
                guard case .number = k, let n = k.int64Value, n >= 0, n <= 32 else { throw fail("\(at).key_columns", "must be an integer from 0 to 32") }
                keys = Int(n)
            }
            let tolerance = try json["tolerance"].map { v throws(ConfigError) in try self.tolerance(v, "\(at).tolerance") } ?? .exact
            return CheckRule(name: name, kind: .query(QueryRule(source: sides[0], target: sides[1], keyColumns: keys, tolerance: tolerance)))
        case "references":
            let columns = try identifiers(try req("columns"), "\(at).columns")
            let parentColumns = try json["parent_columns"].map { v throws(ConfigError) in try identifiers(v, "\(at).parent_columns") } ?? columns
            guard parentColumns.count == columns.count else { throw fail("\(at).parent_columns", "must name as many columns as columns (\(columns.count))") }
            return CheckRule(name: name, kind: .references(ReferencesRule(child: try table(try req("child"), "\(at).child"), columns: columns,
                                                                          parent: try table(try req("parent"), "\(at).parent"), parentColumns: parentColumns)))
        case "schema":
            var tables: [TableName]?
            if let t = json["tables"] {
                guard case let .array(items) = t, !items.isEmpty else { throw fail("\(at).tables", "must be a non-empty array of table names") }
                tables = []
                for (i, item) in items.enumerated() { tables!.append(try table(item, "\(at).tables[\(i)]")) }
            }
            return CheckRule(name: name, kind: .schema(SchemaRule(tables: tables)))
        default:
            let column = try identifier(try req("column"), "\(at).column")
            var target = FreshnessTarget.column
            if let t = json["target"] {
                guard let s = t.stringValue, let v = FreshnessTarget(rawValue: s) else { throw fail("\(at).target", "must be \"column\" or \"row_versions\"") }
                target = v
            }
            let lag = try number(try req("max_lag_seconds"), "\(at).max_lag_seconds")
            return CheckRule(name: name, kind: .freshness(FreshnessRule(table: try table(try req("table"), "\(at).table"), column: column, target: target, maxLagSeconds: lag)))
        }
    }

    func measure(_ json: JSONValue, _ at: String) throws(ConfigError) -> (MeasureSpec, Tolerance) {
        if let text = json.stringValue {
            guard let spec = MeasureSpec(parsing: text) else { throw fail(at, Self.measureHelp(text)) }
            return (spec, .exact)
        }
        guard let members = json.objectMembers else { throw fail(at, "must be a measure text or {\"measure\": …, \"absolute\": …, \"relative\": …}") }
        for (k, _) in members where !["measure", "absolute", "relative"].contains(k) { throw fail("\(at).\(k)", "unknown member (known: measure, absolute, relative)") }
        guard let text = json["measure"]?.stringValue else { throw fail("\(at).measure", "required") }
        guard let spec = MeasureSpec(parsing: text) else { throw fail("\(at).measure", Self.measureHelp(text)) }
        return (spec, try tolerance(json, at, allowing: ["measure"]))
    }

    static func measureHelp(_ text: String) -> String {
        "'\(text)' is not a measure: count(*), count(distinct COLUMN), sum(COLUMN), min(COLUMN) or max(COLUMN), COLUMN a plain or double-quoted name"
    }

    func tolerance(_ json: JSONValue, _ at: String, allowing extra: Set<String> = []) throws(ConfigError) -> Tolerance {
        guard let members = json.objectMembers else { throw fail(at, "must be an object with absolute and/or relative") }
        var t = Tolerance()
        for (k, v) in members {
            switch k {
            case "absolute":
                guard case let .number(text) = v, let d = ExactDecimal(text), d.significand >= 0 else { throw fail("\(at).absolute", "must be a plain decimal number ≥ 0") }
                t.absolute = d
            case "relative":
                let r = try number(v, "\(at).relative")
                guard r <= 1 else { throw fail("\(at).relative", "must be a fraction from 0 to 1") }
                t.relative = r
            default:
                if !extra.contains(k) { throw fail("\(at).\(k)", "unknown member (known: absolute, relative)") }
            }
        }
        return t
    }

    func string(_ v: JSONValue, _ at: String) throws(ConfigError) -> String {
        guard let s = v.stringValue, !s.allSatisfy(\.isWhitespace) else { throw fail(at, "must be a non-empty string") }
        return s
    }

    func strings(_ v: JSONValue, _ at: String) throws(ConfigError) -> [String] {
        guard case let .array(items) = v else { throw fail(at, "must be an array of strings") }
        var out: [String] = []
        for (i, item) in items.enumerated() { out.append(try string(item, "\(at)[\(i)]")) }
        return out
    }

    func number(_ v: JSONValue, _ at: String) throws(ConfigError) -> Double {
        guard case let .number(text) = v, let d = Double(text), d.isFinite, d >= 0 else { throw fail(at, "must be a number ≥ 0") }
        return d
    }

    func identifier(_ v: JSONValue, _ at: String) throws(ConfigError) -> String {
        let s = try string(v, at)
        guard let name = parseIdentifier(s) else { throw fail(at, "'\(s)' is not a column name (letters, digits, '_', or a double-quoted name)") }
        return name
    }

    func identifiers(_ v: JSONValue, _ at: String) throws(ConfigError) -> [String] {
        guard case let .array(items) = v, !items.isEmpty else { throw fail(at, "must be a non-empty array of column names") }
        var out: [String] = []
        for (i, item) in items.enumerated() { out.append(try identifier(item, "\(at)[\(i)]")) }
        return out
    }

    /// `schema.table` or `table`: each part a plain or double-quoted name. The result is only ever
    /// matched against the catalog, never spliced into SQL.
    func table(_ v: JSONValue, _ at: String) throws(ConfigError) -> TableName {
        let s = try string(v, at)
        let parts = splitQualified(s)
        guard (1...2).contains(parts.count), let names = Optional(parts.compactMap(parseIdentifier)), names.count == parts.count else {
            throw fail(at, "'\(s)' is not a table name (schema.table or table; letters, digits, '_', or double-quoted names)")
        }
        return names.count == 2 ? TableName(schema: names[0], name: names[1]) : TableName(schema: "public", name: names[0])
    }

    /// Splits at dots outside double quotes.
    func splitQualified(_ s: String) -> [String] {
        var parts: [String] = [], current = ""
        var quoted = false
        for c in s {
            if c == "\"" { quoted.toggle() }
            if c == "." && !quoted {
                parts.append(current)
                current = ""
            } else {
                current.append(c)
            }
        }
        parts.append(current)
        return parts
    }
}
