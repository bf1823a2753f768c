import CDCCore
import CDCPostgres
import Foundation

extension ReconcileJobRun {
    /// Checks not about one table (query checks, a schema check over several tables) are recorded
    /// under this pseudo table.
    static let severalTables = TableName(schema: "*", name: "*")

    /// The rules of `reconcile.rules` (none without it).
    func loadRules() throws -> CheckRules {
        guard let file = settings.reconcile.rulesFile else { return CheckRules() }
        guard let data = FileManager.default.contents(atPath: file) else { throw ConfigError("reconcile.rules", "cannot read \(file)") }
        return try CheckRules.parse(String(decoding: data, as: UTF8.self), file: file)
    }

    /// Quick: the aggregate rules over the job's tables. Deep: every rule, the schema check and the
    /// declared references. A failed check is a `rule`, `orphan` (references) or `schema`
    /// discrepancy keyed by the check's name, with its numbers as `source_values` and its summary
    /// as `digest`; a check that cannot run makes the run an error and resolves nothing of its own.
    func checks(runID: String, store: PGConnection, aggregatesOnly: Bool) throws {
        var rules = try loadRules()
        let compared = Set(tables)
        if aggregatesOnly {
            rules.checks = rules.checks.filter { if case let .aggregate(a) = $0.kind { compared.contains(a.table) } else { false } }
            rules.defaultSchema = false
            rules.defaultReferences = false
            // Nothing to check: no sessions opened for it.
            if rules.checks.isEmpty { return }
        }
        if let ms = try remainingMs() { rules.statementTimeoutMs = min(rules.statementTimeoutMs, ms) }
        let run = try CheckRun(settings: settings, rules: rules, tables: tables, only: [], logger: logger)
        defer { run.close() }
        guard !run.planned.isEmpty else { return }
        try run.validate()
        let byName = Dictionary(run.planned.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        var findings: [Finding] = []
        var ran: [DiscrepancyKind: [String]] = [:]
        var checkTables = Set<TableName>()
        for rule in run.planned {
            _ = try remainingMs()
            let result = run.runAll(only: rule)
            let kind = Self.kind(of: rule)
            let table = Self.table(of: rule, compared: tables)
            checkTables.insert(settings.targetTable(for: table))
            switch result.status {
            case .error:
                errors.append("check \(rule.name) could not run: \(result.summary)")
                continue
            case .pass: break
            case .fail:
                var f = Finding(table: table, targetTable: settings.targetTable(for: table), rowKeyJSON: nil, keyText: rule.name, kind: kind)
                f.sourceValuesJSON = result.numbersJSON
                f.digest = ([result.summary] + result.examples).joined(separator: "\n")
                if case let .aggregate(a) = byName[rule.name]?.kind { f.columns = a.groupBy }
                findings.append(f)
            }
            ran[kind, default: []].append(rule.name)
        }
        let recorded = try ReconcileStore.record(findings, runID: runID, on: store)
        counts.found += findings.count
        counts.newFound += recorded.new
        // Findings of checks are reported, never repaired: they stay open (or queued under review).
        if job.repair == .review {
            try ReconcileStore.resolve(recorded.ids, as: .queued, reason: "the job's repair is review", on: store)
            counts.queued += Set(recorded.ids).count
        }
        for (kind, names) in ran { covered.append((Array(checkTables), [kind], names)) }
    }

    static func kind(of rule: CheckRule) -> DiscrepancyKind {
        switch rule.kind {
        case .references: .orphan
        case .schema: .schema
        case .aggregate, .query, .freshness: .rule
        }
    }

    static func table(of rule: CheckRule, compared: [TableName]) -> TableName {
        switch rule.kind {
        case let .aggregate(a): a.table
        case let .freshness(f): f.table
        case let .references(r): r.child
        case let .schema(s): (s.tables ?? compared).count == 1 ? (s.tables ?? compared)[0] : severalTables
        case .query: severalTables
        }
    }
}

extension CheckRun {
    /// Runs one planned check (so a budget can stop between checks).
    func runAll(only rule: CheckRule) -> CheckResult {
        let t0 = ContinuousClock.now
        var result = run(rule)
        result.duration = ContinuousClock.now - t0
        return result
    }
}
