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
