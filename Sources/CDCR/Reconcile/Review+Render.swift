import CDCCore
import Foundation

extension Discrepancy {
    /// The item as a JSON object (`review list --json`, `GET /review`); stored values as JSON.
    public var jsonValue: JSONValue {
        func s(_ v: String?) -> JSONValue { v.map(JSONValue.string) ?? .null }
        func raw(_ v: String?) -> JSONValue { v.flatMap { try? JSONParser.parse($0) } ?? .null }
        return .object([
            ("id", .number(String(id))), ("table", .string(table.description)), ("target_table", .string(targetTable.description)),
            ("kind", .string(kind.rawValue)), ("key", raw(rowKeyJSON)), ("key_text", .string(keyText)),
            ("columns", .array(columns.map(JSONValue.string))), ("status", .string(resolution.rawValue)),
            ("source_values", raw(sourceValuesJSON)), ("target_values", raw(targetValuesJSON)), ("digest", s(digest)),
            ("policy", s(policy)), ("reason", s(reason)), ("times_seen", .number(String(timesSeen))),
            ("first_run_id", .string(firstRunID)), ("last_run_id", .string(lastRunID)),
            ("first_seen_at", .string(firstSeenAt)), ("last_seen_at", .string(lastSeenAt)), ("resolved_at", s(resolvedAt)),
            ("decided_by", s(decidedBy)), ("decided_at", s(decidedAt)), ("repair_run_id", s(repairRunID)), ("applied_at", s(appliedAt)),
        ])
    }

    /// `id=7` from the stored key object, else the key text.
    public var keyDescription: String {
        guard let members = rowKeyJSON.flatMap({ try? JSONParser.parse($0) })?.objectMembers else { return keyText }
        return members.map { "\($0.0)=\($0.1.stringValue ?? $0.1.serialized)" }.joined(separator: ", ")
    }
}

extension ReviewDetail {
    public var jsonValue: JSONValue {
        func b(_ v: Bool?) -> JSONValue { v.map(JSONValue.bool) ?? .null }
        func s(_ v: String?) -> JSONValue { v.map(JSONValue.string) ?? .null }
        return .object([
            ("item", item.jsonValue), ("values", .string(values)), ("currently", s(currently)),
            ("source_row", b(sourceRowExists)), ("target_row", b(targetRowExists)),
            ("cells", .array(cells.map { c in
                .object([("column", .string(c.column)), ("source", s(c.source)), ("target", s(c.target)),
                         ("differs", .bool(c.differs)), ("key", .bool(c.isKey))])
            })),
            ("notes", .array(notes.map(JSONValue.string))),
        ])
    }

    /// Source and target side by side; `*` marks a differing column.
    public var text: String {
        var out = "item \(item.id): \(item.table) \(item.kind.rawValue) \(item.keyDescription) — \(item.resolution.rawValue)"
        if let by = item.decidedBy { out += " by \(by)" }
        if let reason = item.reason { out += " (\(reason))" }
        out += "\nfirst seen \(item.firstSeenAt) by run \(item.firstRunID), seen \(item.timesSeen)×, last \(item.lastSeenAt)"
        if let run = item.repairRunID { out += "\nrepair run \(run)\(item.appliedAt.map { ", applied \($0)" } ?? "")" }
        switch values {
        case "live": out += "\nvalues re-read now: \(currently == "equal" ? "equal on both sides now" : "currently \(currently ?? "?")")"
        case "stored": out += "\nvalues as stored by the run (the rows could not be re-read)"
        default: out += "\nno row values"
        }
        if !cells.isEmpty {
            let absent = "(no row)"
            let rows = cells.map { c in
                [(c.differs ? "* " : "  ") + c.column + (c.isKey ? " (key)" : ""),
                 sourceRowExists == false ? absent : (c.source ?? "NULL"), targetRowExists == false ? absent : (c.target ?? "NULL")]
            }
            let header = ["  column", "source", "target"]
            let widths = (0..<3).map { i in min(60, (rows + [header]).map { $0[i].count }.max() ?? 0) }
            func line(_ r: [String]) -> String {
                zip(r, widths).map { v, w in v.count > w ? String(v.prefix(w - 1)) + "…" : v.padding(toLength: w, withPad: " ", startingAt: 0) }
                    .joined(separator: "  ").replacingOccurrences(of: " +$", with: "", options: .regularExpression)
            }
            out += "\n" + ([header] + rows).map(line).joined(separator: "\n")
        }
        for note in notes { out += "\nnote: \(note)" }
        return out
    }
}

extension ReviewApplyResult {
    public var jsonValue: JSONValue {
        .object([
            ("run_id", .string(runID)), ("applied", .number(String(applied))), ("pending", .number(String(pending))),
            ("items", .array(items.map { i in
                var members: [(String, JSONValue)] = [("id", .number(String(i.id))), ("table", .string(i.table.description)),
                                                      ("key_text", .string(i.keyText)), ("outcome", .string(i.outcome.label))]
                switch i.outcome {
                case let .repaired(action): members.append(("action", .string(action)))
                case let .failed(reason): members.append(("reason", .string(reason)))
                default: break
                }
                return .object(members)
            })),
        ])
    }

    public var text: String {
        guard !items.isEmpty else { return "no approved item waits to be applied" }
        var lines = items.map { i -> String in
            var line = "item \(i.id) \(i.table) \(i.keyText): \(i.outcome.label.replacingOccurrences(of: "_", with: " "))"
            switch i.outcome {
            case let .repaired(action): line += " (\(action))"
            case let .failed(reason): line += ": \(reason)"
            case .keptExtra: line += " (review apply --allow-delete deletes it)"
            case .alreadyEqual: break
            }
            return line
        }
        lines.append("run \(runID): \(applied) applied, \(pending) still approved and not applied; undo with cdcr repair-undo \(runID) --execute")
        return lines.joined(separator: "\n")
    }
}
