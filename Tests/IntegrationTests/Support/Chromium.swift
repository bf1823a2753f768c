import CDCCore
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Headless Chromium driven over the DevTools protocol on a pipe (`--remote-debugging-pipe`: the
/// browser reads commands on fd 3 and writes answers and events on fd 4, each a JSON text ended by
/// NUL), so a test can load a page, type, click with real mouse events, read the DOM and take
/// screenshots without a WebSocket client.
final class Chromium {
    let pid: pid_t
    private let commands: Int32
    private let answers: Int32
    private var buffer: [UInt8] = []
    private var nextID = 1
    private var session: String?
    /// Console errors, uncaught exceptions and CSP or network errors the page reported.
    private(set) var problems: [String] = []

    static var binary: String? {
        ["/usr/bin/chromium", "/usr/bin/chromium-browser"].first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    init(binary: String, profile: String, width: Int = 1200, height: Int = 1000) throws {
        // Pipe ends moved above fd 9, so the child's dup2 onto 3 and 4 never clobbers one of them.
        func highPipe() -> (Int32, Int32) {
            var fds: [Int32] = [0, 0]
            _ = pipe(&fds)
            let r = fcntl(fds[0], F_DUPFD_CLOEXEC, 10), w = fcntl(fds[1], F_DUPFD_CLOEXEC, 10)
            close(fds[0]); close(fds[1])
            return (r, w)
        }
        let (browserReads, weWrite) = highPipe()
        let (weRead, browserWrites) = highPipe()
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, browserReads, 3)
        posix_spawn_file_actions_adddup2(&actions, browserWrites, 4)
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 2, profile + ".log", O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        let args = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe", "--no-first-run",
                    "--user-data-dir=\(profile)", "--window-size=\(width),\(height)", "about:blank"]
        var argv: [UnsafeMutablePointer<CChar>?] = args.map { strdup($0) } + [nil]
        var envp: [UnsafeMutablePointer<CChar>?] = ProcessInfo.processInfo.environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { for p in argv + envp { free(p) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, binary, &actions, nil, &argv, &envp)
        close(browserReads)
        close(browserWrites)
        guard rc == 0 else { throw TestEnvironmentError("cannot start \(binary): \(String(cString: strerror(rc)))") }
        self.pid = pid
        commands = weWrite
        answers = weRead
    }

    deinit {
        close(commands)
        close(answers)
        kill(pid, SIGKILL)
        var status: Int32 = 0
        waitpid(pid, &status, 0)
    }

    /// Sends a command (to the attached page unless `browser`) and returns its result.
    @discardableResult
    func send(_ method: String, _ params: [(String, JSONValue)] = [], browser: Bool = false, timeout: Double = 30) throws -> JSONValue {
        let id = nextID
        nextID += 1
        var message: [(String, JSONValue)] = [("id", .number(String(id))), ("method", .string(method)), ("params", .object(params))]
        if !browser, let session { message.append(("sessionId", .string(session))) }
        let bytes = Array(JSONValue.object(message).serialized.utf8) + [0]
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes { write(commands, $0.baseAddress, $0.count) }
            guard n > 0 else { throw TestEnvironmentError("chromium closed its command pipe") }
            sent += n
        }
        let deadline = Date().addingTimeInterval(timeout)
        while true {
            let m = try readMessage(until: deadline)
            if m["id"]?.int64Value == Int64(id) {
                if let error = m["error"] { throw TestEnvironmentError("\(method): \(error.serialized)") }
                return m["result"] ?? .null
            }
            note(m)
        }
    }

    private func note(_ event: JSONValue) {
        let params = event["params"]
        switch event["method"]?.stringValue {
        case "Runtime.exceptionThrown"?:
            problems.append("exception: " + (params?["exceptionDetails"]?.serialized ?? ""))
        case "Runtime.consoleAPICalled"? where params?["type"]?.stringValue == "error":
            problems.append("console.error: " + (params?["args"]?.serialized ?? ""))
        case "Log.entryAdded"? where params?["entry"]?["level"]?.stringValue == "error":
            problems.append("log: " + (params?["entry"]?["text"]?.stringValue ?? "") + " " + (params?["entry"]?["url"]?.stringValue ?? ""))
        default: break
        }
    }

    private func readMessage(until deadline: Date) throws -> JSONValue {
        while true {
            if let end = buffer.firstIndex(of: 0) {
                let text = String(decoding: buffer[..<end], as: UTF8.self)
                buffer.removeSubrange(...end)
                return try JSONParser.parse(text)
            }
            let left = Int32(max(0, deadline.timeIntervalSinceNow * 1_000))
            var p = pollfd(fd: answers, events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, left) > 0 else { throw TestEnvironmentError("chromium did not answer in time") }
            var chunk = [UInt8](repeating: 0, count: 1 << 16)
            let n = chunk.withUnsafeMutableBytes { read(answers, $0.baseAddress, $0.count) }
            guard n > 0 else { throw TestEnvironmentError("chromium closed its answer pipe") }
            buffer += chunk[..<n]
        }
    }

    /// Opens `url` in a new page and attaches to it, with console and log events on.
    func open(_ url: String) throws {
        let target = try send("Target.createTarget", [("url", .string("about:blank"))], browser: true)
        let attached = try send("Target.attachToTarget", [("targetId", target["targetId"] ?? .null), ("flatten", .bool(true))], browser: true)
        session = attached["sessionId"]?.stringValue
        for domain in ["Page.enable", "Runtime.enable", "Log.enable"] { try send(domain) }
        try send("Page.navigate", [("url", .string(url))])
        guard waitUntil({ try self.evaluate("document.readyState") == .string("complete") }) else {
            throw TestEnvironmentError("\(url) did not load")
        }
    }

    /// The value of a JavaScript expression (promises awaited).
    func evaluate(_ expression: String) throws -> JSONValue {
        let r = try send("Runtime.evaluate", [("expression", .string(expression)), ("returnByValue", .bool(true)), ("awaitPromise", .bool(true))])
        if let e = r["exceptionDetails"] { throw TestEnvironmentError("\(expression): \(e.serialized)") }
        return r["result"]?["value"] ?? .null
    }

    /// Polls `condition` every 100 ms for up to `timeout` seconds.
    func waitUntil(timeout: Double = 15, _ condition: () throws -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if (try? condition()) == true { return true }
            usleep(100_000)
        }
        return false
    }

    /// A real mouse click (pressed and released) at the middle of the element `selector`.
    func click(_ selector: String) throws {
        let rect = try evaluate("""
            (function () { var e = document.querySelector(\(JSONValue.string(selector).serialized)); e.scrollIntoView({block: "center"});
              var r = e.getBoundingClientRect(); return [r.left + r.width / 2, r.top + r.height / 2]; })()
            """)
        guard case let .array(xy) = rect, xy.count == 2 else { throw TestEnvironmentError("no element \(selector)") }
        for type in ["mousePressed", "mouseReleased"] {
            try send("Input.dispatchMouseEvent", [("type", .string(type)), ("x", xy[0]), ("y", xy[1]), ("button", .string("left")),
                                                  ("clickCount", .number("1"))])
        }
    }

    /// Focuses `selector`, clears it and types `text` as keyboard input.
    func type(_ selector: String, _ text: String) throws {
        _ = try evaluate("(function () { var e = document.querySelector(\(JSONValue.string(selector).serialized)); e.focus(); e.value = ''; return true; })()")
        try send("Input.insertText", [("text", .string(text))])
    }

    /// A PNG of the whole page.
    func screenshot(to path: String) throws {
        let r = try send("Page.captureScreenshot", [("format", .string("png")), ("captureBeyondViewport", .bool(true))])
        guard let b64 = r["data"]?.stringValue, let data = Data(base64Encoded: b64) else { throw TestEnvironmentError("no screenshot data") }
        try data.write(to: URL(fileURLWithPath: path))
    }
}
