import CDCCore
import CDCPostgres

extension ChunkWriter {
    /// Whether the target holds no row in the chunk's key range (an index probe).
    func targetRangeIsEmpty(_ chunk: SourceChunk) throws -> Bool {
        let occupied = try conn.query(sql.targetRangeOccupied(hasLower: chunk.lower != nil, hasUpper: chunk.upper != nil), chunk.bounds).scalar == "t"
        phases.mark("range")
        return !occupied
    }

    /// A chunk whose key range the target holds no row of — a fresh target, so the usual case — goes
    /// in as plain inserts: its rows and their `row_versions` entries, without the guard's upsert,
    /// the counts, the tombstones or the MERGE's join. That is exactly what the guarded path does
    /// when no staged key has a version entry or a row (every row wins and is inserted; nothing in
    /// the range to delete). `direct`: the rows are COPYed straight into the table (no stage: the
    /// table has no target-only column, which the MERGE would set NULL and a COPY would default)
    /// and the entries are inserted for the keys the range then holds — only the copied ones,
    /// since anything else that came into the range (the stream's rows) brought an entry of its
    /// own, which refuses ours. Otherwise both come out of the stage (`StageStatements.insertNew`).
    ///
    /// When a key has an entry or a row after all — a stream change or a tombstone got there
    /// first, or a row came in after the probe — a unique index refuses the insert (23505, after
    /// waiting for a writer still holding the key, as the guard would): rolled back to the
    /// savepoint, the chunk goes the guarded way, and this writer keeps to it for the next
    /// `insertPauseChunks` chunks. False when the chunk still needs it.
    func insertIntoEmptyRange(_ chunk: SourceChunk, direct: Bool, outcome: inout ChunkOutcome) throws -> Bool {
        let inserted: Int
        do {
            if direct {
                let steps: [PGStep] = [.sql("SAVEPOINT cdcr_insert"), .copyIn(sql.tableCopy, data: chunk.data)]
                inserted = try conn.script(steps)[1].affected
                phases.mark("copy_table")
                try conn.pipeline([(sql.versionsOfRange(hasLower: chunk.lower != nil, hasUpper: chunk.upper != nil), [String(chunk.version)] + chunk.bounds),
                                   ("RELEASE SAVEPOINT cdcr_insert", [])])
                phases.mark("versions")
            } else {
                // insertNew returns the rows it left out, at or below an older run's range floor.
                let losers = try conn.script([.sql("SAVEPOINT cdcr_insert"), .sql(sql.stage.insertNew), .sql("RELEASE SAVEPOINT cdcr_insert")])[1].rows.count
                inserted = chunk.rowCount - losers
                outcome.counts.skipped += Int64(losers)
                phases.mark("insert")
            }
        } catch {
            // Any other failure is the statement's own error, classified as if it ran alone.
            guard error.error.sqlState == "23505" else { throw error.error }
            return try refuseInsert("insert_refused", pause: true)
        }
        outcome.counts.inserted += Int64(inserted)
        return true
    }

    static let insertPauseChunks = 10

    /// A chunk into a key range the target holds nothing of, recorded as one range watermark
    /// (`RangeFloors`) instead of a `row_versions` entry per row: the rows are COPYed straight into
    /// the table and `cdcr.backfill_ranges` gets `[lower, upper)` with the chunk's version W. The
    /// caller has waited for the previous chunk's result already, so holding the fence never waits
    /// on another chunk. Under the fence, exclusive from here to the commit, no applying transaction
    /// of the table is in flight, so what is read here is all there is:
    /// - the range must hold no row (else the guarded way: tombstones, the guard, the MERGE);
    /// - no copied key may have a version entry (a tombstone, or a change the stream applied and then
    ///   deleted): that entry may be newer than the copy, and only the guard compares it. Keys of the
    ///   range the copy lacks may have one: the guard reads the greater of entry and floor.
    /// A refusal (a row or an entry after all, a unique violation) rolls back to the savepoint, which
    /// also lets go of the fence, and the chunk goes the guarded way; false then. On success the
    /// savepoint stays open: `finish` releases it in the pipeline with the ledger and the checkpoint.
    func insertRanged(_ chunk: SourceChunk, number: Int64, outcome: inout ChunkOutcome) throws -> Bool {
        let (hasLower, hasUpper) = (chunk.lower != nil, chunk.upper != nil)
        let probe = try conn.pipeline([("SAVEPOINT cdcr_insert", []), (RangeFloors.fenceExclusive(targetName), []),
                                       (sql.targetRangeOccupied(hasLower: hasLower, hasUpper: hasUpper), chunk.bounds)])
        phases.mark("fence")
        guard probe[2].scalar == "f" else { return try refuseInsert("range_occupied", pause: false) }
        let inserted: Int
        do {
            inserted = try conn.copyIn(sql.tableCopy, data: chunk.data)
        } catch {
            guard error.sqlState == "23505" else { throw error }
            return try refuseInsert("insert_refused", pause: true)
        }
        phases.mark("copy_table")
        let recorded = try conn.query(sql.recordRangeUnlessEntries(hasLower: hasLower, hasUpper: hasUpper),
                                      [targetName.description, runID, String(number), chunk.lower.map(BackfillState.encodeKey),
                                       chunk.upper.map(BackfillState.encodeKey), String(chunk.version)] + chunk.bounds).affected
        guard recorded == 1 else { return try refuseInsert("entries_found", pause: true) }
        phases.mark("range")
        outcome.counts.inserted += Int64(inserted)
        outcome.ranged = true
        return true
    }

    /// Rolls a plain or ranged insert back to its savepoint (letting go of the fence, if taken) and,
    /// with `pause`, keeps this writer to the guarded way for `insertPauseChunks` chunks; false.
    private func refuseInsert(_ phase: String, pause: Bool) throws -> Bool {
        try conn.execute("ROLLBACK TO SAVEPOINT cdcr_insert; RELEASE SAVEPOINT cdcr_insert")
        if pause { insertPause.start(Self.insertPauseChunks) }
        phases.mark(phase)
        return false
    }
}
