import CDCCore
import CDCPostgres
import Logging

/// One chunk as read from the source: its rows in COPY text (the copied columns), the key range it
/// covers (`lower` inclusive, `upper` exclusive, nil = open) and the version its rows are stamped with.
struct SourceChunk {
    var data: [UInt8] = []
    /// Start offset of each row in `data`.
    var rowStarts: [Int] = []
    let lower: KeyTexts?
    /// The first key of the next chunk (the extra row read and left out), nil at the end of the table.
    var upper: KeyTexts?
    let version: Int64

    var rowCount: Int { rowStarts.count }

    func row(_ i: Int) -> Range<Int> { rowStarts[i]..<(i + 1 < rowStarts.count ? rowStarts[i + 1] : data.count) }
}

extension SourceChunk {
    /// Reads up to `limit` rows from `lower` on, in key order, inside one short `REPEATABLE READ READ
    /// ONLY` transaction opened after the watermark's wait, plus one more row whose key becomes
    /// `upper` (never copied: it starts the next chunk). Memory: the chunk's rows.
    static func read(_ sql: BackfillSQL, lower: KeyTexts?, limit: Int, watermark: Watermark, on conn: PGConnection) throws -> SourceChunk {
        var chunk = SourceChunk(lower: lower, upper: nil, version: watermark.version)
        chunk.data.reserveCapacity(limit * 128)
        chunk.rowStarts.reserveCapacity(limit + 1)
        try conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        do {
            if let lower { try conn.query(sql.bindLower, lower.map(Optional.some)) }
            try conn.copyOut(sql.sourceChunk(limit: limit + 1, fromLower: lower != nil)) { row in
                chunk.rowStarts.append(chunk.data.count)
                chunk.data.append(contentsOf: row)
            }
            try conn.execute("COMMIT")
        } catch {
            if conn.isHealthy { _ = try? conn.execute("ROLLBACK") }
            throw error
        }
        if chunk.rowCount > limit {
            let last = chunk.rowStarts.removeLast()
            let fields = chunk.data[last...].withUnsafeBytes { CopyText.decodeRow($0) }
            chunk.upper = sql.table.keyPositions.map { fields[$0] ?? "" }
            chunk.data.removeSubrange(last...)
        }
        return chunk
    }

    /// The range's bounds as statement parameters: the lower key's texts (if any), then the upper's.
    var bounds: [String?] { ((lower ?? []) + (upper ?? [])).map(Optional.some) }

    /// The key texts of row `i` (decoded from its COPY text).
    func key(_ i: Int, positions: [Int]) -> KeyTexts {
        let fields = data[row(i)].withUnsafeBytes { CopyText.decodeRow($0) }
        return positions.map { fields[$0] ?? "" }
    }

    /// Rows `rows` as the stage's COPY rows: stage index (the row's position from 1), 'u', the
    /// chunk's version, the target-only columns to keep (`keep`, COPY text), then the columns.
    func stageData(_ rows: some Sequence<Int>, keep: String) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(data.count + rowCount * 24)
        let tail = Array("\tu\t\(version)\t\(keep)\t".utf8)
        for i in rows {
            out.append(contentsOf: String(i + 1).utf8)
            out.append(contentsOf: tail)
            out.append(contentsOf: data[row(i)])
        }
        return out
    }
}

/// What applying a chunk did.
struct ChunkOutcome: Sendable {
    var counts = BackfillCounts()
    /// Keys of rows the target refused, with the reason (at most a few kept).
    var failedKeys: [(KeyTexts, String)] = []
    /// The chunk was recorded as a range watermark (`insertRanged`): it waited for the previous
    /// chunk's commit before taking the fence, so its checkpoint need not wait again, and its
    /// savepoint is still open.
    var ranged = false
    /// Time per step of the chunk's write (debug logging, benchmarks).
    var phases = ""
}

/// Writes chunks to the target through the applier's path: COPY into its stage, tombstones for keys
/// the copy lacks, the version guard on `cdcr.row_versions`, the MERGE; then the ledger entry and
/// the checkpoint, all in one transaction.
struct ChunkWriter: Sendable {
    let sql: BackfillSQL
    let conn: PGConnection
    let runID: String
    let logger: Logger
    /// Chunks into an empty key range record a range watermark instead of per-row version entries
    /// (`insertRanged`): the table's key orders by type alone, there is no `--where`, and no other
    /// run recorded ranges on the table (`Backfiller`).
    var useRanges = false
    /// Time per step of the last chunk (debug logging, benchmarks).
    let phases = PhaseClock()
    /// Chunks left before the next plain-INSERT attempt (`insertIntoEmptyRange`).
    let insertPause = Countdown()

