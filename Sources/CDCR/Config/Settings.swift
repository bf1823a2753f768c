import CDCCore

/// What to do with an event that can never be applied.
public enum PoisonPolicy: String, Sendable, CaseIterable {
    /// Write it to the dead-letter topic with the reason in its headers and keep going (default).
    case deadLetter = "dead-letter"
    /// Stop the applier with an error, committing nothing past the event.
    case halt
}

/// Every setting of cdcr, after flags, environment, config file and defaults are merged
/// (in that order of precedence). See `config/cdcr.example.json` for the file form.
public struct Settings: Sendable {
    public var brokers = "127.0.0.1:9092"
    public var group = "cdcr"
    public var topics = ["cdc.changes"]
    /// libpq URL of the target database.
    public var targetURL: String?
    /// libpq URL of the source database (gap filler, reconciler).
    public var sourceURL: String?
    /// Passed to librdkafka as they are (TLS, SASL, timeouts…).
    public var kafkaProperties: [(String, String)] = []
    /// Allowlist of target tables changes may touch; nil allows every table in the catalog.
    public var tables: [TableName]?
    /// Schemas events may never write, on top of the ones that are always refused (`cdcr`,
    /// `pg_catalog`, `information_schema`, `pg_toast` and every other `pg_*` schema).
    public var denySchemas: [String] = []
    /// How often a batch that failed for a reason that is neither clearly transient nor clearly
    /// about one change (SQLSTATE classes 58, XX, …) is retried before its changes are isolated
    /// one by one and the failing ones dead-lettered.
    public var unclearErrorRetries = 3
    /// Source table → target table renames.
    public var tableMap: [TableName: TableName] = [:]
    public var format: FormatChoice = .auto
    public var onPoison: PoisonPolicy = .deadLetter
    /// Dead-letter topic; nil means `<topic>.dlq` of the message's own topic.
    public var dlqTopic: String?
    public var batchMaxEvents = 20_000
    public var batchMaxWaitMs = 200
    public var applyTruncate = false
    /// How long ledger entries and row-version tombstones are kept (see docs/GUARANTEES.md).
    public var ledgerRetentionDays = 7
    /// How long the source change log keeps its rows; nil means as long as the ledger, 0 forever.
    /// Replays are refused beyond the ledger retention, so older rows serve no cdcr reader.
    public var changeLogRetentionDays: Int?
    /// Days of the source change log the gap filler keeps when it prunes (0: it never prunes).
    public var effectiveChangeLogRetentionDays: Int { changeLogRetentionDays ?? ledgerRetentionDays }
    /// Cap of the exponential backoff between retries of a transient failure.
    public var retryMaxBackoffMs = 30_000
    public var logLevel = "info"
    /// Scheduled gap filling inside `cdcr run` (needs `source_url`); see GapFillScheduler.
    public var gapFill = GapFillSettings()
    /// The admin HTTP server inside `cdcr run`.
    public var admin = AdminSettings()
    /// Defaults of `cdcr verify`, `cdcr repair` and `cdcr audit`.
    public var verify = VerifySettings()
    /// Scheduled reconcile jobs and per-table conflict policies (docs/RECONCILE.md).
    public var reconcile = ReconcileSettings()

    public init() {}

    /// The target table a source table's changes go to.
    public func targetTable(for source: TableName) -> TableName { tableMap[source] ?? source }

    /// The source tables verify, repair and audit work on: those named by `--table` flags, else
    /// `verify.tables`, else the `tables` allowlist (empty when none of them is set).
    public func comparedTables(flags: [String]) -> [TableName] {
        flags.isEmpty ? (verify.tables ?? tables ?? []) : flags.map(TableName.init(parsing:))
    }

    /// The dead-letter topic for messages from `topic`.
    public func deadLetterTopic(for topic: String) -> String { dlqTopic ?? "\(topic).dlq" }

    /// librdkafka properties for a client of this deployment; user properties win.
    public func kafkaClientProperties(extra: [(String, String)] = []) -> [(String, String)] {
        [("bootstrap.servers", brokers), ("log_level", "4")] + extra + kafkaProperties
    }
}

/// `gap_fill` settings: every `intervalSeconds`, replay the change-log window of `windowSeconds`
/// that ends `settleSeconds` ago. Windows overlap when the window is longer than the interval.
public struct GapFillSettings: Sendable {
    public var enabled = true
    public var intervalSeconds = 60
    public var windowSeconds = 600
    public var settleSeconds = 30

    public init() {}
}

/// `admin` settings: where the admin HTTP server listens and the bearer token it requires.
public struct AdminSettings: Sendable {
    public var host = "127.0.0.1"
    public var port = 9464
    /// Never logged. Required to listen anywhere but loopback.
    public var token: String?

    public init() {}

    public var isLoopback: Bool { host == "127.0.0.1" || host == "localhost" || host == "::1" || host.hasPrefix("127.") }
}

/// `verify` settings: the tables verify, repair and audit work on when no `--table` is given
/// (falling back to `tables`), and defaults of their flags.
public struct VerifySettings: Sendable {
    public var tables: [TableName]?
    public var floatTolerance: Double?
    public var settleSeconds: Double = 0
    /// Per source table, a column holding each row's last change time (`verify.changed_columns`):
    /// one of the key sources of `verify --since`.
    public var changedColumns: [TableName: String] = [:]

    public init() {}
}
