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
                let steps: [PGStep] = [.sql("SAVEPOINT cdcr_insert"), .copyIn(sql.tableCopy, data: chunk.tableData(skipping: 4))]
                inserted = try conn.script(steps)[1].affected
                phases.mark("copy_table")
                try conn.pipeline([(sql.versionsOfRange(hasLower: chunk.lower != nil, hasUpper: chunk.upper != nil), [String(chunk.version)] + chunk.bounds),
                                   ("RELEASE SAVEPOINT cdcr_insert", [])])
                phases.mark("versions")
            } else {
                inserted = try conn.script([.sql("SAVEPOINT cdcr_insert"), .sql(sql.stage.insertNew), .sql("RELEASE SAVEPOINT cdcr_insert")])[1].affected
                phases.mark("insert")
            }
        } catch {
            // Any other failure is the statement's own error, classified as if it ran alone.
            guard error.error.sqlState == "23505" else { throw error.error }
            try conn.execute("ROLLBACK TO SAVEPOINT cdcr_insert; RELEASE SAVEPOINT cdcr_insert")
            insertPause.start(Self.insertPauseChunks)
            phases.mark("insert_refused")
            return false
        }
        outcome.counts.inserted += Int64(inserted)
        return true
    }

    static let insertPauseChunks = 10
}

extension SourceChunk {
    /// The rows without their first `n` fields (the stage's own columns): the copied columns alone,
    /// as a COPY into the table takes them.
    func tableData(skipping n: Int) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(data.count)
        data.withUnsafeBufferPointer { bytes in
            for i in 0..<rowCount {
                let range = row(i)
                var start = range.lowerBound
                var tabs = 0
                while tabs < n, start < range.upperBound {
                    if bytes[start] == UInt8(ascii: "\t") { tabs += 1 }
                    start += 1
                }
                out.append(contentsOf: bytes[start..<range.upperBound])
            }
        }
        return out
    }
}
