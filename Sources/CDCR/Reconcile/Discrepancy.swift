import CDCCore

/// What kind of reconcile job runs (docs/RECONCILE.md): `quick` is audit counts and aggregate rules,
/// `full` a verify of the compared tables, `deep` full plus every rule, schema and references.
public enum ReconcileKind: String, Sendable, CaseIterable {
    case quick, full, deep
}

/// Why a run started.
public enum RunTrigger: String, Sendable {
    /// Its schedule slot came.
    case schedule
    /// Slots were missed while cdcr was down: one run stands for all of them.
    case catchUp = "catch_up"
    /// `cdcr reconcile --job`, the admin API.
    case manual
}

/// How a run ended (`running` until it does).
public enum RunStatus: String, Sendable, CaseIterable {
    case running
    /// Nothing found.
    case ok
    /// Discrepancies found (repaired, queued or left open).
    case drift
    /// The run could not complete; `error` says why.
    case error
    /// The job's time budget ran out.
    case timeout
}

/// What a discrepancy is.
public enum DiscrepancyKind: String, Sendable, CaseIterable {
    /// A row in the source, not in the target.
    case missing
    /// A row in the target, not in the source.
    case extra
    /// A row in both, with columns that differ.
    case different
    /// A business rule (aggregate, query, freshness check) failed.
    case rule
    /// A row whose referenced row does not exist.
    case orphan
    /// The two sides' columns or types differ.
    case schema

    /// The kinds a row-level repair can fix.
    public var isRowLevel: Bool { self == .missing || self == .extra || self == .different }
}

/// Where a discrepancy stands.
public enum Resolution: String, Sendable, CaseIterable {
    /// Found, not yet decided (a policy that only reports, or a kind repair cannot fix).
    case open
    /// Fixed by an automatic repair under the table's policy.
    case autoRepaired = "auto_repaired"
    /// Waiting in the review queue for a person.
    case queued
    /// A person approved its repair (`applied_at` says whether it has been applied).
    case approved
    /// A person rejected its repair: the target is kept as it is.
    case rejected
    /// Gone at a later run without a repair: the stream caught up.
    case resolvedByStream = "resolved_by_stream"

    /// A live discrepancy is followed by later runs; the others are history.
    public var isLive: Bool { self == .open || self == .queued || self == .approved }
}

/// One difference a run found, before it is stored.
public struct Finding: Sendable {
    public var table: TableName
    public var targetTable: TableName
    /// The row's key as a JSON object of key texts (`{"id": "7"}`); nil for table-level kinds.
    public var rowKeyJSON: String?
    /// Identity across runs: the canonical key for row kinds, the rule or check name otherwise.
    public var keyText: String
    public var kind: DiscrepancyKind
    public var columns: [String] = []
    public var sourceValuesJSON: String?
    public var targetValuesJSON: String?
    public var digest: String?

    public init(table: TableName, targetTable: TableName, rowKeyJSON: String?, keyText: String, kind: DiscrepancyKind) {
        self.table = table
        self.targetTable = targetTable
        self.rowKeyJSON = rowKeyJSON
        self.keyText = keyText
        self.kind = kind
    }
}

/// A stored discrepancy (`cdcr.discrepancies`), as read back. Times are PostgreSQL's ISO text (UTC).
public struct Discrepancy: Sendable {
    public var id: Int64
    public var firstRunID: String
    public var lastRunID: String
    public var table: TableName
    public var targetTable: TableName
    public var rowKeyJSON: String?
    public var keyText: String
    public var kind: DiscrepancyKind
    public var columns: [String]
    public var sourceValuesJSON: String?
    public var targetValuesJSON: String?
    public var digest: String?
    public var resolution: Resolution
    public var policy: String?
    public var reason: String?
    public var timesSeen: Int
    public var firstSeenAt: String
    public var lastSeenAt: String
    public var resolvedAt: String?
    public var decidedBy: String?
    public var decidedAt: String?
    public var repairRunID: String?
    public var appliedAt: String?
}

/// A stored run (`cdcr.reconcile_runs`), as read back.
public struct ReconcileRunRecord: Sendable {
    public var runID: String
    public var job: String
    public var kind: ReconcileKind
    public var trigger: RunTrigger
    public var scheduledFor: String?
    public var startedAt: String
    public var finishedAt: String?
    public var status: RunStatus
    public var tables: [String]
    public var counts: RunCounts
    public var error: String?
}

/// A run's counts.
public struct RunCounts: Sendable, Equatable {
    public var found = 0
    public var newFound = 0
    public var autoRepaired = 0
    public var queued = 0
    public var resolvedByStream = 0

    public init() {}
}
