import CDCCore

extension TableVerifier {
    /// The hash-bucket descent. Level 0 groups every row by the low `rootBits` bits of its key's hash
    /// (count and hash sum per bucket, one sequential scan per side). A differing bucket is split by
    /// more bits in the next level's scan, which reads only the rows of the differing buckets; small
    /// or one-sided buckets are leaves, whose keys and row hashes the same scan returns. So a level
    /// costs one sequential pass whatever the key's type or the rows' physical order, where key
    /// ranges on a key uncorrelated with the heap (md5 texts, uuids) read the table through the
    /// index in random order.
    ///
    /// Returns false, having listed nothing, when the root level finds the tables far apart
    /// (`BucketLevel.givesUp`): key ranges do better then (they summarise one-sided stretches).
    func descendByBuckets(into diff: inout TableDiff, estimatedRows: Int64) throws -> Bool {
        let (source, target) = (self.source, self.target)
        let rootBits = BucketLevel.rootBits(estimatedRows: estimatedRows)
        let (cs, ct) = try concurrently({ try source.bucketChecksums(bits: rootBits) }, { try target.bucketChecksums(bits: rootBits) })
        let sourceRows = cs.values.reduce(0) { $0 + $1.count }, targetRows = ct.values.reduce(0) { $0 + $1.count }
        var triage = triageBuckets(source: cs, target: ct)
        let buckets = Set(cs.keys).union(ct.keys).count
        trace("bucket level 0: \(buckets) buckets, \(triage.split.count + triage.leaves.count) differ")
        if BucketLevel.givesUp(differing: triage.split.count + triage.leaves.count, buckets: buckets,
                               sourceRows: sourceRows, targetRows: targetRows, summarizeRows: summarizeRows) {
            logger.debug("verify: too many buckets differ for the hash descent; descending by key ranges",
                         metadata: ["table": "\(pair.source.name)", "differing": "\(triage.split.count + triage.leaves.count)", "buckets": "\(buckets)"])
            return false
        }
        diff.method = .hashBuckets
        diff.sourceRows = sourceRows
        diff.targetRows = targetRows
        diff.rangesPerLevel.append(buckets)
        let found = DifferenceCollector(self, spill: diff.spill)
        var bits = rootBits, level = 0
        while !triage.split.isEmpty || !triage.leaves.isEmpty {
            let childBits = BucketLevel.childBits(bits: bits, parents: triage.split.count, averageRows: triage.averageSplitRows)
            progress("level \(level): \(triage.leaves.count) buckets compared row by row, \(triage.split.count) split further")
            let (split, leaves, b) = (triage.split, triage.leaves, bits)
            let (s, t) = try concurrently(
                { try source.bucketLevel(bits: b, split: split, childBits: childBits, leaves: leaves) },
                { try target.bucketLevel(bits: b, split: split, childBits: childBits, leaves: leaves) })
            try found.keepDiffering(source: s.rows, target: t.rows)
            triage = triageBuckets(source: s.children, target: t.children)
            if !split.isEmpty { diff.rangesPerLevel.append(Set(s.children.keys).union(t.children.keys).count) }
            bits = childBits
            level += 1
            trace("bucket level \(level)")
        }
        try found.finish(into: &diff)
        trace("rows compared")
        return true
    }

    /// The differing buckets of one level: those to split further, and the leaves (compared row by
    /// row), by the range descent's rules (`DescentPolicy.verdict`).
    private func triageBuckets(source: [Int64: RangeChecksum], target: [Int64: RangeChecksum]) -> BucketTriage {
        var out = BucketTriage()
        // A level costs a scan of the table; a leaf costs its rows: larger leaves than key ranges'.
        var leafPolicy = policy
        leafPolicy.leafRows = max(policy.leafRows, BucketLevel.leafRows)
        let all = Set(source.keys).union(target.keys)
        guard !all.isEmpty else { return out }
        let differing = all.filter { source[$0] != target[$0] }
        let rows = max(source.values.reduce(0) { $0 + $1.count }, target.values.reduce(0) { $0 + $1.count })
        let density = DescentPolicy.density(differingShare: Double(differing.count) / Double(all.count), averageRows: Double(rows) / Double(all.count))
        var splitRows: Int64 = 0
        for b in differing.sorted() {
            let (s, t) = (source[b] ?? .empty, target[b] ?? .empty)
            switch leafPolicy.verdict(source: s, target: t, density: density) {
            case .equal: break
            case .compareRows, .onlyIn: out.leaves.append(b)
            case .split:
                out.split.append(b)
                splitRows += max(s.count, t.count)
            }
        }
        out.averageSplitRows = out.split.isEmpty ? 0 : Double(splitRows) / Double(out.split.count)
        return out
    }
}

/// One level's differing buckets.
struct BucketTriage {
    var split: [Int64] = []
    var leaves: [Int64] = []
    var averageSplitRows: Double = 0
}
