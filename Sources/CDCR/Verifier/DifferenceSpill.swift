import CDCCore
import Foundation

/// One differing key and what differs.
public typealias ListedDifference = (key: KeyTexts, difference: RowDifference)

/// The differing keys of one table, kept in bounded memory: up to `runSize` in memory, beyond that
/// written as sorted runs to a temporary file and merged when read (an external merge sort), so
/// the reports and `repair` read them in key order whatever their number while memory holds at most
/// one run plus one read buffer per run.
///
/// Written by the one thread that verifies the table, then only read (`finish()` ends writing).
public final class DifferenceSpill: @unchecked Sendable {
    // @unchecked Sendable: appended to by a single verifier thread, read only after `finish()`;
    // reading keeps its state in local readers, never in the spill.
    let keyCount: Int
    let runSize: Int
    private var buffer: [ListedDifference] = []
    private var runs: [(offset: UInt64, length: UInt64)] = []
    private var file: FileHandle?
    private var path: String?
    private var written: UInt64 = 0
    /// Listed differences by kind.
    public private(set) var missing = 0, extra = 0, different = 0

    public init(keyCount: Int, runSize: Int = 8_192) {
        self.keyCount = keyCount
        self.runSize = max(1, runSize)
    }

    deinit {
        try? file?.close()
        if let path { unlink(path) }
    }

    /// Every difference listed.
    public var count: Int { missing + extra + different }

    /// Adds one difference (any order; reading returns key order).
    public func append(_ key: KeyTexts, _ difference: RowDifference) throws {
        switch difference {
        case .missing: missing += 1
        case .extra: extra += 1
        case .different: different += 1
        }
        buffer.append((key, difference))
        if buffer.count >= runSize { try spillBuffer() }
    }

    public func append(contentsOf items: [ListedDifference]) throws {
        for item in items { try append(item.key, item.difference) }
    }

    /// Sorts what is still in memory; with runs on disk, writes it as the last run.
    public func finish() throws {
        if runs.isEmpty {
            buffer.sort(by: Self.precedes)
        } else if !buffer.isEmpty {
            try spillBuffer()
        }
    }

    /// Key order (`keyPrecedes`), then missing, extra, different for one key.
    public static func precedes(_ a: ListedDifference, _ b: ListedDifference) -> Bool {
        if a.key != b.key { return keyPrecedes(a.key, b.key) }
        return a.difference.rank < b.difference.rank
    }

    private func spillBuffer() throws {
        buffer.sort(by: Self.precedes)
        var text = ""
        for (key, d) in buffer { text += Self.line(key, d) }
        buffer.removeAll(keepingCapacity: true)
        let data = Data(text.utf8)
        if file == nil {
            let p = NSTemporaryDirectory() + "cdcr-verify-\(getpid())-\(UInt64.random(in: 0...UInt64.max)).spill"
            guard FileManager.default.createFile(atPath: p, contents: nil, attributes: [.posixPermissions: 0o600]),
                  let h = FileHandle(forUpdatingAtPath: p) else { throw VerifyError("cannot create the difference spill file \(p) (TMPDIR)") }
            (file, path) = (h, p)
        }
        do {
            try file!.seek(toOffset: written)
            try file!.write(contentsOf: data)
        } catch {
            // A full disk must not lose differences silently: the run stops.
            throw VerifyError("cannot write the difference spill file \(path ?? ""): \(error)")
        }
        runs.append((written, UInt64(data.count)))
        written += UInt64(data.count)
    }

    /// Calls `body` with every difference in key order (missing before extra before different for one key).
    public func forEach(_ body: (ListedDifference) throws -> Void) throws {
        if runs.isEmpty {
            for item in buffer { try body(item) }
            return
        }
        // Each run is read in chunks; memory is one chunk per run.
        let chunk = max(4_096, min(65_536, 8 << 20 / max(1, runs.count)))
        var readers = runs.map { RunReader(offset: $0.offset, end: $0.offset + $0.length, chunk: chunk) }
        var heads: [ListedDifference?] = try readers.indices.map { try readers[$0].next(file!, keyCount: keyCount) }
        while true {
            var best: Int?
            for i in heads.indices {
                guard let h = heads[i] else { continue }
                if best == nil || Self.precedes(h, heads[best!]!) { best = i }
            }
            guard let b = best else { return }
            try body(heads[b]!)
            heads[b] = try readers[b].next(file!, keyCount: keyCount)
        }
    }

    /// Calls `body` with the differences in key order, `size` at a time.
    public func forEachBatch(of size: Int, _ body: ([ListedDifference]) throws -> Void) throws {
        var batch: [ListedDifference] = []
        try forEach { item in
            batch.append(item)
            if batch.count >= size {
                try body(batch)
                batch.removeAll(keepingCapacity: true)
            }
        }
        if !batch.isEmpty { try body(batch) }
    }

