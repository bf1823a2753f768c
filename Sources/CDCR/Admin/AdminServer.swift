import CDCCore
import CDCPostgres
import Foundation
import Hummingbird
import Logging
import Prometheus
import ServiceLifecycle
import Synchronization

/// What `/readyz` and the status page need to know from the consume loop.
public final class HealthState: Sendable {
    private let assigned = Atomic<Int>(0)
    /// (time, applied, dead-lettered) per committed batch over the last hour, for rates.
    private let batches = Mutex<[(Double, Int, Int)]>([])

    public init() {}

    public func setAssigned(_ n: Int) { assigned.store(n, ordering: .relaxed) }
    public var assignedPartitions: Int { assigned.load(ordering: .relaxed) }

    /// Start times of the batches handed to the database and not yet committed (at most two).
    private let waiting = Mutex<[ContinuousClock.Instant]>([])
    /// Why the batch in the database is being retried, while it is.
    private let applyProblem = Mutex<String?>(nil)

    func applyStarted(at instant: ContinuousClock.Instant) { waiting.withLock { $0.append(instant) } }

    func setApplyProblem(_ problem: String?) { applyProblem.withLock { $0 = problem } }

    /// Why applying is stuck right now (a batch being retried), or nil.
    public var currentApplyProblem: String? { applyProblem.withLock { $0 } }

    /// Seconds the oldest batch not yet committed has been waiting: how long the stream has made no
    /// progress while messages wait; 0 when nothing waits. Exported as `cdcr_apply_stalled_seconds`.
    public var stalledSeconds: Double {
        waiting.withLock { w in w.first.map { (ContinuousClock.now - $0).seconds } ?? 0 }
    }

    /// Message timestamp → target commit of the last minutes (`cdcr_apply_latency_seconds`), for
    /// the status page's quantiles.
    private let latency = Mutex(LatencyWindow(minutes: 5))

    func recordBatch(_ counts: OutcomeCounts, latencies: [Double] = []) {
        waiting.withLock { w in if !w.isEmpty { w.removeFirst() } }
        let now = Date().timeIntervalSince1970
        if !latencies.isEmpty {
            latency.withLock { w in for l in latencies { w.record(seconds: l, at: now) } }
        }
        batches.withLock { b in
            b.append((now, counts.applied, counts.deadLettered))
            b.removeAll { $0.0 < now - 3_600 }
        }
    }

    /// p50 and p99 of message timestamp → target commit over the last minutes, and how many
    /// messages they are of; nil when none was applied in that time.
    func latencyQuantiles() -> (p50: Double, p99: Double, count: Int, minutes: Int)? {
        let now = Date().timeIntervalSince1970
        return latency.withLock { w in
            guard let p50 = w.quantile(0.5, at: now), let p99 = w.quantile(0.99, at: now) else { return nil }
            return (p50, p99, w.count(at: now), w.minutes)
        }
    }

    /// Applied and dead-lettered events per second over the last `seconds`.
    func rates(over seconds: Double = 300) -> (applied: Double, deadLettered: Double) {
        let since = Date().timeIntervalSince1970 - seconds
        return batches.withLock { b in
            let recent = b.filter { $0.0 >= since }
            return (Double(recent.reduce(0) { $0 + $1.1 }) / seconds, Double(recent.reduce(0) { $0 + $1.2 }) / seconds)
        }
    }
}

/// The admin HTTP server inside `cdcr run` (Hummingbird): `/metrics`, `/healthz`, `/readyz`, `/lag`.
/// Listens on loopback by default; any other address needs `admin.token`, which mutating endpoints
/// require as a bearer token.
public enum AdminServer {
    /// A `/lag` or status-page answer may reuse a lag sample up to this old.
    static let lagMaxAge = Duration.seconds(2)

