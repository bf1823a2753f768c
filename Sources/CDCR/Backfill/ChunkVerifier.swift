import CDCCore
import CDCPostgres
import Foundation
import Logging

/// Compares each committed chunk's key range between source and target with the reconciler's range
/// checksum (count and hash sum, both databases at once), and lists the differing keys of a range
/// that differs. The live stream explains most such differences: the source moved on since the
/// chunk's snapshot and the stream has not delivered that yet. So differing keys are re-compared
/// after a settle delay; only those still differing after the last round are reported.
final class ChunkVerifier {
    private let source: VerifySide
    private let target: VerifySide
    private let rows: TableVerifier
    private let logger: Logger
    /// Differing keys not settled yet, per chunk number.
    private var pending: [Int64: [KeyTexts]] = [:]
    /// Keys kept at most while waiting to settle; beyond, a settle round runs at once.
    let maxPending = 20_000

    /// `pending`: keys left unsettled by an earlier connection attempt of the same run.
    init(pair: TablePair, predicate: String?, sourceConn: PGConnection, targetConn: PGConnection, logger: Logger,
         pending: [Int64: [KeyTexts]] = [:]) {
        self.pending = pending
        source = VerifySide(.source, conn: sourceConn, pair: pair, predicate: predicate, floatTolerance: nil)
        target = VerifySide(.target, conn: targetConn, pair: pair, predicate: predicate, floatTolerance: nil)
        rows = TableVerifier(pair: pair, source: source, target: target, floatTolerance: nil, logger: logger)
        self.logger = logger
    }

    var pendingKeys: Int { pending.values.reduce(0) { $0 + $1.count } }

    /// The unsettled keys per chunk, to carry over a reconnect.
    var pendingChunks: [Int64: [KeyTexts]] { pending }

    /// Checks chunk `number`'s range; true when both sides are equal now. Otherwise its differing
    /// keys wait for `settle`.
    func check(_ range: KeyRange, chunk number: Int64) throws -> Bool {
        let (source, target) = (self.source, self.target)
        let (cs, ct) = try concurrently({ try source.checksums([range]) }, { try target.checksums([range]) })
        if cs == ct { return true }
        let (hs, ht) = try concurrently({ try source.rowHashes([range]) }, { try target.rowHashes([range]) })
        let found = differingKeys(source: hs, target: ht)
        let keys = found.missing + found.extra + found.changed
        if keys.isEmpty { return true }  // changed back between the two reads
        logger.debug("chunk range differs, re-checked later", metadata: ["range": "\(range)", "keys": "\(keys.count)"])
        pending[number] = keys
        return false
    }

    /// Re-compares the pending keys (fresh reads on both sides) up to `rounds` times, `seconds` apart,
    /// stopping early once none differ. Returns the chunks that became equal and the keys still
    /// differing, with what differs.
    func settle(rounds: Int, seconds: Double, stop: StopSignal?) throws -> (verifiedChunks: Int64, differing: [(key: KeyTexts, difference: RowDifference)]) {
        var verified: Int64 = 0
        var last: [KeyTexts: RowDifference] = [:]
        for _ in 0..<max(1, rounds) {
            if pending.isEmpty { break }
            if seconds > 0 {
                if let stop { stop.sleep(ms: Int(seconds * 1000)) } else { Thread.sleep(forTimeInterval: seconds) }
            }
            let all = pending.values.flatMap { $0 }
            var still: [KeyTexts: RowDifference] = [:]
            for d in try rows.compareRows(all) { still[d.key] = d.difference }
            last = still
            for (chunk, keys) in pending {
                let left = keys.filter { still[$0] != nil }
                if left.isEmpty {
                    pending[chunk] = nil
                    verified += 1
                } else {
                    pending[chunk] = left
                }
            }
            if stop?.isStopped == true { break }  // SIGTERM: report what is left now
        }
        let differing = pending.values.flatMap { $0 }.compactMap { k in last[k].map { (key: k, difference: $0) } }
        return (verified, differing.sorted { keyPrecedes($0.key, $1.key) })
    }
}
