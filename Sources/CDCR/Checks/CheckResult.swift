import CDCCore

/// PASS, FAIL or ERROR (the check could not run: a table missing in the target, a timeout…).
public enum CheckStatus: String, Sendable {
    case pass = "PASS", fail = "FAIL", error = "ERROR"
}

/// What one check found: its numbers (stored as JSON in `cdcr.check_results.numbers`), up to
/// `CheckResult.maxExamples` examples of what failed, and a one-line summary.
public struct CheckResult: Sendable {
    /// Examples kept per check.
    public static let maxExamples = 10

    /// The check's name (its rule's, or `schema`, `fk:<table>:<constraint>` for the defaults).
    public let name: String
    /// `aggregate`, `query`, `references`, `schema` or `freshness`.
    public let kind: String
    /// PASS, FAIL or ERROR.
    public var status: CheckStatus
    /// One line: what was compared and found, or why the check could not run.
    public var summary: String
    /// Named numbers in a fixed order (counts, lags, totals).
    public var numbers: [(String, JSONValue)] = []
    /// Lines naming what failed, at most `maxExamples`.
    public var examples: [String] = []
    /// How long the check took, both sides.
    public var duration: Duration = .zero

    /// A result without numbers or examples yet.
    public init(name: String, kind: String, status: CheckStatus, summary: String) {
        self.name = name
        self.kind = kind
        self.status = status
        self.summary = summary
    }

    static func error(_ rule: CheckRule, _ message: String) -> CheckResult {
        CheckResult(name: rule.name, kind: rule.kind.label, status: .error, summary: message)
    }

    mutating func add(_ name: String, _ value: Int) { numbers.append((name, .number(String(value)))) }
    mutating func add(_ name: String, _ value: Double) { numbers.append((name, value.isFinite ? .number(String(value)) : .null)) }
    mutating func add(_ name: String, _ value: String?) { numbers.append((name, value.map(JSONValue.string) ?? .null)) }

    /// Appends an example while there is room.
    mutating func example(_ line: String) {
        if examples.count < Self.maxExamples { examples.append(line) }
    }

    /// `numbers` as a JSON object (the report and `cdcr.check_results.numbers`).
    public var numbersJSON: String { JSONValue.object(numbers).serialized }
    /// `examples` as a JSON array of strings.
    public var examplesJSON: String { JSONValue.array(examples.map(JSONValue.string)).serialized }
}

/// The results of one `cdcr check` run, in the order the checks ran.
public struct CheckReport: Sendable {
    /// `check-<UTC time>-<random>`, once the run is stored.
    public var runID = ""
    /// One per check, in the order they ran.
    public var results: [CheckResult] = []
    /// The whole run.
    public var duration: Duration = .zero

    /// An empty report.
    public init() {}

    /// How many checks passed, failed, could not run.
    public var passed: Int { results.count { $0.status == .pass } }
    public var failed: Int { results.count { $0.status == .fail } }
    public var errors: Int { results.count { $0.status == .error } }

    /// `error` when any check could not run, else `fail` when any failed, else `pass`.
    public var status: CheckStatus { errors > 0 ? .error : failed > 0 ? .fail : .pass }
}