    var targetName: TableName { sql.table.target.name }

    /// Applies `chunk` and records the checkpoint (`chunkNumber`, where the next chunk starts) in the
    /// same transaction; `dryRun` does the same work and rolls it back. `beforeCheckpoint` runs last,
    /// just before the checkpoint is written and the transaction commits: a writer beside another one
    /// waits there for the previous chunk's commit (and fails when that failed), so checkpoints
    /// commit in key order and `next_key` never skips a chunk that did not commit.
    func write(_ chunk: SourceChunk, chunkNumber: Int64, dryRun: Bool, beforeCheckpoint: () throws -> Void = {}) throws -> ChunkOutcome {
        phases.reset()
        do {
            return try inTransaction(dryRun: dryRun) {
                var outcome = try apply(chunk, rows: Array(0..<chunk.rowCount), tombstones: true, rangedChunk: chunkNumber, beforeFence: beforeCheckpoint)
                try finish(chunk, chunkNumber: chunkNumber, outcome: &outcome, dryRun: dryRun, beforeCheckpoint: beforeCheckpoint)
                return outcome
            }
        } catch {
            guard case .poison = ErrorClassifier.classify(error) else { throw error }
            logger.info("chunk refused by the target, isolating the rows it refuses", metadata: ["table": "\(targetName)", "error": "\(error)"])
            return try inTransaction(dryRun: dryRun) {
                var outcome = ChunkOutcome()
                try isolate(chunk, rows: Array(0..<chunk.rowCount)[...], outcome: &outcome)
                outcome.counts.rowsRead = Int64(chunk.rowCount)
                try stageTombstonesAlone(chunk, outcome: &outcome)
                try finish(chunk, chunkNumber: chunkNumber, outcome: &outcome, dryRun: dryRun, beforeCheckpoint: beforeCheckpoint)
                return outcome
            }
        }
    }

    /// A chunk's transaction commits with `synchronous_commit = off`: the commit returns before its
    /// WAL is flushed. Safe for exactness (docs/BACKFILL.md, "Checkpoints"): the chunk's rows and its
    /// checkpoint are one transaction, so a server crash that loses the commit loses both and the
    /// rerun redoes the chunk; and WAL is flushed in order, so any later durable commit (the
    /// stream's, the next chunk's) makes this one durable first.
    private func inTransaction<T>(dryRun: Bool, _ body: () throws -> T) throws -> T {
        try conn.execute((dryRun ? "BEGIN; " : "BEGIN; SET LOCAL synchronous_commit = off; ") + Self.planSettings)
        do {
            let value = try body()
            try conn.execute(dryRun ? "ROLLBACK" : "COMMIT")
            phases.mark("commit")
            return value
        } catch {
            if conn.isHealthy { _ = try? conn.execute("ROLLBACK") }
            throw error
        }
    }

    /// The chunk's statements read the target table only through its primary key. Without this,
    /// a target that is empty or nearly so when a statement is planned (a fresh table, one VACUUMed
    /// while empty — its statistics then say so — or the first chunks) gets a nested loop over the
    /// stage with a sequential scan of the target inside: cheap for the table as planned, but each
    /// rescan reads every page written since, the statement's own inserts included, so one chunk of
    /// n rows cost O(n²) — 96 s for the first 50,000-row chunk, 4 s for a 10,000-row one. With
    /// sequential scans priced out, the target is probed by key (a nested loop over its index) or
    /// read once (a hash join over an index scan): linear in the chunk whatever the statistics say.
    /// The stage has no index, so its one sequential scan per statement stays (every plan pays the
    /// same penalty for it). JIT is off because that penalty would otherwise push every statement
    /// over `jit_above_cost` and compile each one. `BackfillPlanTests` counts the target's scans.
    static let planSettings = "SET LOCAL enable_seqscan = off; SET LOCAL jit = off"

    // Commit order between writers. Chunk k's writer holds the session advisory lock (table, k)
    // from before its transaction until after its result is known; chunk k + 1's writer, ready to
    // write its checkpoint, takes that lock shared inside its transaction, so it waits until chunk k
    // committed or rolled back. The wait is a lock inside PostgreSQL on purpose: when a third
    // session closes a cycle (the stream's batch holding a row chunk k needs while waiting for one
    // chunk k + 1 holds), the deadlock detector sees it and breaks it (40P01, which is transient:
    // the backfill resumes from its checkpoint, the applier retries). A wait in cdcr would hang.

