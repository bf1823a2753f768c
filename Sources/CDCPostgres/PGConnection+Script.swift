import CLibPQ

/// One statement of a `PGConnection.script`.
public enum PGStep: Sendable {
    /// A statement without parameters (exactly one: the results are matched to steps one to one).
    case sql(String)
    /// `COPY … FROM STDIN`, with its data already encoded in the format the statement names.
    case copyIn(String, data: [UInt8])
}

/// A statement of a `script` or `pipeline` failed: which one (its index), and the server's error.
/// The statements before it ran; the ones after it did not.
public struct PGStepError: Error, Sendable, CustomStringConvertible {
    public let step: Int
    public let error: PGError
    public var description: String { "statement \(step + 1): \(error)" }
}

extension PGConnection {
    /// Runs `steps` as one simple-query message, so the server runs them back to back without
    /// waiting for the client between them. The simple-query protocol allows `COPY FROM STDIN` in
    /// the middle of such a message (pipeline mode does not allow COPY at all): the server stops at
    /// each COPY until its data has arrived, and libpq sends the data only once the server has asked
    /// for it. So the whole script costs one round trip plus one per COPY.
    ///
    /// Returns one result per step (a COPY's `affected` is the rows copied). When a statement fails,
    /// the server skips the rest of the message and the error names the failed step; inside an
    /// explicit transaction that transaction is then aborted, as after any failed statement.
    @discardableResult
    public func script(_ steps: [PGStep]) throws(PGStepError) -> [PGRows] {
        try stepped { conn, done throws(PGError) in try runScript(steps, conn: conn, done: &done) }
    }

    /// Runs `body` with the handle; a failure is pinned on the step `body` had reached (`done`, the
    /// results read so far) unless it already names one.
    private func stepped(_ body: (OpaquePointer, inout Int) throws(PGError) -> Result<[PGRows], PGStepError>) throws(PGStepError) -> [PGRows] {
        var done = 0
        let outcome: Result<[PGRows], PGStepError>
        do {
            outcome = try withHandle { conn throws(PGError) in try body(conn, &done) }
        } catch {
            throw PGStepError(step: done, error: error)
        }
        return try outcome.get()
    }

    private func runScript(_ steps: [PGStep], conn: OpaquePointer, done: inout Int) throws(PGError) -> Result<[PGRows], PGStepError> {
        let text = steps.map { step -> String in
            switch step {
            case let .sql(sql), let .copyIn(sql, _): sql
            }
        }.joined(separator: ";\n")
        trips += 1
        guard PQsendQuery(conn, text) == 1 else { throw lost(conn) }
        var results: [PGRows] = []
        var failure: PGStepError?
        while let result = PQgetResult(conn) {
            let index = results.count
            done = index
            if PQresultStatus(result) == PGRES_COPY_IN {
                PQclear(result)
                guard index < steps.count, case let .copyIn(_, data) = steps[index], failure == nil else {
                    // A COPY the caller did not announce: refuse it rather than guess its data.
                    if PQputCopyEnd(conn, "cdcr: unexpected COPY in a script") != 1 { throw lost(conn) }
                    if failure == nil {
                        failure = PGStepError(step: index, error: PGError(sqlState: nil, message: "statement \(index + 1) of a script started a COPY it was not given data for"))
                    }
                    continue
                }
                trips += 1
                if !sendCopyData(data, conn: conn) || PQputCopyEnd(conn, nil) != 1 { throw lost(conn) }
                continue  // the COPY's own result follows
            }
            do throws(PGError) {
                let rows = try consume(result, conn: conn)
                if failure == nil { results.append(rows) }
            } catch {
                if failure == nil { failure = PGStepError(step: index, error: error) }
            }
        }
        if let failure { return .failure(failure) }
        if results.count != steps.count {
            throw PGError(sqlState: nil, message: "a script of \(steps.count) statements returned \(results.count) results")
        }
        return .success(results)
    }

