import CDCCore

/// What a job does with the row differences it finds (`reconcile.jobs[].repair`).
public enum JobRepair: String, Sendable, CaseIterable {
    /// Leave them `open`.
    case off
    /// Repair what the table's policy and guard rails allow; queue the rest.
    case auto
    /// Queue every one for a person.
    case review
}

/// Whose row wins when source and target differ (`reconcile.tables.T.policy`).
public enum ConflictPolicyKind: String, Sendable, CaseIterable {
    /// The target is made equal to the source (the default).
    case sourceWins = "source-wins"
    /// The row with the larger `column` wins; a newer target row is left and reported.
    case newestWins = "newest-wins"
    /// The target is kept: differences are only reported.
    case targetWins = "target-wins"
    /// Everything goes to the review queue.
    case manual
}

/// A table's conflict policy and guard rails.
public struct TablePolicy: Sendable, Equatable {
    /// Whose row wins.
    public var policy: ConflictPolicyKind = .sourceWins
    /// The timestamp or version column `newest-wins` compares.
    public var column: String?
    /// Automatic repair only when at most this many rows of the table would change…
    public var maxAutoRepairRows = 1_000
    /// … and at most this percentage of its (source) rows; above either, everything is queued.
    public var maxAutoRepairPercent = 1.0
    /// Extra target rows are deleted automatically only when set; otherwise they are queued.
    public var allowDelete = false

    /// source-wins, 1,000 rows, 1 %, no deletes.
    public init() {}
}

/// One scheduled reconcile job (`reconcile.jobs[]`).
public struct ReconcileJob: Sendable {
    /// Unique among the jobs; labels metrics and names the advisory lock.
    public var name: String
    /// When it runs (UTC).
    public var schedule: JobSchedule
    /// What it compares.
    public var kind: ReconcileKind
    /// Source tables; empty: the compared tables (`verify.tables`, else `tables`).
    public var tables: [TableName]
    /// What it does with the row differences it finds.
    public var repair: JobRepair
    /// Longest a run may take; past it the run stops with status `timeout`, keeping what it found.
    public var budgetSeconds: Int64?

    /// A job; without tables it covers the compared tables.
    public init(name: String, schedule: JobSchedule, kind: ReconcileKind, tables: [TableName] = [], repair: JobRepair = .off, budgetSeconds: Int64? = nil) {
        self.name = name
        self.schedule = schedule
        self.kind = kind
        self.tables = tables
        self.repair = repair
        self.budgetSeconds = budgetSeconds
    }
}

/// The `reconcile` section: jobs, per-table policies, and the check rules quick and deep jobs run.
public struct ReconcileSettings: Sendable {
    /// In config order, names unique.
    public var jobs: [ReconcileJob] = []
    /// Per source table; a table not named gets `TablePolicy()` (source-wins, default limits).
    public var tables: [TableName: TablePolicy] = [:]
    /// The rules file of `cdcr check` whose aggregate rules quick jobs run and whose every rule deep jobs run.
    public var rulesFile: String?
    /// Differing rows a run lists per table at most (the rest are counted, and make the table's
    /// drift "mass drift" when above the limits).
    public var maxFindingsPerTable = 10_000

    /// No jobs, every table source-wins.
    public init() {}

    /// The table's policy (the default one when it has none).
    public func policy(for table: TableName) -> TablePolicy { tables[table] ?? TablePolicy() }

    /// The job of that name.
    public func job(named name: String) -> ReconcileJob? { jobs.first { $0.name == name } }
}

extension ReconcileSettings {
    /// Reads the `reconcile` object of a config file; every problem names its setting,
    /// `reconcile.jobs[2].schedule (in FILE)`, and stops with exit 64.
    static func parse(_ json: JSONValue, file: String) throws(ConfigError) -> ReconcileSettings {
        func fail(_ at: String, _ message: String) -> ConfigError { ConfigError("reconcile.\(at) (in \(file))", message) }
        guard let members = json.objectMembers else { throw ConfigError("reconcile (in \(file))", "must be an object") }
        var r = ReconcileSettings()
        for (key, value) in members {
            switch key {
            case "$comment": break
            case "rules":
                guard let s = value.stringValue, !s.isEmpty else { throw fail(key, "must be the path of a check rules file") }
                r.rulesFile = s
            case "max_findings_per_table":
                guard let n = value.int64Value, n >= 1, n <= 1_000_000 else { throw fail(key, "must be an integer from 1 to 1000000") }
                r.maxFindingsPerTable = Int(n)
            case "jobs":
                guard case let .array(items) = value else { throw fail(key, "must be an array of jobs") }
                for (i, item) in items.enumerated() {
                    let job = try parseJob(item, at: "jobs[\(i)]", fail: fail)
                    if r.jobs.contains(where: { $0.name == job.name }) { throw fail("jobs[\(i)].name", "duplicate job name \"\(job.name)\"") }
                    r.jobs.append(job)
                }
            case "tables":
                guard let tables = value.objectMembers else { throw fail(key, "must be an object of table: policy") }
                for (table, policy) in tables { r.tables[TableName(parsing: table)] = try parsePolicy(policy, at: "tables.\(table)", fail: fail) }
            default: throw fail(key, "unknown setting (known: jobs, tables, rules, max_findings_per_table)")
            }
        }
        return r
    }