    /// Takes chunk `number`'s turn lock (never contended: one writer per chunk).
    func holdTurn(_ number: Int64) throws {
        try conn.query("SELECT pg_advisory_lock(hashtext($1), $2::int)", [targetName.description, String(number % Int64(Int32.max))])
    }

    /// Waits inside the transaction until chunk `number`'s writer released its turn lock.
    func awaitTurn(after number: Int64) throws {
        try conn.query("SELECT pg_advisory_xact_lock_shared(hashtext($1), $2::int)", [targetName.description, String(number % Int64(Int32.max))])
    }

    func releaseTurn(_ number: Int64) {
        guard conn.isHealthy else { return }
        _ = try? conn.query("SELECT pg_advisory_unlock(hashtext($1), $2::int)", [targetName.description, String(number % Int64(Int32.max))])
    }

    /// The ledger's entry for the chunk and the checkpoint.
    private func finish(_ chunk: SourceChunk, chunkNumber: Int64, outcome: inout ChunkOutcome, dryRun: Bool, beforeCheckpoint: () throws -> Void) throws {
        outcome.counts.chunks = 1
        let id = BookkeepingKey.stored("backfill:\(targetName):\(runID):\(chunkNumber)")
        let ledger = ("INSERT INTO cdcr.ledger (change_id, table_name, outcome) VALUES ($1, $2, 'a') ON CONFLICT (change_id) DO NOTHING",
                      [id, targetName.description] as [String?])
        if outcome.ranged {
            // A ranged insert: the savepoint's release, the ledger and the checkpoint in one round trip.
            let checkpoint = dryRun ? [] : [BackfillState.advanceStatement(targetName, nextKey: chunk.upper, done: chunk.upper == nil, delta: outcome.counts)]
            try conn.pipeline([("RELEASE SAVEPOINT cdcr_insert", []), ledger] + checkpoint)
            phases.mark("ledger_checkpoint")
            return
        }
        try conn.query(ledger.0, ledger.1)
        phases.mark("ledger")
        try beforeCheckpoint()
        phases.mark("wait")
        if !dryRun {
            try BackfillState.advance(targetName, nextKey: chunk.upper, done: chunk.upper == nil, delta: outcome.counts, on: conn)
        }
    }

    /// Stages `rows` of the chunk (and, with `tombstones`, deletes for target keys in the chunk's
    /// range that the chunk lacks), guards and merges them.
    /// `rangedChunk`: the chunk's number when it may record a range; `beforeFence` runs before a
    /// ranged insert takes the fence (the wait for the previous chunk).
    private func apply(_ chunk: SourceChunk, rows: [Int], tombstones: Bool, rangedChunk: Int64? = nil,
                       beforeFence: () throws -> Void = {}) throws -> ChunkOutcome {
        var outcome = ChunkOutcome()
        outcome.counts.rowsRead = Int64(rows.count)
        // Straight into the table only without target-only columns (the MERGE sets them NULL, a
        // COPY would give them their defaults); else the plain insert goes through the stage.
        let direct = sql.table.targetOnly.isEmpty
        var plain = false
        if tombstones && insertPause.tick() {
            if useRanges && direct, let number = rangedChunk {
                try beforeFence()
                if try insertRanged(chunk, number: number, outcome: &outcome) { return outcome }
            } else {
                plain = try targetRangeIsEmpty(chunk)
            }
        }
        if plain && direct {
            if try insertIntoEmptyRange(chunk, direct: true, outcome: &outcome) { return outcome }
            plain = false
        }
        try conn.execute(sql.stage.prepareStage)
        phases.mark("prepare")
        try conn.copyIn(sql.stageCopy, data: chunk.stageData(rows, keep: sql.stageKeep))
        phases.mark("copy")
        if plain, try insertIntoEmptyRange(chunk, direct: false, outcome: &outcome) { return outcome }
        if tombstones && sql.predicate == nil { try insertTombstones(chunk) }
        phases.mark("tombstones")
        try guardAndMerge(&outcome)
        return outcome
    }

    private func insertTombstones(_ chunk: SourceChunk) throws {
        try conn.query(sql.stageTombstones(hasLower: chunk.lower != nil, hasUpper: chunk.upper != nil),
                       [String(chunk.version), String(chunk.rowCount)] + chunk.bounds)
    }

