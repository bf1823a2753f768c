/// One observation of a partition: where the group's committed offset and the log end were.
public struct LagSample: Sendable, Equatable {
    /// Seconds since the epoch.
    public let time: Double
    /// The group's committed offset (next offset to read); negative when nothing is committed.
    public let committed: Int64
    public let end: Int64

    public init(time: Double, committed: Int64, end: Int64) {
        self.time = time
        self.committed = committed
        self.end = end
    }

    public var lag: Int64 { max(0, end - max(committed, 0)) }
}

/// A partition's health, by Burrow's rules (see README "Consumer lag").
public enum LagStatus: String, Sendable, Comparable, CaseIterable {
    case ok = "OK", warn = "WARN", stall = "STALL", stop = "STOP", rewind = "REWIND"

    /// The group-level verdict this status contributes to.
    public var groupStatus: GroupStatus {
        switch self {
        case .ok: .ok
        case .warn: .warn
        case .stall, .stop, .rewind: .err
        }
    }

    public static func < (a: LagStatus, b: LagStatus) -> Bool {
        allCases.firstIndex(of: a)! < allCases.firstIndex(of: b)!
    }
}

public enum GroupStatus: String, Sendable, Comparable {
    case ok = "OK", warn = "WARN", err = "ERR"

    public static func < (a: GroupStatus, b: GroupStatus) -> Bool {
        let order: [GroupStatus] = [.ok, .warn, .err]
        return order.firstIndex(of: a)! < order.firstIndex(of: b)!
    }
}

/// Evaluates a partition's samples over a sliding window, after Burrow:
/// - REWIND: the committed offset went backwards within the window;
/// - STOP: lag > 0 and the committed offset has not moved for longer than the window;
/// - STALL: lag > 0 and the committed offset did not move across the window's samples;
/// - WARN: the lag grew across the window (never shrinking between samples) while commits moved;
/// - OK otherwise, and always when the newest lag is 0.
public enum LagEvaluator {
    public static func evaluate(_ history: [LagSample], window: Double, now: Double) -> LagStatus {
        let samples = history.sorted { $0.time < $1.time }
        guard let latest = samples.last else { return .ok }
        let inWindow = samples.filter { $0.time >= now - window }
        let considered = inWindow.count >= 2 ? inWindow : Array(samples.suffix(2))
        for (a, b) in zip(considered, considered.dropFirst()) where b.committed < a.committed && a.committed >= 0 {
            return .rewind
        }
        if latest.lag == 0 { return .ok }
        // When did the committed offset last change (as far as the history shows)?
        var lastMove = samples.first!.time
        for (a, b) in zip(samples, samples.dropFirst()) where a.committed != b.committed { lastMove = b.time }
        if samples.count >= 2, now - lastMove > window { return .stop }
        if considered.count >= 2, considered.allSatisfy({ $0.committed == latest.committed }) { return .stall }
        if considered.count >= 2 {
            let lags = considered.map(\.lag)
            if lags.last! > lags.first!, zip(lags, lags.dropFirst()).allSatisfy({ $0 <= $1 }) { return .warn }
        }
        return .ok
    }

    /// ERR if any partition is STALL, STOP or REWIND, else WARN if any is WARN, else OK.
    public static func group(_ statuses: [LagStatus]) -> GroupStatus {
        statuses.map(\.groupStatus).max() ?? .ok
    }
}
