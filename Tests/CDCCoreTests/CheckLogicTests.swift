@testable import CDCCore
import Testing

@Suite("checks: exact decimals, tolerances, group comparison, type compatibility, expression shapes")
struct CheckLogicTests {
    @Test("decimals parse exactly and their differences are exact")
    func decimals() throws {
        let a = try #require(ExactDecimal("100.02")), b = try #require(ExactDecimal("100.0000"))
        #expect(ExactDecimal.absoluteDifference(a, b)?.description == "0.0200")
        #expect(ExactDecimal("-0.5")?.description == "-0.5")
        #expect(ExactDecimal("12345678901234567890123456.78")?.description == "12345678901234567890123456.78")
        #expect(ExactDecimal("1e5") == nil && ExactDecimal("NaN") == nil && ExactDecimal("") == nil && ExactDecimal("1.2.3") == nil)
    }

    @Test("a 0.02 difference fails at absolute 0.01 and passes at 0.05; exactly at the bound passes; relative is of the source")
    func tolerances() {
        let tight = Tolerance(absolute: ExactDecimal("0.01")), loose = Tolerance(absolute: ExactDecimal("0.05"))
        #expect(!tight.accepts(source: "1234.56", target: "1234.58"))
        #expect(loose.accepts(source: "1234.56", target: "1234.58"))
        #expect(Tolerance(absolute: ExactDecimal("0.02")).accepts(source: "1234.56", target: "1234.58"))
        #expect(Tolerance.exact.accepts(source: "1.50", target: "1.5"))
        #expect(!Tolerance.exact.accepts(source: "1.50", target: "1.51"))
        #expect(Tolerance(relative: 0.01).accepts(source: "1000", target: "1009"))
        #expect(!Tolerance(relative: 0.01).accepts(source: "1000", target: "1011"))
        #expect(Tolerance.exact.accepts(source: nil, target: nil) && !loose.accepts(source: "1", target: nil))
        #expect(!loose.accepts(source: "2026-01-01 00:00:00", target: "2026-01-02 00:00:00"))
    }

    @Test("groups: missing, extra and out of tolerance, in key order")
    func groups() {
        let s: [[String?]] = [["d1", "new", "3", "10.00"], ["d1", "paid", "2", "5.00"], ["d2", "new", "1", "1.00"]]
        let t: [[String?]] = [["d1", "new", "3", "10.02"], ["d2", "new", "1", "1.0"], ["d3", "x", "1", "1"]]
        let c = GroupComparison.compare(source: s, target: t, keyCount: 2, tolerances: [.exact, Tolerance(absolute: ExactDecimal("0.01"))])
        #expect(c.missing == [["d1", "paid"]])
        #expect(c.extra == [["d3", "x"]])
        #expect(c.outOfTolerance == [MeasureMismatch(key: ["d1", "new"], measure: 1, source: "10.00", target: "10.02")])
        #expect(!c.passes)
        let ok = GroupComparison.compare(source: s, target: s, keyCount: 2, tolerances: [])
        #expect(ok.passes && ok.sourceGroups == 3)
    }

    @Test("documented widening pairs are compatible; narrowing and kind changes are not")
    func types() {
        #expect(typeVerdict(source: "integer", target: "integer") == .same)
        #expect(typeVerdict(source: "integer", target: "bigint") == .compatible)
        #expect(typeVerdict(source: "character varying(20)", target: "text") == .compatible)
        #expect(typeVerdict(source: "character varying(20)", target: "character varying(30)") == .compatible)
        #expect(typeVerdict(source: "numeric(12,2)", target: "numeric(14,2)") == .compatible)
        #expect(typeVerdict(source: "numeric(12,2)", target: "numeric") == .compatible)
        #expect(typeVerdict(source: "timestamp(3) without time zone", target: "timestamp without time zone") == .compatible)
        #expect(typeVerdict(source: "json", target: "jsonb") == .compatible)
        #expect(typeVerdict(source: "integer", target: "numeric(10,0)") == .compatible)
        #expect(typeVerdict(source: "bigint", target: "integer") == .different)
        #expect(typeVerdict(source: "integer", target: "text") == .different)
        #expect(typeVerdict(source: "numeric(12,2)", target: "numeric(10,0)") == .different)
        #expect(typeVerdict(source: "numeric(12,2)", target: "numeric(14,4)") == .different)
        #expect(typeVerdict(source: "character varying(20)", target: "character varying(10)") == .different)
        #expect(typeVerdict(source: "text", target: "character varying(10)") == .different)
        #expect(typeVerdict(source: "timestamp with time zone", target: "timestamp without time zone") == .different)
    }

    @Test("group-by expressions: one expression over the row; statements, comments, subqueries and lists refused")
    func expressions() {
        #expect(expressionShapeProblem("date_trunc('day', created_at)") == nil)
        #expect(expressionShapeProblem("coalesce(status, 'none; -- not a comment')") == nil)
        #expect(expressionShapeProblem("\"Select\"") == nil)
        #expect(expressionShapeProblem("status); DROP TABLE customers; --") != nil)
        #expect(expressionShapeProblem("(SELECT pg_sleep(5))") != nil)
        #expect(expressionShapeProblem("status, id") != nil)
        #expect(expressionShapeProblem("status /* x */") != nil)
        #expect(expressionShapeProblem("$1") != nil)
        #expect(queryShapeProblem("SELECT status, count(*) FROM orders GROUP BY 1") == nil)
        #expect(queryShapeProblem("SELECT 1; DELETE FROM customers") != nil)
        #expect(queryShapeProblem("DELETE FROM customers RETURNING id") != nil)
        #expect(queryShapeProblem("SELECT 1 -- ) x") != nil)
    }

    @Test("measures parse to a function and an identifier, never SQL")
    func measures() {
        #expect(MeasureSpec(parsing: "count(*)") == MeasureSpec(function: .count, column: nil))
        #expect(MeasureSpec(parsing: " SUM( Amount ) ") == MeasureSpec(function: .sum, column: "amount"))
        #expect(MeasureSpec(parsing: "count(distinct customer_id)") == MeasureSpec(function: .countDistinct, column: "customer_id"))
        #expect(MeasureSpec(parsing: "max(\"Odd \"\"Name\")") == MeasureSpec(function: .max, column: "Odd \"Name"))
        #expect(MeasureSpec(parsing: "sum(amount); drop table x") == nil)
        #expect(MeasureSpec(parsing: "sum(amount * 2)") == nil)
        #expect(MeasureSpec(parsing: "avg(amount)") == nil)
        #expect(MeasureSpec(parsing: "sum(\"a\"\"; drop\")")?.column == "a\"; drop")
    }
}
