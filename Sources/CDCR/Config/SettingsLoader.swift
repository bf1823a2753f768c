import CDCCore
import CDCPostgres
import Foundation

/// A configuration problem: names the setting and where it came from, and stops the program.
public struct ConfigError: Error, CustomStringConvertible, Sendable {
    public let setting: String
    public let message: String

    public init(_ setting: String, _ message: String) {
        self.setting = setting
        self.message = message
    }

    public var description: String { "invalid configuration \(setting): \(message)" }
}

/// Values given on the command line; nil means "not given".
public struct SettingsOverrides: Sendable {
    public var brokers: String?
    public var group: String?
    public var topics: [String] = []
    public var targetURL: String?
    public var sourceURL: String?
    public var kafkaProperties: [String] = []
    public var format: String?
    public var onPoison: String?
    public var dlqTopic: String?
    public var denySchemas: [String] = []
    public var unclearErrorRetries: Int?
    public var batchMaxEvents: Int?
    public var batchMaxWaitMs: Int?
    public var applyTruncate: Bool?
    public var logLevel: String?
    public var gapFillInterval: Int?
    public var gapFillWindow: Int?
    public var gapFillSettle: Int?
    public var adminListen: String?

    public init() {}
}

/// Merges, lowest precedence first: defaults, the config file (JSON), the `CDCR_*` environment, flags.
public enum SettingsLoader {
    public static func load(
        file: String?, environment: [String: String] = ProcessInfo.processInfo.environment,
        overrides: SettingsOverrides
    ) throws(ConfigError) -> Settings {
        var s = Settings()
        if let file { try applyFile(file, to: &s) }
        try applyEnvironment(environment, to: &s)
        try applyOverrides(overrides, to: &s)
        try validate(s)
        return s
    }

