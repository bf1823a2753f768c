import CLibPQ
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Rows returned by a statement, copied out of libpq's `PGresult` (which is freed at once).
public struct PGRows: Sendable {
    public let columns: [String]
    public let rows: [[String?]]
    /// Rows affected, as the command tag says (INSERT/UPDATE/DELETE/COPY/MERGE), else 0.
    public let affected: Int

    public var count: Int { rows.count }
    public subscript(row: Int, column: Int) -> String? { rows[row][column] }
    /// The first column of the first row.
    public var scalar: String? { rows.first?.first ?? nil }
}

/// One libpq connection (`PGconn`). All calls are blocking: run them on a dedicated thread, never on
/// Swift's cooperative pool (see `BlockingExecutor` in CDCR).
///
/// Ownership: `PQconnectdb` returns a `PGconn` this object owns; `close()` (or deinit) calls `PQfinish`
/// exactly once and forgets the pointer. Every `PGresult` is cleared before the call that produced it
/// returns. libpq forbids concurrent use of one `PGconn`, so every call holds `lock`.
public final class PGConnection: @unchecked Sendable {
    // @unchecked Sendable: the only mutable state is `handle` and `trips`, and every access to them
    // is under `lock`.
    private let lock = Mutex<Void>(())
    private var handle: OpaquePointer?
    var trips = 0  // see `roundTrips`

    private init(handle: OpaquePointer) { self.handle = handle }

    deinit { if let handle { PQfinish(handle) } }

    /// Opens a connection from a libpq URL or key=value string.
    /// A malformed string is refused before libpq sees it (libpq would echo it whole, password
    /// included), with an error that is not an outage; libpq's own error text is scrubbed of the
    /// password in every form before it goes into the error.
    public static func connect(_ conninfo: String) throws(PGError) -> PGConnection {
        do {
            _ = try ConnectionString(validating: conninfo)
        } catch {
            throw PGError(sqlState: nil, message: "malformed connection string: \(error)", malformedConnectionString: true)
        }
        guard let conn = PQconnectdb(conninfo) else {
            throw PGError(sqlState: nil, message: "libpq could not allocate a connection", connectionLost: true)
        }
        guard PQstatus(conn) == CONNECTION_OK else {
            let message = ConnectionString.scrub(String(cString: PQerrorMessage(conn)).trimmingTrailingNewlines, conninfo: conninfo)
            PQfinish(conn)
            throw PGError(sqlState: "08001", message: "cannot connect to \(redactConnectionString(conninfo)): \(message)", connectionLost: true)
        }
        PQsetNoticeProcessor(conn, { _, _ in }, nil)
        return PGConnection(handle: conn)
    }

    /// Closes the connection; later calls fail with a connection-lost error.
    public func close() {
        lock.withLock { _ in
            if let handle { PQfinish(handle) }
            handle = nil
        }
    }

    /// How many times this connection has sent something and waited for the server's answer: one per
    /// `query`/`execute`, two per `copyIn` (the COPY's start, then its data), one plus one per COPY for
    /// a `script`, one per `pipeline`. Each is a wake-up of the backend and then of the caller; on a
    /// busy machine each waits for a core, which is why the applier counts them.
    public var roundTrips: Int { lock.withLock { _ in trips } }

    /// True while libpq considers the connection usable.
    public var isHealthy: Bool {
        lock.withLock { _ in handle.map { PQstatus($0) == CONNECTION_OK } ?? false }
    }

    /// Runs one statement with bound text parameters (nil = NULL). Values never enter the SQL text.
    @discardableResult
    public func query(_ sql: String, _ params: [String?] = []) throws(PGError) -> PGRows {
        try withHandle { conn throws(PGError) in
            trips += 1
            let result = withCStrings(params) { ptrs in
                PQexecParams(conn, sql, Int32(params.count), nil, ptrs, nil, nil, 0)
            }
            return try consume(result, conn: conn)
        }
    }

    /// Runs one or more statements without parameters (DDL scripts, BEGIN/COMMIT).
    @discardableResult
    public func execute(_ sql: String) throws(PGError) -> PGRows {
        try withHandle { conn throws(PGError) in
            trips += 1
            return try consume(PQexec(conn, sql), conn: conn)
        }
    }

    /// `COPY ... FROM STDIN` with `data` already encoded in the COPY format the statement names.
    /// Returns the number of rows copied.
    @discardableResult
    public func copyIn(_ sql: String, data: [UInt8]) throws(PGError) -> Int {
        try withHandle { conn throws(PGError) in
            trips += 2
            guard let start = PQexec(conn, sql) else { throw lost(conn) }
            let status = PQresultStatus(start)
            if status != PGRES_COPY_IN {
                _ = try consume(start, conn: conn)
                throw PGError(sqlState: nil, message: "statement did not start COPY FROM STDIN")
            }
            PQclear(start)
            if !sendCopyData(data, conn: conn) || PQputCopyEnd(conn, nil) != 1 { throw lost(conn) }
            var copied = 0
            var firstError: PGError?
            while let result = PQgetResult(conn) {
                do throws(PGError) {
                    let rows = try consume(result, conn: conn)
                    copied = rows.affected
                } catch {
                    if firstError == nil { firstError = error }
                }
            }
            if let firstError { throw firstError }
            return copied
        }
    }

