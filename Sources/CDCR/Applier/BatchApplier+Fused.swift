import CDCCore
import CDCPostgres

extension BatchApplier {
    /// The usual batch — prepared ahead (`PreparedBatch`) against the tables the catalog still
    /// holds, no ID expected in the ledger yet, nothing to truncate — in four round trips instead of
    /// eleven: the same statements as `run`, in the same order, but sent as one `script`
    /// (`BEGIN`, the ledger claim's COPY under its savepoint, then per table the fence, the stage, its
    /// COPY, the guard and the MERGE), then the ledger settlement pipelined with the `COMMIT`.
    /// The script waits for the server only at its start and at each COPY.
    ///
    /// Returns nil when the batch is not such a batch, or when the claim met IDs the ledger already
    /// holds (or cannot hold): then everything is rolled back and the caller applies the batch the
    /// step-by-step way, which handles both exactly as before. Any other failure is thrown as the
    /// failed statement's own `PGError` after a rollback, so it is classified and isolated exactly
    /// as when the statements went one by one.
    func applyFused(_ items: [Result<DecodedMessage, PoisonError>], prepared: PreparedBatch) throws -> [EventOutcome]? {
        guard !expectDuplicates, let staged = prepared.staged, prepared.ledger.count > 0 else { return nil }
        let known = catalog.knownTables
        for (table, _) in staged.plan.tables where known[table.name] != table { return nil }

        let claimStep = 2
        var steps: [PGStep] = [.sql("BEGIN"), .sql("SAVEPOINT cdcr_claim"), .copyIn(Self.ledgerCopy, data: prepared.ledger.data),
                               .sql("RELEASE SAVEPOINT cdcr_claim")]
        var guardSteps: [Int] = []
        var insertSteps: [Int: TableName] = [:]
        for ((table, rows), (data, anyKeep)) in zip(staged.plan.tables, staged.stage) {
            let insertOnly = insertOnlyPause[table.name] == nil && rows.allSatisfy { !$0.isDelete }
            let (tableSteps, losers) = stageStatements(for: table).steps(data: data, anyKeep: anyKeep, insertOnly: insertOnly)
            guardSteps.append(steps.count + losers)  // after the fence, create, empty and COPY
            if insertOnly { insertSteps[steps.count + losers] = table.name }
            steps += tableSteps
        }
        let results: [PGRows]
        do {
            results = try conn.script(steps)
        } catch {
            rollBack()
            if error.step == claimStep, Self.isClaimRefusal(error.error) {
                expectDuplicates = true  // `run` then claims skipping the IDs already there, or bisects
                return nil
            }
            if let name = insertSteps[error.step], error.error.sqlState == "23505" {
                // A key was not new after all: redo the batch with the guard and the MERGE, and keep
                // to them for this table a while (the redo costs the whole batch once).
                insertOnlyPause[name] = Self.insertOnlyPauseBatches
                return try applyFused(items, prepared: prepared)
            }
            throw error.error
        }
        mark(insertSteps.isEmpty ? "claim_stage_guard_merge" : "claim_stage_insert")
        for name in staged.plan.tables.map(\.table.name) {
            if let left = insertOnlyPause[name] { insertOnlyPause[name] = left > 1 ? left - 1 : nil }
        }

        var outcomes = Self.outcomesBesideChanges(items, first: prepared.ledger.first)
        for i in staged.plan.staleInBatch { outcomes[i] = .stale }
        for (t, step) in guardSteps.enumerated() { Self.record(staged.plan.tables[t].rows, lost: results[step], into: &outcomes) }

        let settle = Self.settleStatements(items, outcomes: outcomes, claimed: prepared.ledger.first)
        do {
            try conn.pipeline(settle + [("COMMIT", [])])
        } catch {
            rollBack()
            throw error.error
        }
        mark("settle_commit")
        return outcomes.map { $0 ?? .stale }
    }

    /// Outcomes that need no database: poison, tombstones, logical messages, ignored truncates, and
    /// repeats of an ID earlier in the batch (`first` false). Changes stay nil.
    private static func outcomesBesideChanges(_ items: [Result<DecodedMessage, PoisonError>], first: [Bool]) -> [EventOutcome?] {
        items.indices.map { i -> EventOutcome? in
            switch items[i] {
            case let .failure(poison): .deadLettered(poison)
            case .success(.tombstone): .skipped(.tombstone)
            case .success(.logicalMessage): .skipped(.logicalMessage)
            case .success(.truncate): .skipped(.truncateIgnored)  // a batch with a truncate to apply is never fused
            case .success(.change): first[i] ? nil : .duplicate
            }
        }
    }

    /// Batches of a table that go the guard-and-MERGE way after its insert-only attempt met a key
    /// that was not new.
    static let insertOnlyPauseBatches = 100

    private func rollBack() {
        if conn.isHealthy { _ = try? conn.execute("ROLLBACK") }
    }
}