    static func applyFile(_ path: String, to s: inout Settings) throws(ConfigError) {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ConfigError("--config", "cannot read \(path)")
        }
        let json: JSONValue
        do { json = try JSONParser.parse(bytes: [UInt8](data)) } catch {
            throw ConfigError("--config", "\(path) is not valid JSON: \(error)")
        }
        guard let members = json.objectMembers else { throw ConfigError("--config", "\(path) must hold a JSON object") }
        for (key, value) in members {
            let where_ = "\(key) (in \(path))"
            switch key {
            case "brokers": s.brokers = try string(value, where_)
            case "group": s.group = try string(value, where_)
            case "topics": s.topics = try strings(value, where_)
            case "target_url": s.targetURL = try string(value, where_)
            case "source_url": s.sourceURL = try string(value, where_)
            case "kafka_properties":
                guard let props = value.objectMembers else { throw ConfigError(where_, "must be an object of strings") }
                for (k, v) in props { s.kafkaProperties.append((k, try scalarText(v, "\(where_).\(k)"))) }
            case "tables": s.tables = try strings(value, where_).map(TableName.init(parsing:))
            case "deny_schemas": s.denySchemas = try strings(value, where_)
            case "unclear_error_retries": s.unclearErrorRetries = try int(value, where_)
            case "table_map":
                guard let pairs = value.objectMembers else { throw ConfigError(where_, "must map source tables to target tables") }
                for (k, v) in pairs { s.tableMap[TableName(parsing: k)] = TableName(parsing: try string(v, "\(where_).\(k)")) }
            case "format": s.format = try choice(try string(value, where_), where_)
            case "on_poison": s.onPoison = try choice(try string(value, where_), where_)
            case "dlq_topic": s.dlqTopic = try string(value, where_)
            case "batch":
                guard let b = value.objectMembers else { throw ConfigError(where_, "must be an object") }
                for (k, v) in b {
                    switch k {
                    case "max_events": s.batchMaxEvents = try int(v, "batch.max_events (in \(path))")
                    case "max_wait_ms": s.batchMaxWaitMs = try int(v, "batch.max_wait_ms (in \(path))")
                    default: throw ConfigError("batch.\(k) (in \(path))", "unknown setting")
                    }
                }
            case "apply_truncate":
                guard case let .bool(b) = value else { throw ConfigError(where_, "must be true or false") }
                s.applyTruncate = b
            case "ledger_retention_days": s.ledgerRetentionDays = try int(value, where_)
            case "change_log_retention_days": s.changeLogRetentionDays = try int(value, where_)
            case "retry_max_backoff_ms": s.retryMaxBackoffMs = try int(value, where_)
            case "log_level": s.logLevel = try string(value, where_)
            case "admin":
                guard let a = value.objectMembers else { throw ConfigError(where_, "must be an object") }
                for (k, v) in a {
                    switch k {
                    case "listen": try applyListen(try string(v, "admin.listen (in \(path))"), to: &s, name: "admin.listen (in \(path))")
                    case "token": s.admin.token = try string(v, "admin.token (in \(path))")
                    default: throw ConfigError("admin.\(k) (in \(path))", "unknown setting")
                    }
                }
            case "gap_fill":
                guard let g = value.objectMembers else { throw ConfigError(where_, "must be an object") }
                for (k, v) in g {
                    let name = "gap_fill.\(k) (in \(path))"
                    switch k {
                    case "enabled":
                        guard case let .bool(b) = v else { throw ConfigError(name, "must be true or false") }
                        s.gapFill.enabled = b
                    case "interval_seconds": s.gapFill.intervalSeconds = try int(v, name)
                    case "window_seconds": s.gapFill.windowSeconds = try int(v, name)
                    case "settle_seconds": s.gapFill.settleSeconds = try int(v, name)
                    default: throw ConfigError(name, "unknown setting")
                    }
                }
            case "verify":
                guard let v = value.objectMembers else { throw ConfigError(where_, "must be an object") }
                for (k, item) in v {
                    let name = "verify.\(k) (in \(path))"
                    switch k {
                    case "tables": s.verify.tables = try strings(item, name).map(TableName.init(parsing:))
                    case "float_tolerance": s.verify.floatTolerance = try nonNegative(item, name)
                    case "settle_seconds": s.verify.settleSeconds = try nonNegative(item, name)
                    case "changed_columns":
                        guard let columns = item.objectMembers else { throw ConfigError(name, "must be an object of table: column") }
                        for (table, column) in columns {
                            s.verify.changedColumns[TableName(parsing: table)] = try string(column, "\(name).\(table)")
                        }
                    default: throw ConfigError(name, "unknown setting")
                    }
                }
            case "reconcile": s.reconcile = try ReconcileSettings.parse(value, file: path)
            default:
                // Sections of later features are accepted by their own loaders.
                if extensionSections.contains(key) { continue }
                throw ConfigError(where_, "unknown setting")
            }
        }
    }

    /// Top-level sections read by other components (kept here so a typo still fails loudly).
    static let extensionSections: Set<String> = ["lag", "source_tables", "$comment"]

    static func applyEnvironment(_ env: [String: String], to s: inout Settings) throws(ConfigError) {
        if let v = env["CDCR_BROKERS"] { s.brokers = v }
        if let v = env["CDCR_GROUP"] { s.group = v }
        if let v = env["CDCR_TOPICS"] { s.topics = v.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty } }
        if let v = env["CDCR_TARGET_URL"] { s.targetURL = v }
        if let v = env["CDCR_SOURCE_URL"] { s.sourceURL = v }
        if let v = env["CDCR_FORMAT"] { s.format = try choice(v, "CDCR_FORMAT") }
        if let v = env["CDCR_ON_POISON"] { s.onPoison = try choice(v, "CDCR_ON_POISON") }
        if let v = env["CDCR_DLQ_TOPIC"] { s.dlqTopic = v }
        if let v = env["CDCR_DENY_SCHEMAS"] { s.denySchemas = v.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty } }
        if let v = env["CDCR_UNCLEAR_ERROR_RETRIES"] { s.unclearErrorRetries = try int(.string(v), "CDCR_UNCLEAR_ERROR_RETRIES") }
        if let v = env["CDCR_CHANGE_LOG_RETENTION_DAYS"] { s.changeLogRetentionDays = try int(.string(v), "CDCR_CHANGE_LOG_RETENTION_DAYS") }
        if let v = env["CDCR_BATCH_MAX_EVENTS"] { s.batchMaxEvents = try int(.string(v), "CDCR_BATCH_MAX_EVENTS") }
        if let v = env["CDCR_BATCH_MAX_WAIT_MS"] { s.batchMaxWaitMs = try int(.string(v), "CDCR_BATCH_MAX_WAIT_MS") }
        if let v = env["CDCR_LOG_LEVEL"] { s.logLevel = v }
        if let v = env["CDCR_ADMIN_LISTEN"] { try applyListen(v, to: &s, name: "CDCR_ADMIN_LISTEN") }
        if let v = env["CDCR_ADMIN_TOKEN"], !v.isEmpty { s.admin.token = v }
        if let v = env["CDCR_GAP_FILL_INTERVAL"] { s.gapFill.intervalSeconds = try int(.string(v), "CDCR_GAP_FILL_INTERVAL") }
        if let v = env["CDCR_GAP_FILL_WINDOW"] { s.gapFill.windowSeconds = try int(.string(v), "CDCR_GAP_FILL_WINDOW") }
        if let v = env["CDCR_GAP_FILL_SETTLE"] { s.gapFill.settleSeconds = try int(.string(v), "CDCR_GAP_FILL_SETTLE") }
    }

    static func applyOverrides(_ o: SettingsOverrides, to s: inout Settings) throws(ConfigError) {
        if let v = o.brokers { s.brokers = v }
        if let v = o.group { s.group = v }
        if !o.topics.isEmpty { s.topics = o.topics }
        if let v = o.targetURL { s.targetURL = v }
        if let v = o.sourceURL { s.sourceURL = v }
        for p in o.kafkaProperties {
            guard let eq = p.firstIndex(of: "="), eq != p.startIndex else {
                throw ConfigError("--kafka-property", "'\(p)' is not key=value")
            }
            s.kafkaProperties.append((String(p[..<eq]), String(p[p.index(after: eq)...])))
        }
        if let v = o.format { s.format = try choice(v, "--format") }
        if let v = o.onPoison { s.onPoison = try choice(v, "--on-poison") }
        if let v = o.dlqTopic { s.dlqTopic = v }
        if !o.denySchemas.isEmpty { s.denySchemas = o.denySchemas }
        if let v = o.unclearErrorRetries { s.unclearErrorRetries = v }
        if let v = o.batchMaxEvents { s.batchMaxEvents = v }
        if let v = o.batchMaxWaitMs { s.batchMaxWaitMs = v }
        if let v = o.applyTruncate { s.applyTruncate = v }
        if let v = o.logLevel { s.logLevel = v }
        if let v = o.adminListen { try applyListen(v, to: &s, name: "--admin-listen") }
        if let v = o.gapFillInterval { s.gapFill.intervalSeconds = v }
        if let v = o.gapFillWindow { s.gapFill.windowSeconds = v }
        if let v = o.gapFillSettle { s.gapFill.settleSeconds = v }
    }

    static func validate(_ s: Settings) throws(ConfigError) {
        // Checked here so a malformed URL stops the program at once, naming the setting and never
        // its text (libpq would echo it whole, password included, on every retry).
        for (url, name) in [(s.targetURL, "target_url (--target, CDCR_TARGET_URL)"), (s.sourceURL, "source_url (--source, CDCR_SOURCE_URL)")] {
            guard let url else { continue }
            do { _ = try ConnectionString(validating: url) } catch { throw ConfigError(name, "malformed connection string: \(error)") }
        }
        if s.brokers.isEmpty { throw ConfigError("brokers", "must not be empty") }
        if s.group.isEmpty { throw ConfigError("group", "must not be empty") }
        if s.topics.isEmpty { throw ConfigError("topics", "at least one topic is needed") }
        if !(1...1_000_000).contains(s.batchMaxEvents) {
            throw ConfigError("batch.max_events (--batch-max-events, CDCR_BATCH_MAX_EVENTS)", "must be between 1 and 1000000, got \(s.batchMaxEvents)")
        }
        if !(1...600_000).contains(s.batchMaxWaitMs) {
            throw ConfigError("batch.max_wait_ms (--batch-max-wait-ms, CDCR_BATCH_MAX_WAIT_MS)", "must be between 1 and 600000, got \(s.batchMaxWaitMs)")
        }
        if !(0...100).contains(s.unclearErrorRetries) {
            throw ConfigError("unclear_error_retries (--unclear-error-retries, CDCR_UNCLEAR_ERROR_RETRIES)", "must be between 0 and 100, got \(s.unclearErrorRetries)")
        }
        for schema in s.denySchemas where schema.isEmpty {
            throw ConfigError("deny_schemas (--deny-schema, CDCR_DENY_SCHEMAS)", "an empty schema name")
        }
        if s.ledgerRetentionDays < 1 { throw ConfigError("ledger_retention_days", "must be at least 1") }
        if let days = s.changeLogRetentionDays, days != 0, days < s.ledgerRetentionDays {
            throw ConfigError("change_log_retention_days (CDCR_CHANGE_LOG_RETENTION_DAYS)",
                              "must be 0 (keep forever) or at least ledger_retention_days (\(s.ledgerRetentionDays)), got \(days): replays within the ledger retention need the source's changes")
        }
        if !s.admin.isLoopback && (s.admin.token ?? "").isEmpty {
            throw ConfigError("admin.listen (--admin-listen, CDCR_ADMIN_LISTEN)",
                              "listening on \(s.admin.host) without admin.token (CDCR_ADMIN_TOKEN) would expose the admin API; set a token or listen on 127.0.0.1")
        }
        let g = s.gapFill
        if g.intervalSeconds < 1 { throw ConfigError("gap_fill.interval_seconds (--gap-fill-interval)", "must be at least 1") }
        if g.windowSeconds < g.intervalSeconds {
            throw ConfigError("gap_fill.window_seconds (--gap-fill-window)", "must be at least the interval (\(g.intervalSeconds) s) or windows would leave gaps")
        }
        if g.settleSeconds < 0 { throw ConfigError("gap_fill.settle_seconds (--gap-fill-settle)", "must not be negative") }
        if g.windowSeconds + g.settleSeconds > s.ledgerRetentionDays * 86_400 {
            throw ConfigError("gap_fill.window_seconds", "window plus settle reaches past the ledger retention")
        }
        if !["trace", "debug", "info", "notice", "warning", "error", "critical"].contains(s.logLevel) {
            throw ConfigError("log_level", "'\(s.logLevel)' is not one of trace, debug, info, notice, warning, error, critical")
        }
    }

    /// `HOST:PORT` (or `[v6]:PORT`) of the admin server.
    static func applyListen(_ text: String, to s: inout Settings, name: String) throws(ConfigError) {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (0...65535).contains(port) else {
            throw ConfigError(name, "'\(text)' is not HOST:PORT")
        }
        var host = String(text[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        if host.isEmpty { throw ConfigError(name, "'\(text)' has no host") }
        s.admin.host = host
        s.admin.port = port
    }

    private static func string(_ v: JSONValue, _ name: String) throws(ConfigError) -> String {
        guard let s = v.stringValue else { throw ConfigError(name, "must be a string") }
        return s
    }

    private static func strings(_ v: JSONValue, _ name: String) throws(ConfigError) -> [String] {
        guard case let .array(items) = v else { throw ConfigError(name, "must be an array of strings") }
        var out: [String] = []
        for (i, item) in items.enumerated() {
            guard let text = item.stringValue else {
                throw ConfigError(name, "entry \(i + 1) (\(item.serialized.prefix(80))) must be a string")
            }
            out.append(text)
        }
        return out
    }

    private static func scalarText(_ v: JSONValue, _ name: String) throws(ConfigError) -> String {
        switch v {
        case let .string(s): return s
        case let .number(n): return n
        case let .bool(b): return b ? "true" : "false"
        default: throw ConfigError(name, "must be a string, number or boolean")
        }
    }

    private static func nonNegative(_ v: JSONValue, _ name: String) throws(ConfigError) -> Double {
        guard case let .number(text) = v, let d = Double(text), d >= 0, d.isFinite else { throw ConfigError(name, "must be a number ≥ 0") }
        return d
    }

    private static func int(_ v: JSONValue, _ name: String) throws(ConfigError) -> Int {
        guard let i = v.int64Value, let n = Int(exactly: i) else { throw ConfigError(name, "must be an integer") }
        return n
    }

    private static func choice<T: RawRepresentable & CaseIterable>(_ text: String, _ name: String) throws(ConfigError) -> T where T.RawValue == String {
        guard let v = T(rawValue: text) else {
            throw ConfigError(name, "'\(text)' is not one of \(T.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        return v
    }
}
