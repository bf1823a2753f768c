import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A child process started with posix_spawn, stdout and stderr to files. (Foundation's Process can
/// miss a child's exit when the test runner is busy; waitpid cannot.)
final class ChildProcess: @unchecked Sendable {
    // @unchecked Sendable: `status` is written by the thread calling wait/poll only.
    let pid: pid_t
    let outPath: String
    let errPath: String
    private var status: Int32?

    init(_ args: [String], env: [String: String]? = nil) throws {
        let base = FileManager.default.temporaryDirectory.appendingPathComponent("cdcr-child-\(UUID().uuidString)").path
        outPath = base + ".out"
        errPath = base + ".err"
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, outPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, errPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        let environment = (env ?? ProcessInfo.processInfo.environment).map { "\($0.key)=\($0.value)" }
        var argv: [UnsafeMutablePointer<CChar>?] = args.map { strdup($0) } + [nil]
        var envp: [UnsafeMutablePointer<CChar>?] = environment.map { strdup($0) } + [nil]
        defer { for p in argv { free(p) }; for p in envp { free(p) } }
        var pid: pid_t = 0
        let rc = posix_spawnp(&pid, args[0], &actions, nil, &argv, &envp)
        guard rc == 0 else { throw TestEnvironmentError("cannot start \(args[0]): \(String(cString: strerror(rc)))") }
        self.pid = pid
    }

    /// Waits for exit up to `timeout`, then kills. Returns the exit status (128+signal when signalled).
    @discardableResult
    func wait(timeout: Duration = .seconds(120)) -> Int32 {
        let deadline = ContinuousClock.now + timeout
        while !hasExited {
            if ContinuousClock.now > deadline {
                kill(pid, SIGKILL)
                _ = reap(block: true)
                break
            }
            usleep(20_000)
        }
        return status ?? -1
    }

    var hasExited: Bool { status != nil || reap(block: false) }

    private func reap(block: Bool) -> Bool {
        var raw: Int32 = 0
        let r = waitpid(pid, &raw, block ? 0 : WNOHANG)
        guard r == pid else { return false }
        let sig = raw & 0x7f
        status = sig == 0 ? (raw >> 8) & 0xff : 128 + sig
        return true
    }

    func signal(_ sig: Int32) { kill(pid, sig) }

    var stdout: String { (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? "" }
    var stderr: String { (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? "" }
}
