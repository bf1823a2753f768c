/// A libpq connection string checked before libpq sees it: libpq echoes a malformed one whole in its
/// error text (password included), and a malformed one is a configuration error, not an outage.
///
/// Accepts the two forms libpq does: a URL (`postgresql://` or `postgres://`, then
/// `[user[:password]@][host[:port][,…]][/dbname][?key=value&…]`, IPv6 hosts in brackets, every part
/// percent-encoded) and `key=value` pairs (values optionally single-quoted, with `\` escapes).
public struct ConnectionString: Sendable {
    /// The password in every form it may take in a message: as written, and percent-decoded.
    public let secrets: [String]

    /// Why a connection string is malformed; never contains the string itself.
    public struct Malformed: Error, Sendable, CustomStringConvertible {
        public let description: String
    }

    /// Parses `text`, or throws a `Malformed` that names the problem without repeating the text.
    public init(validating text: String) throws(Malformed) {
        if text.hasPrefix("postgresql://") || text.hasPrefix("postgres://") {
            secrets = try Self.validateURL(text)
        } else if text.contains("=") {
            secrets = try Self.validatePairs(text)
        } else {
            throw Malformed(description: "neither a postgresql:// URL nor key=value pairs")
        }
    }

    /// The secrets of `text` if it parses (best effort: nothing for a malformed one, whose whole text
    /// is then scrubbed by `scrub` instead).
    public static func secrets(of text: String) -> [String] {
        (try? ConnectionString(validating: text))?.secrets ?? []
    }

    /// `message` with every form of the password in `conninfo` replaced by `***`; when `conninfo`
    /// cannot be parsed, with `conninfo` itself and each of its `:`/`@`/`=`-separated parts of four
    /// or more characters replaced, so no piece of a malformed string survives in a log line.
    public static func scrub(_ message: String, conninfo: String) -> String {
        var out = message
        if let parsed = try? ConnectionString(validating: conninfo) {
            for s in parsed.secrets.sorted(by: { $0.count > $1.count }) where !s.isEmpty {
                out = out.replacing(s, with: "***")
            }
            return out
        }
        out = out.replacing(conninfo, with: "***")
        let separators: Set<Character> = [":", "@", "=", " ", "/", "?", "&", "[", "]", "'"]
        for piece in conninfo.split(whereSeparator: { separators.contains($0) }).sorted(by: { $0.count > $1.count }) where piece.count >= 4 {
            out = out.replacing(String(piece), with: "***")
        }
        return out
    }

    private static func validateURL(_ text: String) throws(Malformed) -> [String] {
        let rest = text[text.firstRange(of: "://")!.upperBound...]
        let beforeQuery = rest.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        let main = beforeQuery[0]
        var secrets: [String] = []
        var hostPart = main
        if let at = main.lastIndex(of: "@") {
            let userinfo = main[..<at]
            hostPart = main[main.index(after: at)...]
            if let colon = userinfo.firstIndex(of: ":") {
                let password = String(userinfo[userinfo.index(after: colon)...])
                secrets.append(password)
                secrets.append(try percentDecoded(password, part: "password"))
            }
            _ = try percentDecoded(String(userinfo.prefix { $0 != ":" }), part: "user")
        }
        let slash = hostPart.firstIndex(of: "/")
        let hosts = slash.map { hostPart[..<$0] } ?? hostPart
        if let slash { _ = try percentDecoded(String(hostPart[hostPart.index(after: slash)...]), part: "database name") }
        for host in hosts.split(separator: ",", omittingEmptySubsequences: false) {
            try validateHost(host)
        }
        if beforeQuery.count == 2 {
            for param in beforeQuery[1].split(separator: "&") {
                guard let eq = param.firstIndex(of: "="), eq != param.startIndex else {
                    throw Malformed(description: "a query parameter is not key=value")
                }
                let key = try percentDecoded(String(param[..<eq]), part: "query parameter name")
                let value = String(param[param.index(after: eq)...])
                let decoded = try percentDecoded(value, part: "query parameter \(key)")
                if key == "password" { secrets += [value, decoded] }
            }
        }
        return secrets
    }

    private static func validateHost(_ host: Substring) throws(Malformed) {
        var h = host
        if h.hasPrefix("[") {
            guard let close = h.firstIndex(of: "]") else { throw Malformed(description: "an IPv6 host opens '[' without closing it") }
            h = h[h.index(after: close)...]
            if !h.isEmpty && !h.hasPrefix(":") { throw Malformed(description: "unexpected text after an IPv6 host") }
        } else if h.contains("[") || h.contains("]") {
            throw Malformed(description: "a bracket outside an IPv6 host")
        } else {
            _ = try percentDecoded(String(h.prefix { $0 != ":" }), part: "host")
        }
        if let colon = h.lastIndex(of: ":") {
            let port = h[h.index(after: colon)...]
            guard !port.isEmpty, port.allSatisfy(\.isASCII), let n = Int(port), (1...65535).contains(n) else {
                throw Malformed(description: "the port is not a number from 1 to 65535")
            }
        }
    }

    private static func percentDecoded(_ text: String, part: String) throws(Malformed) -> String {
        var bytes: [UInt8] = []
        var it = Array(text.utf8)[...]
        while let b = it.popFirst() {
            guard b == UInt8(ascii: "%") else { bytes.append(b); continue }
            guard it.count >= 2, let hi = hexValue(it.removeFirst()), let lo = hexValue(it.removeFirst()) else {
                throw Malformed(description: "a bad percent-escape in the \(part)")
            }
            bytes.append(hi << 4 | lo)
        }
        guard let s = String(validating: bytes, as: UTF8.self) else { throw Malformed(description: "the \(part) is not UTF-8 once decoded") }
        if s.utf8.contains(0) { throw Malformed(description: "the \(part) contains a NUL") }
        return s
    }

    private static func hexValue(_ b: UInt8) -> UInt8? {
        switch b {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): b - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): b - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): b - UInt8(ascii: "A") + 10
        default: nil
        }
    }

    /// `key=value …` as libpq reads it: keys of letters, digits and `_`; values bare or single-quoted.
    private static func validatePairs(_ text: String) throws(Malformed) -> [String] {
        var chars = Array(text)[...]
        var secrets: [String] = []
        func skipSpace() { while let c = chars.first, c.isWhitespace { chars.removeFirst() } }
        skipSpace()
        while !chars.isEmpty {
            var key = ""
            while let c = chars.first, c.isLetter || c.isNumber || c == "_" { key.append(c); chars.removeFirst() }
            skipSpace()
            guard !key.isEmpty, chars.first == "=" else { throw Malformed(description: "expected key=value pairs") }
            chars.removeFirst()
            skipSpace()
            var value = ""
            if chars.first == "'" {
                chars.removeFirst()
                var closed = false
                while let c = chars.popFirst() {
                    if c == "\\" {
                        guard let next = chars.popFirst() else { break }
                        value.append(next)
                    } else if c == "'" {
                        closed = true
                        break
                    } else {
                        value.append(c)
                    }
                }
                if !closed { throw Malformed(description: "a quoted value of \(key) is not closed") }
            } else {
                while let c = chars.first, !c.isWhitespace {
                    if c == "\\" { chars.removeFirst(); if let n = chars.popFirst() { value.append(n) }; continue }
                    value.append(c)
                    chars.removeFirst()
                }
            }
            if key == "password" { secrets.append(value) }
            skipSpace()
        }
        return secrets
    }
}
