import CDCCore
import CDCPostgres

/// What the ledger claim decided for a batch.
struct LedgerClaim {
    /// Per batch position: this batch claimed the change's ID (false for non-changes, IDs already
    /// in the ledger, repeats within the batch, and refused IDs).
    var claimed: [Bool]
    /// Batch positions whose ID the ledger refused for a permanent reason: dead-lettered alone.
    var refused: [Int: PoisonError] = [:]
}

extension BatchApplier {
    /// The claim's COPY: the batch's `LedgerRows` straight into the ledger.
    static let ledgerCopy = "COPY cdcr.ledger (change_id, table_name, outcome, full_change_id) FROM STDIN"

    /// Records every change ID of the batch in the ledger up front. A concurrent transaction claiming
    /// the same ID (a replay) makes this one wait for it, so a change is applied by exactly one of them.
    ///
    /// Usually no ID is there yet, so the entries are COPYed straight into the ledger under a savepoint
    /// (half the cost of an upsert); a unique violation rolls that back and the batch takes the path
    /// that skips duplicates, which stays the first choice until a batch finds none again. An ID the
    /// ledger cannot store for a permanent reason is never allowed to fail the batch: the claim is
    /// then bisected under savepoints and only the refused IDs drop out (`LedgerClaim.refused`).
    func claimInLedger(_ rows: LedgerRows, _ items: [Result<DecodedMessage, PoisonError>]) throws -> LedgerClaim {
        guard rows.count > 0 else { return LedgerClaim(claimed: rows.first) }
        if !expectDuplicates {
            try conn.execute("SAVEPOINT cdcr_claim")
            do {
                try conn.copyIn(Self.ledgerCopy, data: rows.data)
                try conn.execute("RELEASE SAVEPOINT cdcr_claim")
                return LedgerClaim(claimed: rows.first)
            } catch {
                try rethrowUnlessPermanent(error)
                try conn.execute("ROLLBACK TO SAVEPOINT cdcr_claim; RELEASE SAVEPOINT cdcr_claim")
            }
        }
        try conn.execute("""
            CREATE TEMP TABLE IF NOT EXISTS cdcr_ledger_stage (change_id text, table_name text, outcome "char", full_change_id text) ON COMMIT DELETE ROWS;
            """)
        var claim = LedgerClaim(claimed: [Bool](repeating: false, count: items.count))
        do {
            try conn.execute("SAVEPOINT cdcr_claim")
            let ids = try claimSkippingDuplicates(Array(rows.data))
            try conn.execute("RELEASE SAVEPOINT cdcr_claim")
            mark(ids, rows: 0..<rows.rowItems.count, of: rows, items, into: &claim)
        } catch {
            try rethrowUnlessPermanent(error)
            try conn.execute("ROLLBACK TO SAVEPOINT cdcr_claim; RELEASE SAVEPOINT cdcr_claim")
            try bisectClaim(rows, 0..<rows.rowItems.count, items, into: &claim)
        }
        expectDuplicates = claim.claimed.filter { $0 }.count < rows.count
        return claim
    }

    /// Claims `range` of `rows` under a savepoint; when the ledger refuses it, halves it, down to the
    /// single IDs it refuses. k refused IDs among n cost O(k log n) statements.
    private func bisectClaim(_ rows: LedgerRows, _ range: Range<Int>, _ items: [Result<DecodedMessage, PoisonError>], into claim: inout LedgerClaim) throws {
        guard !range.isEmpty else { return }
        try conn.execute("SAVEPOINT cdcr_claim_part")
        do {
            let ids = try claimSkippingDuplicates(Array(rows.data(rows: range)))
            try conn.execute("RELEASE SAVEPOINT cdcr_claim_part")
            mark(ids, rows: range, of: rows, items, into: &claim)
        } catch {
            try rethrowUnlessPermanent(error)
            try conn.execute("ROLLBACK TO SAVEPOINT cdcr_claim_part; RELEASE SAVEPOINT cdcr_claim_part")
            if range.count == 1 {
                let message = "the ledger cannot record this change ID: \((error as? PGError)?.message ?? "\(error)")"
                claim.refused[rows.rowItems[range.lowerBound]] = PoisonError(.rejected, message, sqlState: (error as? PGError)?.sqlState)
                return
            }
            let mid = range.lowerBound + range.count / 2
            try bisectClaim(rows, range.lowerBound..<mid, items, into: &claim)
            try bisectClaim(rows, mid..<range.upperBound, items, into: &claim)
        }
    }

