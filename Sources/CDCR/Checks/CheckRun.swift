import CDCCore
import CDCPostgres
import Foundation
import Logging

/// `cdcr check`: plans the checks (the rules file's, then the defaults), refuses any that does not
/// resolve on the source before anything runs, runs them one after another (both sides of each at
/// once, on two threads), and stores the run and its results in the target
/// (`cdcr.check_runs`, `cdcr.check_results`).
public final class CheckRun {
    /// The two read sessions (the target's also stores the run).
    public let source: PGConnection
    public let target: PGConnection
    let settings: Settings
    let rules: CheckRules
    let logger: Logger
    /// Blocks per part of a split aggregate statement (`AggregateCheck.statement`); tests lower it.
    public var blocksPerPart = AggregateCheck.defaultBlocksPerPart
    /// The checks that will run, in order.
    public private(set) var planned: [CheckRule] = []

    /// Connects and plans. `tables` are the compared source tables (schema and default references
    /// checks); `only` restricts the run to the named checks, each of which must exist.
    public init(settings: Settings, rules: CheckRules, tables: [TableName], only: [String], logger: Logger = Logger(label: "cdcr.check")) throws {
        guard let sourceURL = settings.sourceURL else { throw ConfigError("--source", "required (or CDCR_SOURCE_URL, or source_url in the config)") }
        guard let targetURL = settings.targetURL else { throw ConfigError("--target", "required (or CDCR_TARGET_URL, or target_url in the config)") }
        self.settings = settings
        self.rules = rules
        self.logger = logger
        let (s, t) = try concurrently({ try CheckRun.open(sourceURL, name: "cdcr-check") }, { try CheckRun.open(targetURL, name: "cdcr-check") })
        source = s
        target = t
        var checks = rules.checks
        let names = Set(checks.map(\.name))
        let hasSchema = checks.contains { if case .schema = $0.kind { true } else { false } }
        if rules.defaultSchema && !hasSchema && !tables.isEmpty && !names.contains("schema") {
            checks.insert(CheckRule(name: "schema", kind: .schema(SchemaRule(tables: nil))), at: 0)
        }
        if rules.defaultReferences {
            for fk in try ReferencesCheck.declared(on: source, tables: tables) where !names.contains(fk.name) { checks.append(fk) }
        }
        if !only.isEmpty {
            let known = Set(checks.map(\.name))
            for name in only where !known.contains(name) {
                throw ConfigError("--only", "no check named \"\(name)\" (checks: \(checks.map(\.name).joined(separator: ", ")))")
            }
            checks = checks.filter { only.contains($0.name) }
        }
        self.tables = tables
        planned = checks
    }

    let tables: [TableName]

    /// Closes both sessions.
    public func close() {
        source.close()
        target.close()
    }

    static func open(_ url: String, name: String) throws -> PGConnection {
        let conn = try TargetConnection.open(url, applicationName: name)
        try conn.execute("SET jit = off")
        return conn
    }

    var sourceSession: CheckSession { CheckSession(side: .source, conn: source, timeoutMs: rules.statementTimeoutMs) }
    var targetSession: CheckSession { CheckSession(side: .target, conn: target, timeoutMs: rules.statementTimeoutMs) }

    /// Refuses (as a `ConfigError`, exit 64) any check whose tables, columns or expressions do
    /// not resolve and plan on the source. Nothing has run on the target and nothing is stored yet.
    public func validate() throws(ConfigError) {
        if planned.isEmpty { throw ConfigError("--rules", "no check to run: give a rules file with checks, or compared tables (--table, verify.tables, tables) for the schema check") }
        for rule in planned {
            switch rule.kind {
            case let .aggregate(a): try AggregateCheck(name: rule.name, rule: a, targetTable: settings.targetTable(for: a.table)).validate(on: sourceSession)
            case let .query(q): try QueryCheck(name: rule.name, rule: q).validate(on: sourceSession)
            case let .references(r): try references(rule.name, r).validate(on: sourceSession)
            case let .freshness(f): try FreshnessCheck(name: rule.name, rule: f, targetTable: settings.targetTable(for: f.table)).validate(on: sourceSession)
            case let .schema(s):
                if (s.tables ?? tables).isEmpty { throw ConfigError("check \"\(rule.name)\"", "no tables: give tables, or compared tables (--table, verify.tables, tables)") }
            }
        }
    }

    func references(_ name: String, _ r: ReferencesRule) -> ReferencesCheck {
        ReferencesCheck(name: name, rule: r, targetChild: settings.targetTable(for: r.child), targetParent: settings.targetTable(for: r.parent))
    }

    /// Runs every planned check; a check that cannot run is an ERROR result, the others still run.
    public func runAll(progress: (String) -> Void = { _ in }) -> CheckReport {
        let started = ContinuousClock.now
        var report = CheckReport()
        for rule in planned {
            progress("\(rule.name) (\(rule.kind.label))")
            let t0 = ContinuousClock.now
            var result = run(rule)
            result.duration = ContinuousClock.now - t0
            logger.debug("check done", metadata: ["check": "\(rule.name)", "status": "\(result.status.rawValue)"])
            report.results.append(result)
        }
        report.duration = ContinuousClock.now - started
        return report
    }

    func run(_ rule: CheckRule) -> CheckResult {
        let (s, t) = (sourceSession, targetSession)
        switch rule.kind {
        case let .aggregate(a):
            var check = AggregateCheck(name: rule.name, rule: a, targetTable: settings.targetTable(for: a.table))
            check.blocksPerPart = blocksPerPart
            return check.run(source: s, target: t)
        case let .query(q): return QueryCheck(name: rule.name, rule: q).run(source: s, target: t)
        case let .references(r): return references(rule.name, r).run(source: s, target: t)
        case let .freshness(f): return FreshnessCheck(name: rule.name, rule: f, targetTable: settings.targetTable(for: f.table)).run(source: s, target: t)
        case let .schema(sr):
            let names = sr.tables ?? tables
            return SchemaCheck(name: rule.name, tables: names.map { ($0, settings.targetTable(for: $0)) }).run(source: s, target: t)
        }
    }
}