    /// The first `n` differences in key order.
    public func prefix(_ n: Int) -> [ListedDifference] {
        guard n > 0 else { return [] }
        if runs.isEmpty { return Array(buffer.prefix(n)) }
        var out: [ListedDifference] = []
        struct Enough: Error {}
        do {
            try forEach { item in
                out.append(item)
                if out.count >= n { throw Enough() }
            }
        } catch {}
        return out
    }

    /// A new spill with `transform` applied to every batch of `size` differences (e.g. re-checking
    /// them after `--settle`).
    public func rewritten(batch size: Int, _ transform: ([ListedDifference]) throws -> [ListedDifference]) throws -> DifferenceSpill {
        let out = DifferenceSpill(keyCount: keyCount, runSize: runSize)
        try forEachBatch(of: size) { try out.append(contentsOf: try transform($0)) }
        try out.finish()
        return out
    }

    // MARK: - Line format: kind, key texts, columns; tab-separated, \\ \t \n escaped.

    static func line(_ key: KeyTexts, _ d: RowDifference) -> String {
        var fields = [d.code] + key
        if case let .different(columns) = d { fields += columns }
        return fields.map(escape).joined(separator: "\t") + "\n"
    }

    static func escape(_ s: String) -> String {
        guard s.contains(where: { $0 == "\\" || $0 == "\t" || $0 == "\n" || $0 == "\r" }) else { return s }
        var out = ""
        for c in s.unicodeScalars {
            switch c {
            case "\\": out += "\\\\"
            case "\t": out += "\\t"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            default: out.unicodeScalars.append(c)
            }
        }
        return out
    }

    static func unescape(_ s: Substring) -> String {
        guard s.contains("\\") else { return String(s) }
        var out = ""
        var escaped = false
        for c in s.unicodeScalars {
            if escaped {
                switch c {
                case "t": out += "\t"
                case "n": out += "\n"
                case "r": out += "\r"
                default: out.unicodeScalars.append(c)
                }
                escaped = false
            } else if c == "\\" {
                escaped = true
            } else {
                out.unicodeScalars.append(c)
            }
        }
        return out
    }

    static func parse(_ line: Substring, keyCount: Int) -> ListedDifference {
        let fields = line.split(separator: "\t", omittingEmptySubsequences: false).map(unescape)
        let key = Array(fields[1...keyCount])
        switch fields[0] {
        case "m": return (key, .missing)
        case "e": return (key, .extra)
        default: return (key, .different(columns: Array(fields[(keyCount + 1)...])))
        }
    }
}

extension TableDiff {
    /// Lists the first `cap` of `found` in key order (into the spill) and counts the rest as unlisted.
    mutating func list(_ found: [ListedDifference], atMost cap: Int) throws {
        let sorted = found.sorted(by: DifferenceSpill.precedes)
        for d in sorted.dropFirst(cap).map(\.difference) {
            switch d {
            case .missing: unlistedMissing += 1
            case .extra: unlistedExtra += 1
            case .different: unlistedDifferent += 1
            }
        }
        try spill.append(contentsOf: Array(sorted.prefix(cap)))
        try spill.finish()
    }
}

/// Reads one sorted run of a spill file line by line, a chunk at a time.
private struct RunReader {
    var offset: UInt64
    let end: UInt64
    let chunk: Int
    var pending: [UInt8] = []
    var position = 0

    init(offset: UInt64, end: UInt64, chunk: Int) {
        self.offset = offset
        self.end = end
        self.chunk = chunk
    }

    mutating func next(_ file: FileHandle, keyCount: Int) throws -> ListedDifference? {
        while true {
            if let nl = pending[position...].firstIndex(of: 0x0A) {
                let line = String(decoding: pending[position..<nl], as: UTF8.self)
                position = nl + 1
                return DifferenceSpill.parse(Substring(line), keyCount: keyCount)
            }
            guard offset < end else { return nil }
            try file.seek(toOffset: offset)
            let data = try file.read(upToCount: Int(min(UInt64(chunk), end - offset))) ?? Data()
            guard !data.isEmpty else { return nil }
            offset += UInt64(data.count)
            pending.removeFirst(position)
            position = 0
            pending += data
        }
    }
}

extension RowDifference {
    /// The spill's one-letter kind.
    var code: String {
        switch self {
        case .missing: "m"
        case .extra: "e"
        case .different: "d"
        }
    }

    /// Order of kinds for one key: missing, extra, different.
    var rank: Int {
        switch self {
        case .missing: 0
        case .extra: 1
        case .different: 2
        }
    }
}
