/// Why `expression` cannot be one SQL value expression over a table's row (a group-by key of an
/// aggregate check), or nil. It is spliced into the check's query as `(expression)`, so on top of
/// the predicate rules (no `;`, comment, `$` or stray parenthesis outside quotes) it must not hold
/// a comma at the top level (two expressions) nor a subquery (`SELECT` outside quotes): a key is
/// computed from the row alone. Run in a READ ONLY transaction either way.
public func expressionShapeProblem(_ expression: String) -> String? {
    if let problem = predicateShapeProblem(expression) { return problem }
    var depth = 0
    var quote: Character?
    var word = ""
    func endWord() -> String? {
        defer { word = "" }
        return word.lowercased() == "select" ? "a subquery (SELECT)" : nil
    }
    for c in expression {
        if let q = quote {
            if c == q { quote = nil }
            continue
        }
        if c.isLetter || c.isNumber || c == "_" {
            word.append(c)
            continue
        }
        if let problem = endWord() { return problem }
        switch c {
        case "'", "\"": quote = c
        case "(": depth += 1
        case ")": depth -= 1
        case "," where depth == 0: return "',' at the top level (one expression per entry)"
        default: break
        }
    }
    return endWord()
}

/// Why `query` cannot be one read-only query (a `query` check's side), or nil. It must start with
/// `SELECT`, `WITH`, `VALUES` or `TABLE`, and follow the predicate rules: cdcr runs it as
/// `SELECT * FROM (query) q`, so it can only be a query expression (no statement, no
/// data-modifying WITH), inside a READ ONLY transaction with a statement timeout.
public func queryShapeProblem(_ query: String) -> String? {
    if let problem = predicateShapeProblem(query) { return problem }
    let first = query.drop(while: { $0.isWhitespace || $0 == "(" }).prefix(while: { $0.isLetter }).lowercased()
    guard ["select", "with", "values", "table"].contains(first) else { return "it does not start with SELECT, WITH, VALUES or TABLE" }
    return nil
}

/// An aggregate measure: `count(*)`, `count(distinct col)`, `sum(col)`, `min(col)`, `max(col)`.
/// `column` is an identifier to resolve against the catalog, never SQL.
public struct MeasureSpec: Sendable, Equatable, CustomStringConvertible {
    /// The aggregate function.
    public enum Function: String, Sendable {
        case count, countDistinct = "count distinct", sum, min, max
    }

    /// What is computed.
    public let function: Function
    /// nil for `count(*)`.
    public let column: String?

    /// A measure of `column` (nil only for `count(*)`).
    public init(function: Function, column: String?) {
        self.function = function
        self.column = column
    }

    /// Parses the text form; column names are bare (folded to lower case, as PostgreSQL does) or
    /// double-quoted. Anything else is nil.
    public init?(parsing text: String) {
        let t = text.trimmingSpaces
        guard let open = t.firstIndex(of: "("), t.last == ")" else {
            if t.lowercased() == "count" { self.init(function: .count, column: nil); return }
            return nil
        }
        let fn = t[..<open].trimmingSpaces.lowercased()
        var arg = t[t.index(after: open)..<t.index(before: t.endIndex)].trimmingSpaces
        if fn == "count" && arg == "*" { self.init(function: .count, column: nil); return }
        var function: Function
        switch fn {
        case "count": function = .count
        case "sum": function = .sum
        case "min": function = .min
        case "max": function = .max
        default: return nil
        }
        if function == .count {
            let lower = arg.lowercased()
            guard lower.hasPrefix("distinct ") || lower.hasPrefix("distinct\"") else { return nil }
            arg = String(arg.dropFirst("distinct".count)).trimmingSpaces
            function = .countDistinct
        }
        guard let name = parseIdentifier(arg) else { return nil }
        self.init(function: function, column: name)
    }

    /// The text form, e.g. `sum(amount)`.
    public var description: String {
        switch function {
        case .count: "count(*)"
        case .countDistinct: "count(distinct \(column!))"
        default: "\(function.rawValue)(\(column!))"
        }
    }
}

/// A bare identifier (`[A-Za-z_][A-Za-z0-9_]*`, folded to lower case) or a double-quoted one
/// (`""` inside stands for `"`); nil for anything else.
public func parseIdentifier(_ text: String) -> String? {
    if text.hasPrefix("\""), text.hasSuffix("\""), text.count >= 3 {
        let inner = text.dropFirst().dropLast()
        var out = ""
        var pendingQuote = false
        for c in inner {
            if pendingQuote {
                guard c == "\"" else { return nil }
                out.append("\"")
                pendingQuote = false
            } else if c == "\"" {
                pendingQuote = true
            } else {
                out.append(c)
            }
        }
        return pendingQuote ? nil : out
    }
    guard let first = text.unicodeScalars.first, first == "_" || (first.isASCII && first.properties.isAlphabetic) else { return nil }
    guard text.unicodeScalars.allSatisfy({ $0.isASCII && ($0 == "_" || $0.properties.isAlphabetic || ("0"..."9").contains($0)) }) else { return nil }
    return text.lowercased()
}

extension StringProtocol {
    var trimmingSpaces: String {
        var s = Substring(self)
        while s.first?.isWhitespace == true { s.removeFirst() }
        while s.last?.isWhitespace == true { s.removeLast() }
        return String(s)
    }
}
