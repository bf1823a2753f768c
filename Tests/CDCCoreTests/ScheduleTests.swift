@testable import CDCCore
import Testing

@Suite("cron schedules, intervals and catch-up decisions (UTC)")
struct ScheduleTests {
    /// Unix seconds of a UTC civil time.
    func t(_ y: Int64, _ mo: Int, _ d: Int, _ h: Int64 = 0, _ mi: Int64 = 0, _ s: Int64 = 0) -> Int64 {
        CivilTime.days(year: y, month: mo, day: d) * 86_400 + h * 3_600 + mi * 60 + s
    }

    func next(_ expr: String, after: Int64) throws -> Int64? { try CronExpression(expr).next(after: after) }

    /// The first `n` fire times after `from`.
    func fires(_ expr: String, from: Int64, _ n: Int) throws -> [Int64] {
        let c = try CronExpression(expr)
        var out: [Int64] = []
        var at = from
        while out.count < n, let x = c.next(after: at) { out.append(x); at = x }
        return out
    }

    @Test("every minute, fixed times, steps and ranges")
    func basics() throws {
        #expect(try next("* * * * *", after: t(2026, 12, 1, 10, 0, 30)) == t(2026, 12, 1, 10, 1))
        // Strictly after: a time exactly on a slot gives the following one.
        #expect(try next("* * * * *", after: t(2026, 12, 1, 10, 1)) == t(2026, 12, 1, 10, 2))
        #expect(try next("30 2 * * *", after: t(2026, 12, 1, 3)) == t(2026, 12, 2, 2, 30))
        #expect(try fires("*/15 * * * *", from: t(2026, 12, 1, 10, 7), 3) == [t(2026, 12, 1, 10, 15), t(2026, 12, 1, 10, 30), t(2026, 12, 1, 10, 45)])
        #expect(try fires("0 9-17/4 * * *", from: t(2026, 12, 1), 4) == [t(2026, 12, 1, 9), t(2026, 12, 1, 13), t(2026, 12, 1, 17), t(2026, 12, 2, 9)])
        #expect(try fires("5,10-12 0 * * *", from: t(2026, 12, 1), 4) == [t(2026, 12, 1, 0, 5), t(2026, 12, 1, 0, 10), t(2026, 12, 1, 0, 11), t(2026, 12, 1, 0, 12)])
        // A/STEP runs from A to the field's end.
        #expect(try fires("50/5 * * * *", from: t(2026, 12, 1, 10), 3) == [t(2026, 12, 1, 10, 50), t(2026, 12, 1, 10, 55), t(2026, 12, 1, 11, 50)])
    }

    @Test("names of months and days, 7 is Sunday, across month and year ends")
    func names() throws {
        // 2026-12-01 is a Tuesday.
        #expect(try next("0 3 * * sun", after: t(2026, 12, 1)) == t(2026, 12, 6, 3))
        #expect(try next("0 3 * * 7", after: t(2026, 12, 1)) == t(2026, 12, 6, 3))
        #expect(try next("0 3 * * 0", after: t(2026, 12, 1)) == t(2026, 12, 6, 3))
        #expect(try fires("0 0 * * MON-FRI", from: t(2026, 12, 4, 12), 2) == [t(2026, 12, 7), t(2026, 12, 8)])
        #expect(try next("0 0 1 jan,jul *", after: t(2026, 12, 1)) == t(2027, 1, 1))
        #expect(try next("0 0 1 feb-mar *", after: t(2026, 12, 1)) == t(2027, 2, 1))
        #expect(try next("59 23 31 12 *", after: t(2026, 12, 31, 23, 59)) == t(2027, 12, 31, 23, 59))
        // 29 February: the next leap year.
        #expect(try next("0 0 29 2 *", after: t(2026, 12, 1)) == t(2028, 2, 29))
        #expect(try next("@weekly", after: t(2026, 12, 1)) == t(2026, 12, 6))
        #expect(try next("@monthly", after: t(2026, 12, 1)) == t(2027, 1, 1))
        #expect(try next("@hourly", after: t(2026, 12, 1, 10, 30)) == t(2026, 12, 1, 11))
    }

    @Test("day of month and day of week: either matches when both are restricted, as in Vixie cron")
    func domDowOr() throws {
        // The 13th, or any Friday: Friday 4 Dec comes before the 13th.
        #expect(try fires("0 0 13 * fri", from: t(2026, 12, 1), 4) == [t(2026, 12, 4), t(2026, 12, 11), t(2026, 12, 13), t(2026, 12, 18)])
        // A field that starts with * does not count: only Fridays, then only the 13th.
        #expect(try fires("0 0 * * fri", from: t(2026, 12, 1), 2) == [t(2026, 12, 4), t(2026, 12, 11)])
        #expect(try fires("0 0 13 * *", from: t(2026, 12, 1), 2) == [t(2026, 12, 13), t(2027, 1, 13)])
        // */2 starts with *, so both must match (Vixie's DOM_STAR): odd-dated Mondays, not every Monday.
        #expect(try fires("0 0 */2 * mon", from: t(2026, 12, 1), 2) == [t(2026, 12, 7), t(2026, 12, 21)])
    }

