import ArgumentParser
import CDCCore
import CDCR
import Foundation

/// `verify`'s sampled and incremental modes: which keys are compared instead of all of them.
struct VerifyModeOptions: ParsableArguments {
    @Option(parsing: .unconditional, help: "Compare a uniform random sample of N keys per table and estimate the mismatch rate.")
    var sample: Int?

    @Option(parsing: .unconditional, help: "Confidence of the estimated interval (default 0.95); with --margin it sets the sample size.")
    var confidence: Double?

    @Option(parsing: .unconditional, help: "Sample enough keys to know the mismatch rate within ± this (e.g. 0.005), at --confidence.")
    var margin: Double?

    @Option(parsing: .unconditional, help: "Seed of the sample: the same seed draws the same keys (default: random, and reported).")
    var seed: UInt64?

    @Option(help: "Compare only keys changed since TIME (any timestamptz) or since the table's last successful run: 'last'.")
    var since: String?

    @Option(name: .customLong("changed-column"), help: "With --since: a column holding each row's change time, COL for every table or TABLE=COL; repeatable (config verify.changed_columns).")
    var changedColumns: [String] = []

    func validate() throws {
        if let sample, sample < 1 { throw ValidationError("--sample must be at least 1") }
        if let confidence, !(confidence > 0 && confidence < 1) { throw ValidationError("--confidence must be between 0 and 1, e.g. 0.99") }
        if let margin, !(margin > 0 && margin <= 0.5) { throw ValidationError("--margin must be above 0 and at most 0.5, e.g. 0.005") }
        if sample != nil && margin != nil { throw ValidationError("give --sample N or --margin E, not both") }
        let sampling = sample != nil || margin != nil
        if !sampling && (confidence != nil || seed != nil) { throw ValidationError("--confidence and --seed need --sample N or --margin E") }
        if sampling && since != nil { throw ValidationError("--since compares changed keys, --sample and --margin random ones: choose one") }
        if since == nil && !changedColumns.isEmpty { throw ValidationError("--changed-column needs --since") }
        if let since, since.trimmingCharacters(in: .whitespaces).isEmpty { throw ValidationError("--since needs a time or 'last'") }
    }

    func apply(to options: inout VerifyOptions, settings: Settings) throws {
        if sample != nil || margin != nil {
            var s = SampleOptions()
            s.size = sample
            s.margin = margin
            s.confidence = confidence ?? 0.95
            s.seed = seed ?? UInt64.random(in: 1...999_999_999)
            options.sample = s
        }
        if let since {
            var i = IncrementalOptions(since: since.lowercased() == "last" ? .last : .time(since))
            i.changedColumns = settings.verify.changedColumns
            for c in changedColumns {
                if let eq = c.firstIndex(of: "=") {
                    let table = String(c[..<eq]), column = String(c[c.index(after: eq)...])
                    guard !table.isEmpty, !column.isEmpty else { throw ValidationError("--changed-column '\(c)': give COL or TABLE=COL") }
                    i.changedColumns[TableName(parsing: table)] = column
                } else {
                    i.changedColumn = c
                }
            }
            options.incremental = i
        }
    }
}
