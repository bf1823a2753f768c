import CDCCore
import Foundation
import Hummingbird

extension AdminServer {
    /// `POST /backfill` (token protected like `POST /replay`): starts a backfill job from a JSON body
    /// `{tables, chunk_rows, max_rows_per_second, parallel, writers, outage_timeout, where, version_source,
    /// restart, dry_run}` and answers `202 {"id": …}`; `GET /backfill/{id}` its progress and summary;
    /// `DELETE /backfill/{id}` (token protected) stops it after its current chunk.
    static func addBackfillRoutes(_ router: Router<BasicRequestContext>, settings: Settings, jobs: BackfillJobs) {
        router.post("/backfill") { request, _ -> Response in
            if let refused = refuseMutation(request, settings: settings) { return refused }
            guard let buffer = try? await request.body.collect(upTo: 64 * 1024),
                  let body = try? JSONParser.parse(String(buffer: buffer)), body.objectMembers != nil else {
                return jsonResponse(.badRequest, "{\"error\":\"the body must be a JSON object {tables, chunk_rows, max_rows_per_second, parallel, writers, outage_timeout, where, version_source, restart, dry_run}\"}")
            }
            do {
                let id = try jobs.start(try backfillOptions(body))
                return jsonResponse(.accepted, "{\"id\":\"\(id)\"}")
            } catch {
                return jsonResponse(.badRequest, "{\"error\":\(JSONValue.string("\(error)").serialized)}")
            }
        }
        router.get("/backfill/:id") { _, context -> Response in
            guard let id = context.parameters.get("id"), let job = jobs.job(id) else {
                return jsonResponse(.notFound, "{\"error\":\"no such backfill job\"}")
            }
            return jsonResponse(.ok, job.json)
        }
        router.delete("/backfill/:id") { request, context -> Response in
            if let refused = refuseMutation(request, settings: settings, hasBody: false) { return refused }
            guard let id = context.parameters.get("id"), jobs.stop(id) else {
                return jsonResponse(.notFound, "{\"error\":\"no such backfill job\"}")
            }
            return jsonResponse(.accepted, "{\"id\":\"\(id)\",\"stopping\":true}")
        }
    }

    /// The job's options from the request body; a member of the wrong type is refused by name.
    static func backfillOptions(_ body: JSONValue) throws(BackfillError) -> BackfillOptions {
        var o = BackfillOptions()
        guard case let .array(items)? = body["tables"] else { throw BackfillError("tables must be an array of table names") }
        for item in items {
            guard let t = item.stringValue else { throw BackfillError("tables must be strings") }
            o.tables.append(TableName(parsing: t))
        }
        func int(_ name: String) throws(BackfillError) -> Int? {
            switch body[name] {
            case nil, .null?: return nil
            case let v?: guard let n = v.int64Value, n >= 1, n <= Int64(Int32.max) else { throw BackfillError("\(name) must be an integer ≥ 1") }
                return Int(n)
            }
        }
        func bool(_ name: String) throws(BackfillError) -> Bool {
            switch body[name] {
            case nil, .null?: return false
            case let .bool(b)?: return b
            default: throw BackfillError("\(name) must be true or false")
            }
        }
        func string(_ name: String) throws(BackfillError) -> String? {
            switch body[name] {
            case nil, .null?: return nil
            case let .string(s)?: return s
            default: throw BackfillError("\(name) must be a string")
            }
        }
        if let n = try int("chunk_rows") { o.chunkRows = n }
        if let n = try int("parallel") { o.parallel = n }
        if let n = try int("max_rows_per_second") { o.maxRowsPerSecond = Double(n) }
        // The CLI's --writers and --outage-timeout, with the same bounds.
        let w = BackfillOptions.writerRange, most = BackfillOptions.maxOutageTimeoutSeconds
        if let n = try int("writers") {
            guard w.contains(n) else { throw BackfillError("writers must be an integer between \(w.lowerBound) and \(w.upperBound)") }
            o.writers = n
        }
        let badTimeout = BackfillError("outage_timeout must be a number of seconds from 0 to \(most) (a year)")
        switch body["outage_timeout"] {
        case nil, .null?: break
        case let .number(text)?:
            guard let seconds = Double(text), seconds >= 0, seconds <= Double(most) else { throw badTimeout }
            o.outageTimeout = .milliseconds(Int64(seconds * 1000))
        default: throw badTimeout
        }
        o.predicate = try string("where")
        if let p = o.predicate, p.trimmingCharacters(in: .whitespaces).isEmpty { throw BackfillError("where is empty") }
        if let v = try string("version_source") {
            guard let source = VersionSource(rawValue: v) else { throw BackfillError("version_source must be change-log or lsn") }
            o.versionSource = source
        }
        o.restart = try bool("restart")
        o.dryRun = try bool("dry_run")
        return o
    }
}
