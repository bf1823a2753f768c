/// A difference between source and target for one key.
public enum RowDifference: Sendable, Equatable {
    /// In the source, not in the target (`-`).
    case missing
    /// In the target, not in the source (`+`).
    case extra
    /// In both, with these columns differing (`~`).
    case different(columns: [String])

    public var symbol: String {
        switch self {
        case .missing: "-"
        case .extra: "+"
        case .different: "~"
        }
    }
}

/// Compares rows given as canonical texts (see `ComparedColumn.canonicalText`), column by column.
public struct RowComparator: Sendable {
    public let columns: [ComparedColumn]
    public let floatTolerance: Double?

    public init(columns: [ComparedColumn], floatTolerance: Double?) {
        self.columns = columns
        self.floatTolerance = floatTolerance
    }

    /// The difference of a key's rows on both sides (nil = a side has no such row), or nil when equal.
    public func compare(source: [String?]?, target: [String?]?) -> RowDifference? {
        switch (source, target) {
        case (nil, nil): return nil
        case (_?, nil): return .missing
        case (nil, _?): return .extra
        case let (s?, t?):
            var differing: [String] = []
            for (i, column) in columns.enumerated() where !equal(s[i], t[i], column.type) {
                differing.append(column.name)
            }
            return differing.isEmpty ? nil : .different(columns: differing)
        }
    }

    func equal(_ a: String?, _ b: String?, _ type: CompareType) -> Bool {
        if a == b { return true }
        guard type == .float, let tolerance = floatTolerance, let a, let b, let x = Double(a), let y = Double(b) else { return false }
        if x.isNaN || y.isNaN { return false }
        return abs(x - y) <= tolerance
    }
}

/// The verdicts of a leaf: keys whose hashes differ between the sides, given each side's key → hash.
public func differingKeys(source: [KeyTexts: Int64], target: [KeyTexts: Int64]) -> (missing: [KeyTexts], extra: [KeyTexts], changed: [KeyTexts]) {
    var missing: [KeyTexts] = [], extra: [KeyTexts] = [], changed: [KeyTexts] = []
    for (key, hash) in source {
        if let other = target[key] {
            if other != hash { changed.append(key) }
        } else {
            missing.append(key)
        }
    }
    for key in target.keys where source[key] == nil { extra.append(key) }
    return (missing, extra, changed)
}

/// Why `predicate` cannot be one parenthesised expression (it is spliced into every query as
/// `AND (predicate)`), or nil. Outside quotes it must not end a statement, open a comment, use `$`
/// (parameters, dollar quotes) or close a parenthesis it did not open.
public func predicateShapeProblem(_ predicate: String) -> String? {
    if predicate.allSatisfy(\.isWhitespace) { return "it is empty" }
    var depth = 0
    var quote: Character?
    var previous: Character = " "
    for c in predicate {
        if let q = quote {
            if c == q { quote = nil }
        } else {
            switch c {
            case "'", "\"": quote = c
            case ";": return "';' outside a string"
            case "$": return "'$' outside a string"
            case "-" where previous == "-", "*" where previous == "/": return "a comment"
            case "(": depth += 1
            case ")":
                depth -= 1
                if depth < 0 { return "unbalanced parentheses" }
            default: break
            }
        }
        previous = quote == nil ? c : " "
    }
    if quote != nil { return "an unterminated quote" }
    if depth != 0 { return "unbalanced parentheses" }
    return nil
}
