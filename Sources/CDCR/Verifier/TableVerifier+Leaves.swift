import CDCCore

/// The leaf ranges of one descent level, in key order, on their way into the report. A run of
/// adjacent leaves in which nearly every row differs (`nearlyAllShare`), holding more than
/// `summarizeRows` differences, is reported as one range with its counts instead of key by key, as a
/// one-sided stretch is; every other leaf's differences are listed. Until a run passes
/// `summarizeRows` its keys wait here (so at most that many); after, they are only counted.
final class LeafRuns {
    typealias Found = (missing: [KeyTexts], extra: [KeyTexts], changed: [KeyTexts])
    /// A leaf in which at least this share of the rows differ counts as "nearly all differ".
    static let nearlyAllShare = 0.9

    private let found: DifferenceCollector
    private let summarizeRows: Int64
    private var waiting: [(found: Found, fetched: Int)] = []
    private var run: RangeDifference?
    /// Rows the current run's leaves hold on each side (equal ones too).
    private var runRows = (source: 0, target: 0)
    /// Ranges summarised so far.
    private(set) var ranges: [RangeDifference] = []

    init(found: DifferenceCollector, summarizeRows: Int64) {
        self.found = found
        self.summarizeRows = summarizeRows
    }

    /// One leaf range and both sides' key → row hash of its rows.
    func add(_ range: KeyRange, source: [KeyTexts: Int64], target: [KeyTexts: Int64]) throws {
        let f = differingKeys(source: source, target: target)
        let fetched = source.count + target.count
        let leaf = RangeDifference(range: range, missing: Int64(f.missing.count), extra: Int64(f.extra.count), different: Int64(f.changed.count))
        // The rows of either side (a key on both counts once) and how many of them differ.
        let rows = source.count + f.extra.count
        let nearlyAll = rows > 0 && Double(leaf.rows) >= Self.nearlyAllShare * Double(rows)
        if !nearlyAll || (run != nil && run!.joined(leaf) == nil) { try finish() }
        guard nearlyAll else { return try found.keep(f, fetched: fetched) }
        run = run?.joined(leaf) ?? leaf
        runRows = (runRows.source + source.count, runRows.target + target.count)
        if run!.rows > summarizeRows {
            found.rowsFetched += fetched + waiting.reduce(0) { $0 + $1.fetched }
            waiting = []
        } else {
            waiting.append((f, fetched))
        }
    }

    /// Ends the current run: summarised when it passed `summarizeRows`, listed otherwise.
    func finish() throws {
        defer { run = nil; waiting = []; runRows = (0, 0) }
        guard let run else { return }
        if run.rows > summarizeRows {
            // A run whose rows are all on one side is a one-sided range, which the one-sided ranges it
            // meets join. Not when the other side holds rows there, equal ones included: "only in the
            // source" would be false, and `repair --print` would delete (or insert) them wholesale.
            if runRows.target == 0 {
                ranges.append(RangeDifference(range: run.range, side: .source, rows: run.rows))
            } else if runRows.source == 0 {
                ranges.append(RangeDifference(range: run.range, side: .target, rows: run.rows))
            } else {
                ranges.append(run)
            }
        } else {
            for w in waiting { try found.keep(w.found, fetched: w.fetched) }
        }
    }
}