    private func guardAndMerge(_ outcome: inout ChunkOutcome) throws {
        let losers = try conn.query(sql.stage.guardSQL).rows.compactMap { $0[0] }
        phases.mark("guard")
        let lost = pgArrayLiteral(losers)
        let won = try conn.query(sql.winnerCounts, [lost]).rows[0].map { Int64($0 ?? "0") ?? 0 }
        phases.mark("count")
        if !losers.isEmpty {
            let l = try conn.query(sql.loserCounts, [lost]).rows[0].map { Int64($0 ?? "0") ?? 0 }
            outcome.counts.skipped += l[0]
        }
        try conn.query(sql.table.targetOnly.isEmpty ? sql.stage.merge : sql.stage.mergeKeeping)
        phases.mark("merge")
        outcome.counts.updated += won[0]
        outcome.counts.inserted += won[1] - won[0]
        outcome.counts.deleted += won[2]
    }

    /// Applies `rows` under a savepoint; when the target refuses them, halves them down to single
    /// rows, which are counted failed. k refused rows in a chunk of n cost O(k log n) attempts.
    private func isolate(_ chunk: SourceChunk, rows: ArraySlice<Int>, outcome: inout ChunkOutcome) throws {
        guard !rows.isEmpty else { return }
        try conn.execute("SAVEPOINT cdcr_backfill")
        do {
            let part = try apply(chunk, rows: Array(rows), tombstones: false)
            try conn.execute("RELEASE SAVEPOINT cdcr_backfill")
            outcome.counts = outcome.counts + part.counts
            outcome.counts.rowsRead -= part.counts.rowsRead  // counted once by the caller
        } catch {
            guard case let .poison(p) = ErrorClassifier.classify(error) else { throw error }
            try conn.execute("ROLLBACK TO SAVEPOINT cdcr_backfill; RELEASE SAVEPOINT cdcr_backfill")
            if rows.count == 1 {
                outcome.counts.failed += 1
                if outcome.failedKeys.count < 100 { outcome.failedKeys.append((chunk.key(rows.first!, positions: sql.table.keyPositions), p.message)) }
                return
            }
            let mid = rows.startIndex + rows.count / 2
            try isolate(chunk, rows: rows[rows.startIndex..<mid], outcome: &outcome)
            try isolate(chunk, rows: rows[mid...], outcome: &outcome)
        }
    }

    /// After isolating: the chunk's keys staged as type-check-free markers ('x', which the guard and
    /// the MERGE skip) so the tombstones spare them, then the tombstones alone.
    private func stageTombstonesAlone(_ chunk: SourceChunk, outcome: inout ChunkOutcome) throws {
        guard sql.predicate == nil else { return }
        try conn.execute(sql.stage.prepareStage)
        var data: [UInt8] = []
        for i in 0..<chunk.rowCount {
            CopyText.appendRow([String(i + 1), "x"] + chunk.key(i, positions: sql.table.keyPositions).map(Optional.some), to: &data)
        }
        let keys = sql.table.keyNames.map(quoteIdentifier).joined(separator: ", ")
        try conn.copyIn("COPY \(sql.stage.stage) (_cdcr_idx, _cdcr_op, \(keys)) FROM STDIN", data: data)
        try insertTombstones(chunk)
        var part = ChunkOutcome()
        try guardAndMerge(&part)
        outcome.counts.deleted += part.counts.deleted
    }
}

/// A count of chunks to skip something for. Used by one thread at a time (the chunk's writer).
final class Countdown: @unchecked Sendable {
    // @unchecked Sendable: only the writer's thread touches it.
    private var left = 0

    func start(_ n: Int) { left = n }

    /// True when the countdown is over; otherwise counts one down.
    func tick() -> Bool {
        guard left > 0 else { return true }
        left -= 1
        return false
    }
}

/// Durations of named steps, for a debug line. Used by one thread at a time (the chunk's writer).
final class PhaseClock: @unchecked Sendable {
    // @unchecked Sendable: only the writer's thread touches it, between chunks.
    private var start = ContinuousClock.now
    private var phases: [(String, Duration)] = []

    func reset() {
        phases.removeAll(keepingCapacity: true)
        start = .now
    }

    func mark(_ name: String) {
        let now = ContinuousClock.now
        phases.append((name, now - start))
        start = now
    }

    func describe() -> String { BatchApplier.describe(phases) }
}
