/// How far a source and a target measure may differ and still count as equal: within `absolute`
/// (when given) or within `relative` × |source| (when given). With neither, values must be equal
/// by meaning (`1.50` equals `1.5`). Values that are not numbers (dates, texts) compare as texts.
public struct Tolerance: Sendable, Equatable {
    /// Exact decimal bound on |source − target|.
    public var absolute: ExactDecimal?
    /// Fraction of |source|.
    public var relative: Double?

    /// Either bound, both, or neither (exact).
    public init(absolute: ExactDecimal? = nil, relative: Double? = nil) {
        self.absolute = absolute
        self.relative = relative
    }

    /// Equal by meaning only.
    public static let exact = Tolerance()

    /// True when `source` and `target` count as equal. NULL equals only NULL.
    public func accepts(source: String?, target: String?) -> Bool {
        guard let source, let target else { return source == nil && target == nil }
        if source == target { return true }
        if let s = ExactDecimal(source), let t = ExactDecimal(target) {
            if let d = ExactDecimal.absoluteDifference(s, t) {
                if d.significand == 0 { return true }
                if let absolute, let ok = ExactDecimal.lessOrEqual(d, absolute), ok { return true }
                if let relative, d.doubleValue <= relative * abs(s.doubleValue) { return true }
                return false
            }
            return within(s.doubleValue, t.doubleValue)
        }
        if let s = Double(source), let t = Double(target), s.isFinite, t.isFinite { return within(s, t) }
        return false
    }

    private func within(_ s: Double, _ t: Double) -> Bool {
        let d = abs(s - t)
        if d == 0 { return true }
        if let absolute, d <= absolute.doubleValue { return true }
        if let relative, d <= relative * abs(s) { return true }
        return false
    }
}

/// One group (or query row) whose measures are out of tolerance.
public struct MeasureMismatch: Sendable, Equatable {
    /// The group's key texts.
    public let key: [String?]
    /// Index of the measure in the check's measure list.
    public let measure: Int
    public let source: String?
    public let target: String?
}

/// What comparing two sides' groups found: groups only in the source (missing from the target),
/// only in the target (extra), and measures out of tolerance, each in key order.
public struct GroupComparison: Sendable, Equatable {
    /// Distinct keys on each side.
    public var sourceGroups = 0
    public var targetGroups = 0
    public var missing: [[String?]] = []
    public var extra: [[String?]] = []
    public var outOfTolerance: [MeasureMismatch] = []

    /// Nothing missing, extra or out of tolerance.
    public var passes: Bool { missing.isEmpty && extra.isEmpty && outOfTolerance.isEmpty }

    /// Compares rows of `keyCount` key texts followed by measure texts, group by group. A key that
    /// appears twice on one side (a query returning duplicate keys) keeps its last row.
    public static func compare(source: [[String?]], target: [[String?]], keyCount: Int, tolerances: [Tolerance]) -> GroupComparison {
        var result = GroupComparison()
        func index(_ rows: [[String?]]) -> [[String?]: [String?]] {
            var out: [[String?]: [String?]] = [:]
            out.reserveCapacity(rows.count)
            for r in rows { out[Array(r[..<keyCount])] = Array(r[keyCount...]) }
            return out
        }
        let s = index(source), t = index(target)
        result.sourceGroups = s.count
        result.targetGroups = t.count
        for (key, sm) in s {
            guard let tm = t[key] else {
                result.missing.append(key)
                continue
            }
            for i in sm.indices where !(i < tolerances.count ? tolerances[i] : .exact).accepts(source: sm[i], target: i < tm.count ? tm[i] : nil) {
                result.outOfTolerance.append(MeasureMismatch(key: key, measure: i, source: sm[i], target: i < tm.count ? tm[i] : nil))
            }
        }
        for key in t.keys where s[key] == nil { result.extra.append(key) }
        result.missing.sort(by: keyOrder)
        result.extra.sort(by: keyOrder)
        result.outOfTolerance.sort { keyOrder($0.key, $1.key) || ($0.key == $1.key && $0.measure < $1.measure) }
        return result
    }

    /// Keys in text order, NULL first.
    static func keyOrder(_ a: [String?], _ b: [String?]) -> Bool {
        for (x, y) in zip(a, b) where x != y {
            guard let x else { return true }
            guard let y else { return false }
            return x < y
        }
        return a.count < b.count
    }
}