    /// Stages ledger rows and inserts those whose ID is not there yet; returns the IDs inserted.
    private func claimSkippingDuplicates(_ data: [UInt8]) throws -> Set<String> {
        try conn.execute("DELETE FROM cdcr_ledger_stage")
        try conn.copyIn("COPY cdcr_ledger_stage FROM STDIN", data: data)
        let inserted = try conn.execute("""
            INSERT INTO cdcr.ledger (change_id, table_name, outcome, full_change_id)
            SELECT change_id, table_name, outcome, full_change_id FROM cdcr_ledger_stage ON CONFLICT (change_id) DO NOTHING RETURNING change_id
            """)
        return Set(inserted.rows.compactMap { $0[0] })
    }

    /// Marks the batch positions of `range` whose stored ID is in `inserted` as claimed.
    private func mark(_ inserted: Set<String>, rows range: Range<Int>, of rows: LedgerRows,
                      _ items: [Result<DecodedMessage, PoisonError>], into claim: inout LedgerClaim) {
        for r in range {
            let i = rows.rowItems[r]
            if case let .success(.change(event)) = items[i], inserted.contains(BookkeepingKey.stored(event.changeID)) { claim.claimed[i] = true }
        }
    }

    /// A unique violation and any other refusal that is not the connection or the server's state
    /// (a value the ledger cannot hold) are the claim's to handle; anything else goes up.
    private func rethrowUnlessPermanent(_ error: any Error) throws {
        if !Self.isClaimRefusal(error) { throw error }
    }

    /// See `rethrowUnlessPermanent`.
    static func isClaimRefusal(_ error: any Error) -> Bool {
        if (error as? PGError)?.sqlState == "23505" { return true }
        if case .poison = ErrorClassifier.classify(error) { return true }
        return false
    }

    /// Marks stale changes as such and removes the claims of dead-lettered ones (not applied, so a
    /// corrected re-send can still apply). Both are rare, so this is usually no statement at all.
    func settleLedger(_ items: [Result<DecodedMessage, PoisonError>], outcomes: [EventOutcome?], claimed: [Bool]) throws {
        for (sql, params) in Self.settleStatements(items, outcomes: outcomes, claimed: claimed) { try conn.query(sql, params) }
    }

    /// The statements of `settleLedger`, for a caller that sends them itself (pipelined with the
    /// COMMIT, see `applyFused`).
    static func settleStatements(_ items: [Result<DecodedMessage, PoisonError>], outcomes: [EventOutcome?],
                                 claimed: [Bool]) -> [(sql: String, params: [String?])] {
        var stale: [String] = []
        var dropped: [String] = []
        for (i, outcome) in outcomes.enumerated() {
            let isStale: Bool
            switch outcome {
            case .stale?, nil: isStale = true
            case .deadLettered?: isStale = false
            default: continue
            }
            guard claimed[i], case let .success(.change(event)) = items[i] else { continue }
            let stored = BookkeepingKey.stored(event.changeID)
            if isStale { stale.append(stored) } else { dropped.append(stored) }
        }
        var statements: [(sql: String, params: [String?])] = []
        if !stale.isEmpty {
            statements.append(("UPDATE cdcr.ledger SET outcome = 's' WHERE change_id = ANY($1::text[])", [pgArrayLiteral(stale)]))
        }
        if !dropped.isEmpty {
            statements.append(("DELETE FROM cdcr.ledger WHERE change_id = ANY($1::text[])", [pgArrayLiteral(dropped)]))
        }
        return statements
    }
}