    @Test("malformed expressions are refused, naming the field")
    func refused() {
        for (expr, needle) in [("* * * *", "4 fields"), ("60 * * * *", "minute 60"), ("* 24 * * *", "hour 24"), ("* * 0 * *", "day-of-month 0"),
                               ("* * * 13 *", "month 13"), ("* * * * 8", "day-of-week 8"), ("* * * foo *", "month 'foo'"),
                               ("*/0 * * * *", "step '0'"), ("5-1 * * * *", "backwards"), ("1,,2 * * * *", "empty list"),
                               ("0 0 30 2 *", "never fires"), ("1/2/3 * * * *", "more than one")] {
            #expect(throws: ScheduleError.self) { try CronExpression(expr) }
            do { _ = try CronExpression(expr) } catch { #expect(error.description.contains(needle), "\(expr): \(error)") }
        }
    }

    @Test("intervals: every 5m, bare durations, slots anchored at the epoch")
    func intervals() throws {
        #expect(try JobSchedule(parsing: "every 5m") == .every(seconds: 300))
        #expect(try JobSchedule(parsing: "1h30m") == .every(seconds: 5_400))
        #expect(try JobSchedule(parsing: "every 2d") == .every(seconds: 172_800))
        #expect(try JobSchedule(parsing: "every 5m").next(after: t(2026, 12, 1, 10, 2, 10)) == t(2026, 12, 1, 10, 5))
        #expect(try JobSchedule(parsing: "*/5 * * * *").next(after: t(2026, 12, 1, 10, 2, 10)) == t(2026, 12, 1, 10, 5))
        #expect(throws: ScheduleError.self) { try JobSchedule(parsing: "every 30s") }
        #expect(throws: ScheduleError.self) { try JobSchedule(parsing: "every 5x") }
        #expect(throws: ScheduleError.self) { try JobSchedule(parsing: "every m") }
        #expect(try JobSchedule.seconds("90s") == 90 && JobSchedule.seconds("2h") == 7_200)
        #expect(throws: ScheduleError.self) { try JobSchedule.seconds("10") }
        #expect(throws: ScheduleError.self) { try JobSchedule.seconds("0m") }
        #expect(JobSchedule.durationText(5_400) == "1h30m")
        #expect(try JobSchedule(parsing: "0 2 * * *").longestGap(from: t(2026, 12, 1)) == 86_400)
        #expect(try JobSchedule(parsing: "0 3 * * sun").longestGap(from: t(2026, 12, 1)) == 7 * 86_400)
    }

    @Test("catch-up: one run for many missed slots, on time within the grace, nothing before the first slot")
    func decisions() throws {
        let hourly = try JobSchedule(parsing: "0 * * * *")
        // Never ran: wait for the first slot (nothing was missed).
        #expect(ScheduleDecision.decide(hourly, lastSlot: nil, now: t(2026, 12, 1, 10, 20)) == .wait(until: t(2026, 12, 1, 11)))
        // Last ran for 10:00; at 10:20 the next is 11:00.
        #expect(ScheduleDecision.decide(hourly, lastSlot: t(2026, 12, 1, 10), now: t(2026, 12, 1, 10, 20)) == .wait(until: t(2026, 12, 1, 11)))
        // At 11:00:30: on time.
        #expect(ScheduleDecision.decide(hourly, lastSlot: t(2026, 12, 1, 10), now: t(2026, 12, 1, 11, 0, 30)) == .run(slot: t(2026, 12, 1, 11), catchUp: false))
        // Down from 10:05 to 15:20: five slots missed, one catch-up run for the newest (15:00).
        let d = ScheduleDecision.decide(hourly, lastSlot: t(2026, 12, 1, 10), now: t(2026, 12, 1, 15, 20))
        #expect(d == .run(slot: t(2026, 12, 1, 15), catchUp: true))
        // After it, the next slot is 16:00: no second catch-up.
        #expect(ScheduleDecision.decide(hourly, lastSlot: t(2026, 12, 1, 15), now: t(2026, 12, 1, 15, 21)) == .wait(until: t(2026, 12, 1, 16)))
        // One slot, but 10 minutes late: a catch-up.
        #expect(ScheduleDecision.decide(hourly, lastSlot: t(2026, 12, 1, 10), now: t(2026, 12, 1, 11, 10)) == .run(slot: t(2026, 12, 1, 11), catchUp: true))
        // A minute schedule down for 30 days: still one decision, quickly.
        let everyMinute = try JobSchedule(parsing: "* * * * *")
        #expect(ScheduleDecision.decide(everyMinute, lastSlot: t(2026, 11, 1), now: t(2026, 12, 1, 0, 0, 5)) == .run(slot: t(2026, 12, 1), catchUp: true))
    }
}
