import CDCCore
import CDCPostgres
import Foundation
import Hummingbird
import Logging

extension AdminServer {
    /// The review queue over HTTP (docs/RECONCILE.md, "Review queue"). Every route needs the bearer
    /// token when one is set, reads included: items carry row values. `GET /review?table=&status=&kind=&matching=&limit=`,
    /// `GET /review/{id}` (side by side, re-read now), `POST /review/{id}/approve` `{by}`,
    /// `POST /review/{id}/reject` `{reason, by}`, `POST /review/apply` `{allow_delete}`; and the page
    /// `GET /ui/review`. POSTs must be `application/json` and not cross-site (a browser cannot send
    /// either from another origin without a preflight this server never grants), so a page elsewhere
    /// cannot make an operator's browser decide items even on a loopback server without a token.
    static func addReviewRoutes(_ router: Router<BasicRequestContext>, settings: Settings, logger: Logger) {
        router.get("/ui/review") { _, _ -> Response in ReviewPage.response() }
        router.get("/review") { request, _ -> Response in
            guard authorized(request, token: settings.admin.token) else { return unauthorized() }
            let q = request.uri.queryParameters
            var filter = ReviewFilter()
            var limit = 500
            do {
                if let m = q.get("matching"), !m.isEmpty { filter = try ReviewFilter(parsing: m) }
                if let t = q.get("table"), !t.isEmpty { filter.tables = [TableName(parsing: t)] }
                if let k = q.get("kind"), !k.isEmpty { filter.kinds = try ReviewFilter(parsing: "kind=\(k)").kinds }
                if let s = q.get("status"), s == "all" {
                    filter.statuses = Resolution.allCases
                } else if let s = q.get("status"), !s.isEmpty {
                    filter.statuses = try s.split(separator: ",").map { v throws(ReviewError) in try ReviewFilter.status(String(v)) }
                }
                if let l = q.get("limit") {
                    guard let n = Int(l), n >= 1, n <= 10_000 else { throw ReviewError(.usage, "limit must be an integer from 1 to 10000") }
                    limit = n
                }
            } catch {
                return reviewError(error)
            }
            let f = filter, n = limit
            return await reviewCall(settings) { conn in
                JSONValue.object([("items", .array(try ReviewQueue.list(f, limit: n, on: conn).map(\.jsonValue)))]).serialized
            }
        }
        router.get("/review/:id") { request, context -> Response in
            guard authorized(request, token: settings.admin.token) else { return unauthorized() }
            guard let id = context.parameters.get("id").flatMap({ Int64($0) }) else { return reviewError(ReviewError(.notFound, "no such review item")) }
            return await reviewCall(settings) { conn in
                let run = settings.sourceURL == nil ? nil : try? VerifyRun(settings: settings, options: VerifyOptions(), logger: logger)
                defer { run?.close() }
                return try ReviewDetail.load(id, run: run, target: conn).jsonValue.serialized
            }
        }
        for verb in ["approve", "reject"] {
            router.post("/review/:id/\(verb)") { request, context -> Response in
                if let refused = refuseMutation(request, settings: settings) { return refused }
                guard let id = context.parameters.get("id").flatMap({ Int64($0) }) else { return reviewError(ReviewError(.notFound, "no such review item")) }
                let body: JSONValue
                do { body = try await jsonBody(request) } catch { return reviewError(error) }
                let by = body["by"]?.stringValue.flatMap { $0.trimmingCharacters(in: .whitespaces).isEmpty ? nil : $0 } ?? "admin-api"
                let reason = body["reason"]?.stringValue ?? ""
                return await reviewCall(settings) { conn in
                    if verb == "approve" {
                        try ReviewQueue.approve([id], by: by, on: conn)
                    } else {
                        try ReviewQueue.reject([id], reason: reason, by: by, on: conn)
                    }
                    let item = try ReconcileStore.get(id, on: conn)
                    return item?.jsonValue.serialized ?? "{}"
                }
            }
        }
        router.post("/review/apply") { request, _ -> Response in
            if let refused = refuseMutation(request, settings: settings) { return refused }
            let body: JSONValue
            do { body = try await jsonBody(request) } catch { return reviewError(error) }
            var allowDelete = false
            switch body["allow_delete"] {
            case nil, .null?: break
            case let .bool(b)?: allowDelete = b
            default: return reviewError(ReviewError(.usage, "allow_delete must be true or false"))
            }
            let delete = allowDelete
            return await reviewCall(settings) { _ in
                let run = try VerifyRun(settings: settings, options: VerifyOptions(), logger: logger)
                defer { run.close() }
                return try ReviewQueue.apply(run: run, settings: settings, logger: logger, allowDelete: delete).jsonValue.serialized
            }
        }
    }

    static func unauthorized() -> Response {
        jsonResponse(.unauthorized, "{\"error\":\"a bearer token is required (admin.token)\"}")
    }

    /// The request's JSON object body (an empty body is `{}`).
    static func jsonBody(_ request: Request) async throws -> JSONValue {
        let buffer = try await request.body.collect(upTo: 64 * 1024)
        let text = String(buffer: buffer)
        if text.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty { return .object([]) }
        guard let body = try? JSONParser.parse(text), body.objectMembers != nil else {
            throw ReviewError(.usage, "the body must be a JSON object")
        }
        return body
    }

    /// Runs `body` on a target connection off the cooperative pool; its JSON text is the 200 answer.
    static func reviewCall(_ settings: Settings, _ body: @escaping @Sendable (PGConnection) throws -> String) async -> Response {
        do {
            let json = try await BlockingExecutor.run(name: "cdcr-admin-review") { () throws -> String in
                guard let url = settings.targetURL else { throw ReviewError(.usage, "no target database configured") }
                let conn = try TargetConnection.open(url, applicationName: "cdcr-admin-review")
                defer { conn.close() }
                try BookkeepingSchema.install(on: conn)
                let json = try body(conn)
                try ReconcileMetricsUpdate.reviewQueue(on: conn)
                return json
            }
            return jsonResponse(.ok, json)
        } catch {
            return reviewError(error)
        }
    }

    static func reviewError(_ error: any Error) -> Response {
        let status: HTTPResponse.Status
        switch (error as? ReviewError)?.code {
        case .usage?: status = .badRequest
        case .notFound?: status = .notFound
        case .conflict?: status = .conflict
        case nil: status = .internalServerError
        }
        return jsonResponse(status, "{\"error\":\(JSONValue.string(redactConnectionString("\(error)")).serialized)}")
    }
}