    /// `COPY ... TO STDOUT`: hands each row's bytes (in the COPY format the statement names, with its
    /// trailing newline) to `onRow` as libpq receives it, so memory stays bounded by one row however
    /// much the statement returns. `onRow`'s buffer is valid only during the call. Returns the number
    /// of rows copied. When `onRow` throws, the rest of the COPY is drained and discarded (libpq
    /// offers no way to stop it early other than cancelling), then the error is rethrown.
    @discardableResult
    public func copyOut(_ sql: String, _ onRow: (UnsafeRawBufferPointer) throws -> Void) throws -> Int {
        let (rows, callbackError) = try withHandle { conn throws(PGError) -> (Int, (any Error)?) in
            trips += 1
            guard let start = PQexec(conn, sql) else { throw lost(conn) }
            if PQresultStatus(start) != PGRES_COPY_OUT {
                _ = try consume(start, conn: conn)
                throw PGError(sqlState: nil, message: "statement did not start COPY TO STDOUT")
            }
            PQclear(start)
            var callbackError: (any Error)?
            var rows = 0
            while true {
                var buffer: UnsafeMutablePointer<CChar>?
                let n = PQgetCopyData(conn, &buffer, 0)  // blocking: returns one whole row
                if n > 0, let buffer {
                    if callbackError == nil {
                        do { try onRow(UnsafeRawBufferPointer(start: buffer, count: Int(n))) } catch { callbackError = error }
                    }
                    rows += 1
                    PQfreemem(buffer)
                } else if n == -1 {
                    break  // done: the final result follows
                } else {
                    throw lost(conn)  // -2: the connection failed
                }
            }
            var firstError: PGError?
            while let result = PQgetResult(conn) {
                do throws(PGError) { _ = try consume(result, conn: conn) } catch { if firstError == nil { firstError = error } }
            }
            if let firstError { throw firstError }
            return (rows, callbackError)
        }
        if let callbackError { throw callbackError }
        return rows
    }

    /// Runs `body` inside BEGIN/COMMIT; rolls back when it throws.
    public func transaction<T>(_ body: (PGConnection) throws -> T) throws -> T {
        try execute("BEGIN")
        do {
            let value = try body(self)
            try execute("COMMIT")
            return value
        } catch {
            if isHealthy { _ = try? execute("ROLLBACK") }
            throw error
        }
    }

    // MARK: - Internals

    /// Runs `body` with the handle, holding `lock` (so `body` may touch `trips`).
    func withHandle<T>(_ body: (OpaquePointer) throws(PGError) -> T) throws(PGError) -> T {
        try lock.withLock { _ throws(PGError) -> T in
            guard let conn = handle else {
                throw PGError(sqlState: nil, message: "connection is closed", connectionLost: true)
            }
            return try body(conn)
        }
    }

    func lost(_ conn: OpaquePointer) -> PGError {
        let message = String(cString: PQerrorMessage(conn)).trimmingTrailingNewlines
        return PGError(sqlState: nil, message: message.isEmpty ? "connection lost" : message, connectionLost: true)
    }

    /// Converts a result into rows or an error, and clears it.
    func consume(_ result: OpaquePointer?, conn: OpaquePointer) throws(PGError) -> PGRows {
        guard let result else { throw lost(conn) }
        defer { PQclear(result) }
        switch PQresultStatus(result) {
        case PGRES_COMMAND_OK, PGRES_TUPLES_OK, PGRES_EMPTY_QUERY, PGRES_SINGLE_TUPLE:
            let nrows = Int(PQntuples(result))
            let ncols = Int(PQnfields(result))
            var columns: [String] = []
            columns.reserveCapacity(ncols)
            for c in 0..<ncols { columns.append(String(cString: PQfname(result, Int32(c)))) }
            var rows: [[String?]] = []
            rows.reserveCapacity(nrows)
            for r in 0..<nrows {
                var row: [String?] = []
                row.reserveCapacity(ncols)
                for c in 0..<ncols {
                    if PQgetisnull(result, Int32(r), Int32(c)) == 1 {
                        row.append(nil)
                    } else {
                        row.append(String(cString: PQgetvalue(result, Int32(r), Int32(c))))
                    }
                }
                rows.append(row)
            }
            let tuples = String(cString: PQcmdTuples(result))
            return PGRows(columns: columns, rows: rows, affected: Int(tuples) ?? 0)
        default:
            let field = { (code: Character) -> String? in
                guard let p = PQresultErrorField(result, Int32(code.asciiValue!)) else { return nil }
                return String(cString: p)
            }
            let sqlState = field("C")
            let message = field("M") ?? String(cString: PQresultErrorMessage(result)).trimmingTrailingNewlines
            let lostNow = PQstatus(conn) != CONNECTION_OK
            throw PGError(sqlState: sqlState, message: message, detail: field("D"), connectionLost: lostNow)
        }
    }
}

/// Calls `body` with a C array of C strings (nil entries stay NULL), valid only during the call.
func withCStrings<R>(_ strings: [String?], _ body: (UnsafePointer<UnsafePointer<CChar>?>?) -> R) -> R {
    if strings.isEmpty { return body(nil) }
    var owned: [UnsafeMutablePointer<CChar>?] = strings.map { s in s.map { strdup($0)! } }
    defer { for p in owned { free(p) } }
    return owned.withUnsafeMutableBufferPointer { buf in
        buf.baseAddress!.withMemoryRebound(to: UnsafePointer<CChar>?.self, capacity: buf.count) { body($0) }
    }
}

extension String {
    var trimmingTrailingNewlines: String {
        var s = self
        while s.last == "\n" || s.last == "\r" { s.removeLast() }
        return s
    }
}