    static func parseJob(_ json: JSONValue, at: String, fail: (String, String) -> ConfigError) throws(ConfigError) -> ReconcileJob {
        guard let members = json.objectMembers else { throw fail(at, "must be an object") }
        var name: String?, schedule: JobSchedule?, kind: ReconcileKind?
        var tables: [TableName] = [], repair = JobRepair.off, budget: Int64?
        for (key, value) in members {
            let here = "\(at).\(key)"
            switch key {
            case "name":
                guard let s = value.stringValue, !s.isEmpty, s.count <= 100,
                      s.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "-_.".contains($0)) }) else {
                    throw fail(here, "must be 1 to 100 letters, digits, '-', '_' or '.'")
                }
                name = s
            case "schedule":
                guard let s = value.stringValue else { throw fail(here, "must be a string: a 5-field cron expression (UTC) or 'every 5m'") }
                do { schedule = try JobSchedule(parsing: s) } catch { throw fail(here, error.description) }
            case "kind":
                guard let s = value.stringValue, let k = ReconcileKind(rawValue: s) else { throw fail(here, "must be one of quick, full, deep") }
                kind = k
            case "tables":
                guard case let .array(items) = value else { throw fail(here, "must be an array of schema.table names") }
                for item in items {
                    guard let s = item.stringValue, !s.isEmpty else { throw fail(here, "must be an array of schema.table names") }
                    tables.append(TableName(parsing: s))
                }
            case "repair":
                guard let s = value.stringValue, let m = JobRepair(rawValue: s) else { throw fail(here, "must be one of off, auto, review") }
                repair = m
            case "budget":
                guard let s = value.stringValue else { throw fail(here, "must be a duration such as 30m or 1h30m") }
                do { budget = try JobSchedule.seconds(s) } catch { throw fail(here, error.description) }
            case "$comment": break
            default: throw fail(here, "unknown setting (known: name, schedule, kind, tables, repair, budget)")
            }
        }
        guard let name else { throw fail("\(at).name", "required") }
        guard let schedule else { throw fail("\(at).schedule", "required") }
        guard let kind else { throw fail("\(at).kind", "required (quick, full or deep)") }
        return ReconcileJob(name: name, schedule: schedule, kind: kind, tables: tables, repair: repair, budgetSeconds: budget)
    }

    static func parsePolicy(_ json: JSONValue, at: String, fail: (String, String) -> ConfigError) throws(ConfigError) -> TablePolicy {
        guard let members = json.objectMembers else { throw fail(at, "must be an object") }
        var p = TablePolicy()
        for (key, value) in members {
            let here = "\(at).\(key)"
            switch key {
            case "policy":
                guard let s = value.stringValue, let k = ConflictPolicyKind(rawValue: s) else {
                    throw fail(here, "must be one of \(ConflictPolicyKind.allCases.map(\.rawValue).joined(separator: ", "))")
                }
                p.policy = k
            case "column":
                guard let s = value.stringValue, !s.isEmpty else { throw fail(here, "must name a column") }
                p.column = s
            case "max_auto_repair_rows":
                guard let n = value.int64Value, case .number = value, n >= 0, n <= 100_000_000 else { throw fail(here, "must be an integer ≥ 0") }
                p.maxAutoRepairRows = Int(n)
            case "max_auto_repair_percent":
                guard case let .number(text) = value, let d = Double(text), d >= 0, d <= 100 else { throw fail(here, "must be a number from 0 to 100") }
                p.maxAutoRepairPercent = d
            case "allow_delete":
                guard case let .bool(b) = value else { throw fail(here, "must be true or false") }
                p.allowDelete = b
            case "$comment": break
            default: throw fail(here, "unknown setting (known: policy, column, max_auto_repair_rows, max_auto_repair_percent, allow_delete)")
            }
        }
        if p.policy == .newestWins && p.column == nil { throw fail("\(at).column", "newest-wins needs the timestamp or version column it compares") }
        if p.policy != .newestWins && p.column != nil { throw fail("\(at).column", "only newest-wins compares a column") }
        return p
    }
}
