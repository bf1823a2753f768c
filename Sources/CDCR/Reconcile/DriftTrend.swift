/// Whether drift grows: the trend of a series of daily counts of new discrepancies (docs/RECONCILE.md,
/// "Trend"). The least-squares slope `b` of count against day, times the days spanned (`n − 1`), is
/// the fitted change across the window; relative to the window's mean it is `increasing` when it is
/// above +25 % of the mean and at least one discrepancy, `decreasing` below −25 % (and at least one),
/// else `stable`. A window with no discrepancy at all is `stable`.
public struct DriftTrend: Sendable, Equatable {
    public enum Direction: String, Sendable {
        case increasing, decreasing, stable
    }

    /// Daily counts, oldest first.
    public let daily: [Int]
    public let mean: Double
    /// Least-squares slope, discrepancies per day.
    public let slope: Double
    /// `slope × (n − 1) / mean`; 0 when the mean is 0.
    public let relativeChange: Double
    public let direction: Direction

    /// The share of the mean the fitted change must exceed.
    public static let threshold = 0.25

    public init(daily: [Int]) {
        self.daily = daily
        let n = Double(daily.count)
        let mean = daily.isEmpty ? 0 : Double(daily.reduce(0, +)) / n
        var slope = 0.0
        if daily.count >= 2 {
            let xMean = (n - 1) / 2
            var num = 0.0, den = 0.0
            for (x, y) in daily.enumerated() {
                num += (Double(x) - xMean) * (Double(y) - mean)
                den += (Double(x) - xMean) * (Double(x) - xMean)
            }
            slope = num / den
        }
        self.mean = mean
        self.slope = slope
        let change = slope * max(0, n - 1)
        relativeChange = mean > 0 ? change / mean : 0
        if mean > 0 && relativeChange > Self.threshold && change >= 1 {
            direction = .increasing
        } else if mean > 0 && relativeChange < -Self.threshold && change <= -1 {
            direction = .decreasing
        } else {
            direction = .stable
        }
    }
}

/// A table's (or the whole report's) migration audit status for a day (docs/RECONCILE.md, "Audit
/// status"), worst first: `reject` a run covering it failed, or a person rejected a repair that day
/// (the target deliberately differs); `overload` mass drift: at least the overload limit of items
/// open or queued at the end of the day, or queued that day; `partial` some items open, queued or
/// approved-not-applied at the end of the day (below the limit), or no run covering it finished that
/// day; `ok` none of these: a run finished that day, and nothing is left open.
public enum AuditStatus: String, Sendable, Comparable, CaseIterable {
    case ok, partial, overload, reject

    var rank: Int { Self.allCases.firstIndex(of: self)! }

    public static func < (a: AuditStatus, b: AuditStatus) -> Bool { a.rank < b.rank }

    /// The status and the reasons for it, from a day's facts.
    public static func evaluate(failedRuns: [String], rejected: Int, openAtEnd: Int, awaitingApply: Int, queued: Int,
                                finishedRuns: Int, overloadLimit: Int) -> (AuditStatus, [String]) {
        var reasons: [String] = []
        var status = AuditStatus.ok
        func raise(_ s: AuditStatus, _ reason: String) {
            status = max(status, s)
            reasons.append(reason)
        }
        for run in failedRuns { raise(.reject, "run \(run) failed") }
        if rejected > 0 { raise(.reject, "\(rejected) repairs rejected (the target deliberately differs)") }
        if openAtEnd >= overloadLimit { raise(.overload, "\(openAtEnd) items open or queued (limit \(overloadLimit))") }
        if queued >= overloadLimit { raise(.overload, "\(queued) items queued in the day (limit \(overloadLimit))") }
        if openAtEnd > 0 && openAtEnd < overloadLimit { raise(.partial, "\(openAtEnd) items open or queued") }
        if awaitingApply > 0 { raise(.partial, "\(awaitingApply) approved items not applied") }
        if finishedRuns == 0 { raise(.partial, "no run covering it finished that day") }
        return (status, reasons)
    }
}
