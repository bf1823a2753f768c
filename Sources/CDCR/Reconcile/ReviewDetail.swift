import CDCCore
import CDCPostgres
import Foundation

/// One review item with its row on both sides, column by column (`cdcr review show`, `GET /review/{id}`).
public struct ReviewDetail: Sendable {
    /// One column's values on both sides.
    public struct Cell: Sendable, Equatable {
        public let column: String
        public let source: String?
        public let target: String?
        public let differs: Bool
        public let isKey: Bool
    }

    public let item: Discrepancy
    /// `live`: both sides re-read now (as the verifier compares them: canonical texts); `stored`: the
    /// values the run kept, because a live read was not possible (the note says why) or the item is
    /// not a row-level one; `none`: neither.
    public var values: String = "none"
    public var sourceRowExists: Bool?
    public var targetRowExists: Bool?
    public var cells: [Cell] = []
    /// What differs now: `missing`, `extra`, `different`, or `equal` (the row caught up); nil unless live.
    public var currently: String?
    public var notes: [String] = []

    /// Reads the item and, for row-level kinds, its row on both sides now (`run` nil: stored values only).
    public static func load(_ id: Int64, run: VerifyRun?, target: PGConnection) throws -> ReviewDetail {
        guard let item = try ReconcileStore.get(id, on: target) else { throw ReviewError(.notFound, "no review item \(id)") }
        var detail = ReviewDetail(item: item)
        if let run, item.kind.isRowLevel, let keyJSON = item.rowKeyJSON {
            do {
                try detail.readLive(run: run, keyJSON: keyJSON)
                return detail
            } catch {
                detail.notes.append("could not re-read the row: \(error)")
            }
        } else if run == nil && item.kind.isRowLevel {
            detail.notes.append("no source database configured: stored values shown")
        }
        detail.readStored()
        return detail
    }

    mutating func readLive(run: VerifyRun, keyJSON: String) throws {
        let pair = try TablePair.resolve(source: item.table, target: item.targetTable, only: nil, sourceConn: run.source, targetConn: run.target)
        let key = try KeyRepair.keyTexts(fromJSON: keyJSON, pair: pair)
        let s = VerifySide(.source, conn: run.source, pair: pair, predicate: nil, floatTolerance: nil)
        let t = VerifySide(.target, conn: run.target, pair: pair, predicate: nil, floatTolerance: nil)
        let (rs, rt) = (try s.rows([key]).first?.value, try t.rows([key]).first?.value)
        if rs == nil && rt == nil {
            notes.append("the row is gone from both sides: stored values shown")
            readStored()
            return
        }
        values = "live"
        sourceRowExists = rs != nil
        targetRowExists = rt != nil
        let difference = RowComparator(columns: pair.columns, floatTolerance: nil).compare(source: rs, target: rt)
        var differing = Set<String>()
        switch difference {
        case nil: currently = "equal"
        case .missing?: currently = "missing"
        case .extra?: currently = "extra"
        case let .different(columns)?:
            currently = "different"
            differing = Set(columns)
        }
        for (i, c) in pair.columns.enumerated() {
            let oneSided = (rs == nil) != (rt == nil)
            cells.append(Cell(column: c.name, source: rs?[i], target: rt?[i], differs: oneSided || differing.contains(c.name), isKey: i < pair.keyCount))
        }
        notes += pair.notes
    }

    /// The values the run stored (JSON objects of column → value), side by side.
    mutating func readStored() {
        func object(_ json: String?) -> [(String, JSONValue)]? { json.flatMap { try? JSONParser.parse($0) }?.objectMembers }
        let s = object(item.sourceValuesJSON), t = object(item.targetValuesJSON)
        guard s != nil || t != nil else {
            if let digest = item.digest { notes.append(digest) }
            return
        }
        values = "stored"
        // A missing row was never in the target, an extra one never in the source.
        sourceRowExists = s != nil ? true : item.kind == .extra ? false : nil
        targetRowExists = t != nil ? true : item.kind == .missing ? false : nil
        var names: [String] = []
        for (k, _) in (s ?? []) + (t ?? []) where !names.contains(k) { names.append(k) }
        let keyNames = Set((item.rowKeyJSON.flatMap { try? JSONParser.parse($0) }?.objectMembers ?? []).map(\.0))
        func text(_ v: JSONValue?) -> String? {
            switch v {
            case nil, .null?: nil
            case let .string(x)?: x
            case let v?: v.serialized
            }
        }
        for name in names {
            let sv = s?.first { $0.0 == name }?.1, tv = t?.first { $0.0 == name }?.1
            let differs = (s == nil) != (t == nil) || item.columns.contains(name) || text(sv) != text(tv)
            cells.append(Cell(column: name, source: text(sv), target: text(tv), differs: differs, isKey: keyNames.contains(name)))
        }
    }
}
