/// How a column's type in the target relates to its type in the source, from the catalogs'
/// `format_type` texts.
public enum TypeVerdict: Sendable, Equatable {
    /// The same type.
    case same
    /// Another type that holds every value of the source's with the same meaning (docs/CHECKS.md
    /// lists the pairs); not reported as a difference.
    case compatible
    /// A type that can lose, reject or change values.
    case different
}

/// The documented widening pairs, source → target: `smallint → integer → bigint`; an integer type
/// → `numeric` (unconstrained, or with precision enough and scale 0); `numeric(p,s) → numeric(p',s)`
/// with p' ≥ p and `numeric(p,s) → numeric`; `real → double precision`; `varchar(n) → varchar(m)`
/// with m ≥ n, `varchar(n) → varchar`, `varchar[(n)] → text`, `text → varchar`;
/// `timestamp[tz]/time(p) → (p')` with p' ≥ p (unconstrained is 6); `json → jsonb`;
/// `bit varying(n) → bit varying(m)` with m ≥ n.
public func typeVerdict(source: String, target: String) -> TypeVerdict {
    if source == target { return .same }
    let s = ParsedType(source), t = ParsedType(target)
    let integerDigits = ["smallint": 5, "integer": 10, "bigint": 19]
    if let sw = integerDigits[s.base] {
        if let tw = integerDigits[t.base] { return tw >= sw ? .compatible : .different }
        if t.base == "numeric" {
            if t.mods.isEmpty { return .compatible }
            return t.mods.count == 2 && t.mods[1] == 0 && t.mods[0] >= sw ? .compatible : .different
        }
        return .different
    }
    switch (s.base, t.base) {
    case ("numeric", "numeric"):
        if t.mods.isEmpty { return .compatible }
        guard s.mods.count == 2, t.mods.count == 2 else { return .different }
        return t.mods[1] == s.mods[1] && t.mods[0] >= s.mods[0] ? .compatible : .different
    case ("real", "double precision"), ("json", "jsonb"), ("text", "character varying"), ("character varying", "text"):
        return t.mods.isEmpty ? .compatible : .different
    case ("character varying", "character varying"), ("bit varying", "bit varying"):
        if t.mods.isEmpty { return .compatible }
        guard let sn = s.mods.first, let tn = t.mods.first else { return .different }
        return tn >= sn ? .compatible : .different
    case (let a, let b) where a == b && ["timestamp without time zone", "timestamp with time zone", "time without time zone", "time with time zone"].contains(a):
        return (t.mods.first ?? 6) >= (s.mods.first ?? 6) ? .compatible : .different
    default:
        return .different
    }
}

/// `numeric(12,2)` → base `numeric`, mods [12, 2]; `timestamp(3) without time zone` → base
/// `timestamp without time zone`, mods [3].
struct ParsedType {
    let base: String
    let mods: [Int]

    init(_ text: String) {
        guard let open = text.firstIndex(of: "("), let close = text[open...].firstIndex(of: ")") else {
            base = text
            mods = []
            return
        }
        let head = text[..<open].trimmingSuffixSpaces
        let tail = text[text.index(after: close)...]
        base = tail.isEmpty ? head : head + tail
        mods = text[text.index(after: open)..<close].split(separator: ",").compactMap { Int($0.filter { $0 != " " }) }
    }
}

private extension Substring {
    var trimmingSuffixSpaces: String {
        var s = self
        while s.last == " " { s.removeLast() }
        return String(s)
    }
}
