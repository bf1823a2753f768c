/// An error from PostgreSQL or libpq, carrying the SQLSTATE when the server sent one.
///
/// Its description never contains a password or a connection string.
public struct PGError: Error, Sendable, CustomStringConvertible {
    /// Five-character SQLSTATE, or nil for client-side failures (then see `connectionLost`).
    public let sqlState: String?
    public let message: String
    public let detail: String?
    /// True when the connection is gone (libpq reports CONNECTION_BAD, or SQLSTATE class 08).
    public let connectionLost: Bool
    /// The connection string itself is malformed: a configuration error, never retried.
    public let malformedConnectionString: Bool

    public init(sqlState: String?, message: String, detail: String? = nil, connectionLost: Bool = false, malformedConnectionString: Bool = false) {
        self.sqlState = sqlState
        self.message = message
        self.detail = detail
        self.malformedConnectionString = malformedConnectionString
        self.connectionLost = !malformedConnectionString && (connectionLost || (sqlState?.hasPrefix("08") ?? false))
    }

    public var description: String {
        var s = sqlState.map { "[\($0)] " } ?? (connectionLost ? "[connection lost] " : "")
        s += message
        if let detail, !detail.isEmpty { s += " (\(detail))" }
        return s
    }
}

/// Hides the password of a libpq connection string, in URL or key=value form, for logs and errors.
public func redactConnectionString(_ conninfo: String) -> String {
    if let schemeEnd = indexAfterScheme(conninfo) {
        let rest = conninfo[schemeEnd...]
        guard let at = rest.lastIndex(of: "@") else { return redactQueryPassword(conninfo) }
        let userinfo = rest[..<at]
        let host = rest[rest.index(after: at)...]
        let user = userinfo.split(separator: ":", maxSplits: 1).first.map(String.init) ?? ""
        let hidden = userinfo.contains(":") ? "\(user):***" : user
        return redactQueryPassword(String(conninfo[..<schemeEnd]) + hidden + "@" + host)
    }
    var out: [String] = []
    for part in conninfo.split(separator: " ", omittingEmptySubsequences: true) {
        out.append(part.lowercased().hasPrefix("password=") ? "password=***" : String(part))
    }
    return out.joined(separator: " ")
}

private func redactQueryPassword(_ url: String) -> String {
    guard let q = url.firstIndex(of: "?") else { return url }
    let params = url[url.index(after: q)...].split(separator: "&").map { p in
        p.lowercased().hasPrefix("password=") ? "password=***" : String(p)
    }
    return String(url[...q]) + params.joined(separator: "&")
}

private func indexAfterScheme(_ s: String) -> String.Index? {
    let chars = Array(s.utf8)
    guard chars.count > 3 else { return nil }
    for i in 0..<(chars.count - 2) where chars[i] == 58 && chars[i + 1] == 47 && chars[i + 2] == 47 {
        return s.utf8.index(s.utf8.startIndex, offsetBy: i + 3)
    }
    return nil
}
