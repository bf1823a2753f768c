/// The arithmetic of the hash-bucket descent: a row's bucket at a level of `bits` bits is its key
/// hash's low `bits` bits, so the children of bucket b (at more bits) are exactly the buckets whose
/// low bits are b. Each level is one sequential scan per side.
public enum BucketLevel {
    /// Most bits a level uses (bucket numbers stay non-negative `int8`).
    public static let maxBits = 62
    /// Most child buckets one level asks for (groups a statement returns per side).
    public static let maxChildren = 262_144
    /// A differing bucket with at most this many rows is compared row by row: splitting it would
    /// cost one more scan of the table for a few rows fewer fetched.
    public static let leafRows: Int64 = 16
    /// Above this share of differing root buckets the descent gives up for the range descent: the
    /// tables differ in many rows, and key ranges can summarise stretches of them (one-sided, or
    /// nearly all differing) where buckets would list every key.
    public static let maxDifferingShare = 0.1
    /// Rows per root bucket aimed at, and most root buckets (groups a root statement returns per side).
    public static let rootRows: Int64 = 64
    public static let maxRootBits = 17

    /// `2^bits - 1`.
    public static func mask(_ bits: Int) -> Int64 {
        let b = max(0, min(maxBits, bits))
        return (Int64(1) << b) - 1
    }

    /// Bits of the root level: the smallest power of two of buckets holding at most `rootRows` rows
    /// each, at least 2 buckets and at most 2^`maxRootBits`.
    public static func rootBits(estimatedRows: Int64) -> Int {
        var bits = 1
        while bits < maxRootBits && (Int64(1) << bits) * rootRows < estimatedRows { bits += 1 }
        return bits
    }

    /// Bits of the next level: children of about `childRows` rows when the split buckets hold
    /// `averageRows` rows on average, at least one more bit, and no more than `maxChildren` children.
    public static func childBits(bits: Int, parents: Int, averageRows: Double, childRows: Double = 2) -> Int {
        var extra = 1
        while extra < 20 && averageRows / Double(1 << extra) > childRows { extra += 1 }
        while extra > 1 && parents << extra > maxChildren { extra -= 1 }
        return min(maxBits, bits + extra)
    }

    /// Whether the hash descent suits tables of about these sizes: both sides hold rows, neither
    /// more than twice the other (an empty or half-loaded side is what key ranges summarise).
    public static func suits(sourceRows: Int64, targetRows: Int64) -> Bool {
        guard sourceRows > 0, targetRows > 0 else { return false }
        return max(sourceRows, targetRows) <= 2 * min(sourceRows, targetRows)
    }

    /// Whether the root level found the tables too far apart for buckets: more than
    /// `maxDifferingShare` of the buckets differ, or the row counts differ by more than
    /// `summarizeRows` (a stretch of keys may be on one side only, which key ranges report as one
    /// range with its count where buckets would list every key).
    public static func givesUp(differing: Int, buckets: Int, sourceRows: Int64, targetRows: Int64, summarizeRows: Int64) -> Bool {
        if abs(sourceRows - targetRows) > summarizeRows { return true }
        return buckets > 0 && Double(differing) > maxDifferingShare * Double(buckets)
    }
}