    public static func make(settings: Settings, registry: PrometheusCollectorRegistry, health: HealthState, lag: LagSampler, logger: Logger) -> some Service {
        let router = Router()
        router.get("/healthz") { _, _ in "ok\n" }
        router.get("/metrics") { _, _ -> Response in
            CDCRMetrics.recordStall(seconds: health.stalledSeconds)
            var buffer: [UInt8] = []
            registry.emit(into: &buffer)
            return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                            body: .init(byteBuffer: ByteBuffer(bytes: buffer)))
        }
        router.get("/readyz") { _, _ -> Response in
            let targetOK = await targetReachable(settings.targetURL)
            let partitions = health.assignedPartitions
            let problem = health.currentApplyProblem
            let ready = targetOK && partitions > 0 && problem == nil
            let problemJSON = problem.map { JSONValue.string(redactConnectionString($0)).serialized } ?? "null"
            return jsonResponse(ready ? .ok : .serviceUnavailable, """
                {"ready":\(ready),"target":\(targetOK),"assigned_partitions":\(partitions),"apply_problem":\(problemJSON),"stalled_seconds":\(health.stalledSeconds)}
                """)
        }
        router.get("/lag") { _, _ -> Response in
            do {
                let json = try await BlockingExecutor.run(name: "cdcr-admin-lag") { try lag.report(maxAge: lagMaxAge).json }
                return jsonResponse(.ok, json)
            } catch {
                return jsonResponse(.serviceUnavailable, "{\"error\":\(JSONValue.string("\(error)").serialized)}")
            }
        }
        let jobs = ReplayJobs(settings: settings, logger: logger)
        router.get("/") { _, _ -> Response in
            let page = (try? await BlockingExecutor.run(name: "cdcr-admin-status") {
                try StatusPage.render(settings: settings, report: lag.report(maxAge: lagMaxAge), health: health, jobs: jobs)
            }) ?? StatusPage.unavailable
            return Response(status: .ok, headers: [.contentType: "text/html; charset=utf-8"], body: .init(byteBuffer: ByteBuffer(string: page)))
        }
        router.post("/replay") { request, _ -> Response in
            if let refused = refuseMutation(request, settings: settings) { return refused }
            guard let buffer = try? await request.body.collect(upTo: 64 * 1024),
                  let body = try? JSONParser.parse(String(buffer: buffer)), body.objectMembers != nil else {
                return jsonResponse(.badRequest, "{\"error\":\"the body must be a JSON object {from, to, tables, dry_run}\"}")
            }
            guard let from = body["from"]?.stringValue, let to = body["to"]?.stringValue else {
                return jsonResponse(.badRequest, "{\"error\":\"from and to are required ISO-8601 strings\"}")
            }
            var tables: [String] = []
            switch body["tables"] {
            case nil, .null?: break
            case let .array(items)?:
                for item in items {
                    guard let t = item.stringValue else { return jsonResponse(.badRequest, "{\"error\":\"tables must be strings\"}") }
                    tables.append(t)
                }
            default: return jsonResponse(.badRequest, "{\"error\":\"tables must be an array of strings\"}")
            }
            var dryRun = false
            switch body["dry_run"] {
            case nil, .null?: break
            case let .bool(b)?: dryRun = b
            default: return jsonResponse(.badRequest, "{\"error\":\"dry_run must be true or false\"}")
            }
            do {
                let id = try jobs.start(from: from, to: to, tables: tables, dryRun: dryRun)
                return jsonResponse(.accepted, "{\"id\":\"\(id)\"}")
            } catch {
                return jsonResponse(.badRequest, "{\"error\":\(JSONValue.string("\(error)").serialized)}")
            }
        }
        addBackfillRoutes(router, settings: settings, jobs: BackfillJobs(settings: settings, logger: logger))
        addReviewRoutes(router, settings: settings, logger: logger)
        router.get("/replay/:id") { _, context -> Response in
            guard let id = context.parameters.get("id"), let job = jobs.job(id) else {
                return jsonResponse(.notFound, "{\"error\":\"no such replay job\"}")
            }
            return jsonResponse(.ok, job.json)
        }
        return Application(
            router: router,
            configuration: .init(address: .hostname(settings.admin.host, port: settings.admin.port), serverName: "cdcr"),
            logger: logger
        )
    }

    /// Mutating endpoints need `Authorization: Bearer <admin.token>` when a token is configured.
    /// Why a mutating request is refused, or nil: no valid token (when one is set), a body that is
    /// not `application/json`, or a browser saying it comes from another site. The last two keep a
    /// web page the operator visits from making the browser post to a loopback server without a
    /// token (a cross-site form can only send form or plain-text bodies, and browsers label it).
    static func refuseMutation(_ request: Request, settings: Settings, hasBody: Bool = true) -> Response? {
        guard authorized(request, token: settings.admin.token) else { return unauthorized() }
        if hasBody, !(request.headers[.contentType] ?? "").lowercased().hasPrefix("application/json") {
            return jsonResponse(.unsupportedMediaType, "{\"error\":\"the body must be application/json\"}")
        }
        if let site = request.headers.first(where: { $0.name.canonicalName == "sec-fetch-site" })?.value, site != "same-origin", site != "none" {
            return jsonResponse(.forbidden, "{\"error\":\"cross-site requests are refused\"}")
        }
        return nil
    }

    static func authorized(_ request: Request, token: String?) -> Bool {
        guard let token, !token.isEmpty else { return true }
        return constantTimeEqual(request.headers[.authorization] ?? "", "Bearer \(token)")
    }

    static func jsonResponse(_ status: HTTPResponse.Status, _ body: String) -> Response {
        Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: body + "\n")))
    }

    /// Connects and runs `SELECT 1` within two seconds, off the cooperative pool.
    static func targetReachable(_ url: String?) async -> Bool {
        guard let url else { return false }
        return (try? await BlockingExecutor.run(name: "cdcr-admin-ready") {
            let conn = try PGConnection.connect(url + (url.contains("?") ? "&" : "?") + "connect_timeout=2")
            defer { conn.close() }
            return try conn.query("SELECT 1").scalar == "1"
        }) ?? false
    }
}

/// Compares two secrets in time that depends only on their lengths, never on where they first
/// differ, so a client cannot find a token byte by byte by timing its guesses.
func constantTimeEqual(_ a: String, _ b: String) -> Bool {
    let x = Array(a.utf8), y = Array(b.utf8)
    var diff = UInt8(truncatingIfNeeded: x.count ^ y.count)
    diff |= x.count == y.count ? 0 : 1
    for i in 0..<max(x.count, y.count) {
        diff |= (i < x.count ? x[i] : 0) ^ (i < y.count ? y[i] : 0)
    }
    return diff == 0
}
