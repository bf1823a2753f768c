import CDCCore
import CDCPostgres
import Foundation
import Hummingbird
import Logging
import Prometheus
import ServiceLifecycle
import Synchronization

/// What `/readyz` needs to know from the consume loop.
public final class HealthState: Sendable {
    private let assigned = Atomic<Int>(0)

    public init() {}

    public func setAssigned(_ n: Int) { assigned.store(n, ordering: .relaxed) }
    public var assignedPartitions: Int { assigned.load(ordering: .relaxed) }
}

/// The admin HTTP server inside `cdcr run` (Hummingbird): `/metrics`, `/healthz`, `/readyz`, `/lag`.
/// Listens on loopback by default; any other address needs `admin.token`, which mutating endpoints
/// require as a bearer token.
public enum AdminServer {
    public static func make(settings: Settings, registry: PrometheusCollectorRegistry, health: HealthState, logger: Logger) -> some Service {
        let router = Router()
        router.get("/healthz") { _, _ in "ok\n" }
        router.get("/metrics") { _, _ -> Response in
            var buffer: [UInt8] = []
            registry.emit(into: &buffer)
            return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                            body: .init(byteBuffer: ByteBuffer(bytes: buffer)))
        }
        router.get("/readyz") { _, _ -> Response in
            let targetOK = await targetReachable(settings.targetURL)
            let partitions = health.assignedPartitions
            let ready = targetOK && partitions > 0
            let body = "{\"ready\":\(ready),\"target\":\(targetOK),\"assigned_partitions\":\(partitions)}\n"
            return Response(status: ready ? .ok : .serviceUnavailable, headers: [.contentType: "application/json"],
                            body: .init(byteBuffer: ByteBuffer(string: body)))
        }
        router.get("/lag") { _, _ -> Response in
            do {
                let json = try await BlockingExecutor.run(name: "cdcr-admin-lag") {
                    let monitor = try LagMonitor(settings: settings, windowSeconds: 300)
                    defer { monitor.close() }
                    let report = try monitor.sample()
                    CDCRMetrics.recordLag(report)
                    return report.json
                }
                return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: json + "\n")))
            } catch {
                return Response(status: .serviceUnavailable, headers: [.contentType: "application/json"],
                                body: .init(byteBuffer: ByteBuffer(string: "{\"error\":\(JSONValue.string("\(error)").serialized)}\n")))
            }
        }
        return Application(
            router: router,
            configuration: .init(address: .hostname(settings.admin.host, port: settings.admin.port), serverName: "cdcr"),
            logger: logger
        )
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