    /// Runs `statements` (each with bound text parameters, nil = NULL) in libpq's pipeline mode:
    /// all are sent, then one sync, then the results are read, so they cost one round trip between
    /// them. A statement may not depend on an earlier one's result (only on its effects). After a
    /// failed statement the server skips the rest up to the sync; the error names the failed one.
    @discardableResult
    public func pipeline(_ statements: [(sql: String, params: [String?])]) throws(PGStepError) -> [PGRows] {
        try stepped { conn, done throws(PGError) in try runPipeline(statements, conn: conn, done: &done) }
    }

    private func runPipeline(_ statements: [(sql: String, params: [String?])], conn: OpaquePointer, done: inout Int) throws(PGError) -> Result<[PGRows], PGStepError> {
        guard PQenterPipelineMode(conn) == 1 else {
            throw PGError(sqlState: nil, message: "cannot enter pipeline mode: \(String(cString: PQerrorMessage(conn)).trimmingTrailingNewlines)")
        }
        trips += 1
        // Leave pipeline mode whatever happens, once every result has been read (libpq refuses
        // before). A connection that failed on the way is discarded by the caller anyway.
        defer { _ = PQexitPipelineMode(conn) }
        for (sql, params) in statements {
            let sent = withCStrings(params) { ptrs in PQsendQueryParams(conn, sql, Int32(params.count), nil, ptrs, nil, nil, 0) }
            guard sent == 1 else { throw lost(conn) }
        }
        guard PQpipelineSync(conn) == 1 else { throw lost(conn) }
        var results: [PGRows] = []
        var failure: PGStepError?
        for index in statements.indices {
            done = index
            guard let result = PQgetResult(conn) else { throw lost(conn) }
            if PQresultStatus(result) == PGRES_PIPELINE_ABORTED {
                PQclear(result)  // skipped after `failure`'s statement
            } else {
                do throws(PGError) {
                    results.append(try consume(result, conn: conn))
                } catch {
                    if failure == nil { failure = PGStepError(step: index, error: error) }
                }
            }
            // Each statement's results end with a NULL.
            while let extra = PQgetResult(conn) { PQclear(extra) }
        }
        // Then the sync's own result.
        guard let sync = PQgetResult(conn) else { throw lost(conn) }
        let synced = PQresultStatus(sync) == PGRES_PIPELINE_SYNC
        PQclear(sync)
        guard synced else { throw PGError(sqlState: nil, message: "pipeline ended without its sync") }
        if let failure { return .failure(failure) }
        return .success(results)
    }

    /// Sends COPY data in chunks of 1 MB; false when the connection failed.
    func sendCopyData(_ data: [UInt8], conn: OpaquePointer) -> Bool {
        data.withUnsafeBytes { raw in
            let chunk = 1 << 20
            var offset = 0
            while offset < raw.count {
                let n = min(chunk, raw.count - offset)
                let base = raw.baseAddress!.advanced(by: offset).assumingMemoryBound(to: CChar.self)
                if PQputCopyData(conn, base, Int32(n)) != 1 { return false }
                offset += n
            }
            return true
        }
    }
}

/// A string as an SQL literal, the way libpq's `PQescapeLiteral` writes it: single quotes doubled,
/// and when it holds a backslash, the `E'…'` form with backslashes doubled, so it reads the same
/// whatever `standard_conforming_strings` is. For names cdcr has already resolved against the
/// catalog (never for values from events, which are always bound or COPYed).
public func quoteLiteral(_ s: String) -> String {
    let quoted = s.replacingAll("'", with: "''")
    return s.contains("\\") ? "E'" + quoted.replacingAll("\\", with: "\\\\") + "'" : "'" + quoted + "'"
}

extension String {
    fileprivate func replacingAll(_ target: Character, with replacement: String) -> String {
        var out = ""
        out.reserveCapacity(utf8.count)
        for c in self { if c == target { out += replacement } else { out.append(c) } }
        return out
    }
}
