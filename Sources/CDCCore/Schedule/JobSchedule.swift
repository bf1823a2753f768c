/// When a reconcile job runs: a cron expression (UTC), or every fixed interval (`every 5m`),
/// whose slots are the multiples of the interval since 1970-01-01 00:00 UTC, so they do not move
/// when cdcr restarts.
public enum JobSchedule: Sendable, Equatable, CustomStringConvertible {
    case cron(CronExpression)
    case every(seconds: Int64)

    /// `every 5m`, `every 1h30m` (or the interval alone: `15m`), else a 5-field cron expression.
    public init(parsing text: String) throws(ScheduleError) {
        let t = text.trimmingWhitespace()
        let lower = t.lowercased()
        if lower.hasPrefix("every ") || (lower.first?.isNumber == true && !lower.contains(" ")) {
            let interval = lower.hasPrefix("every ") ? String(lower.dropFirst(6)) : lower
            let seconds = try Self.seconds(interval)
            guard seconds >= 60 else { throw ScheduleError("interval '\(interval)' is shorter than the smallest of 1 minute") }
            self = .every(seconds: seconds)
        } else {
            self = .cron(try CronExpression(t))
        }
    }

    /// `90s`, `5m`, `1h30m`, `2d`: a duration in whole seconds (at least one number-unit pair).
    public static func seconds(_ text: String) throws(ScheduleError) -> Int64 {
        let s = text.trimmingWhitespace().lowercased()
        var total: Int64 = 0
        var number: Int64?
        var pairs = 0
        for c in s {
            if let d = c.wholeNumberValue, c.isASCII {
                let (m, o1) = (number ?? 0).multipliedReportingOverflow(by: 10)
                let (v, o2) = m.addingReportingOverflow(Int64(d))
                guard !o1, !o2, v < 1_000_000_000 else { throw ScheduleError("duration '\(text)' is too long") }
                number = v
                continue
            }
            let unit: Int64
            switch c {
            case "s": unit = 1
            case "m": unit = 60
            case "h": unit = 3_600
            case "d": unit = 86_400
            default: throw ScheduleError("duration '\(text)': '\(c)' is not a unit (s, m, h, d)")
            }
            guard let n = number else { throw ScheduleError("duration '\(text)': unit '\(c)' has no number before it") }
            total += n * unit
            number = nil
            pairs += 1
        }
        guard pairs > 0, number == nil else { throw ScheduleError("duration '\(text)' must be numbers with units, like 90s, 5m, 1h30m, 2d") }
        guard total > 0 else { throw ScheduleError("duration '\(text)' must be longer than 0") }
        return total
    }

    /// The first slot strictly after `after` (Unix seconds).
    public func next(after: Int64) -> Int64? {
        switch self {
        case let .cron(c): return c.next(after: after)
        case let .every(n): return CronExpression.floorDiv(after, n) * n + n
        }
    }

    /// The longest gap between consecutive slots over the year after `from` (the interval of
    /// `every`): what "no successful run within twice the schedule" is measured against.
    public func longestGap(from: Int64) -> Int64 {
        switch self {
        case let .every(n): return n
        case .cron:
            var longest: Int64 = 0
            guard var t = next(after: from) else { return 0 }
            // Ten thousand slots or a year, whichever ends first: enough for any calendar pattern
            // a reconcile job has, bounded for a every-minute schedule.
            for _ in 0..<10_000 {
                guard let n = next(after: t), n - from <= 366 * 86_400 else { break }
                longest = max(longest, n - t)
                t = n
            }
            return longest
        }
    }

    public var description: String {
        switch self {
        case let .cron(c): return c.description
        case let .every(n): return "every \(Self.durationText(n))"
        }
    }

    /// `1h30m`, `45s`.
    public static func durationText(_ seconds: Int64) -> String {
        var rest = seconds
        var out = ""
        for (unit, size) in [("d", Int64(86_400)), ("h", 3_600), ("m", 60), ("s", 1)] where rest >= size {
            out += "\(rest / size)\(unit)"
            rest %= size
        }
        return out.isEmpty ? "0s" : out
    }
}

/// What the scheduler does for one job at `now`, given the slot the job last ran for.
public enum ScheduleDecision: Sendable, Equatable {
    /// Nothing yet; the next slot comes at `at`.
    case wait(until: Int64)
    /// Run now for `slot`. `catchUp`: slots were missed (cdcr was down, or an earlier run took
    /// longer than the interval); one run stands for all of them.
    case run(slot: Int64, catchUp: Bool)

    /// Decides from the slot the last scheduled or catch-up run was for (nil: the job never ran,
    /// so it waits for its first slot: nothing was missed). A slot is on time within `grace`
    /// seconds; later, or with a later slot also passed, the run is a catch-up for the newest
    /// passed slot, so the next one is the first after now.
    public static func decide(_ schedule: JobSchedule, lastSlot: Int64?, now: Int64, grace: Int64 = 120) -> ScheduleDecision {
        guard let lastSlot else { return .wait(until: schedule.next(after: now) ?? Int64.max) }
        guard let due = schedule.next(after: lastSlot) else { return .wait(until: Int64.max) }
        if due > now { return .wait(until: due) }
        // The newest slot that has passed: bounded walk (a minute schedule down for a week is
        // 10 080 steps; beyond the bound, now stands for the slot).
        var newest = due
        var steps = 0
        while let n = schedule.next(after: newest), n <= now {
            newest = n
            steps += 1
            if steps >= 200_000 { newest = now; break }
        }
        return .run(slot: newest, catchUp: newest != due || now - due > grace)
    }
}
