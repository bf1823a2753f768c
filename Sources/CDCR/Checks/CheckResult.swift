import CDCCore

/// PASS, FAIL or ERROR (the check could not run: a table missing in the target, a timeout…).
public enum CheckStatus: String, Sendable {
    case pass = "PASS", fail = "FAIL", error = "ERROR"
}

/// What one check found: its numbers (stored as JSON in `cdcr.check_results.numbers`), up to
/// `CheckResult.maxExamples` examples of what failed, and a one-line summary.
public struct CheckResult: Sendable {
    public static let maxExamples = 10

    public let name: String
    public let kind: String
    public var status: CheckStatus
    public var summary: String
    /// Named numbers in a fixed order (counts, lags, totals).
    public var numbers: [(String, JSONValue)] = []
    public var examples: [String] = []
    public var duration: Duration = .zero

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

    public var numbersJSON: String { JSONValue.object(numbers).serialized }
    public var examplesJSON: String { JSONValue.array(examples.map(JSONValue.string)).serialized }
}

/// The results of one `cdcr check` run, in the order the checks ran.
public struct CheckReport: Sendable {
    public var runID = ""
    public var results: [CheckResult] = []
    public var duration: Duration = .zero

    public init() {}

    public var passed: Int { results.count { $0.status == .pass } }
    public var failed: Int { results.count { $0.status == .fail } }
    public var errors: Int { results.count { $0.status == .error } }

    /// `error` when any check could not run, else `fail` when any failed, else `pass`.
    public var status: CheckStatus { errors > 0 ? .error : failed > 0 ? .fail : .pass }
}
