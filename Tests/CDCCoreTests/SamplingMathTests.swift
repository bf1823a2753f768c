@testable import CDCCore
import Testing

/// Expected values computed independently (Python's `statistics.NormalDist` and the textbook
/// Wilson formula), so the tests fail on any slip in the coefficients or the formulas.
@Suite("sampling math: normal quantile, sample size, Wilson interval")
struct SamplingMathTests {
    @Test("z for a confidence matches the normal quantile tables", arguments: [
        (0.80, 1.2815515655446008), (0.90, 1.6448536269514715), (0.95, 1.9599639845400536),
        (0.99, 2.5758293035489), (0.999, 3.2905267314919255),
    ])
    func zValues(confidence: Double, expected: Double) {
        #expect(abs(SamplingMath.z(confidence: confidence) - expected) < 1e-8)
    }

    @Test("the quantile is odd around ½ and right in both tails")
    func quantileTails() {
        #expect(abs(SamplingMath.normalQuantile(0.5)) < 1e-12)
        #expect(abs(SamplingMath.normalQuantile(0.001) + 3.090232306167813) < 1e-8)
        #expect(abs(SamplingMath.normalQuantile(0.999) - 3.090232306167813) < 1e-8)
        #expect(abs(SamplingMath.normalQuantile(1e-9) + 5.997807015007686) < 1e-7)
    }

    @Test("the pure logarithm agrees with known values")
    func logarithm() {
        #expect(abs(SamplingMath.naturalLog(1) - 0) < 1e-15)
        #expect(abs(SamplingMath.naturalLog(2) - 0.6931471805599453) < 1e-15)
        #expect(abs(SamplingMath.naturalLog(10) - 2.302585092994046) < 1e-14)
        #expect(abs(SamplingMath.naturalLog(1e-9) + 20.72326583694641) < 1e-12)
    }

    @Test("sample size: z²/4E², then the finite population correction")
    func sampleSizes() {
        // n₀ = 2.5758² · ¼ / 0.01² = 16,587.24: infinite-ish populations need 16,588 (rounded up).
        #expect(SamplingMath.sampleSize(confidence: 0.99, margin: 0.01, population: 1_000_000_000_000) == 16_588)
        #expect(SamplingMath.sampleSize(confidence: 0.99, margin: 0.01, population: 10_000_000) == 16_560)
        #expect(SamplingMath.sampleSize(confidence: 0.99, margin: 0.01, population: 20_000) == 9_068)
        #expect(SamplingMath.sampleSize(confidence: 0.99, margin: 0.005, population: 10_000_000) == 65_912)
        // The classic 384 for ±5 % at 95 %, 278 of a population of 1,000.
        #expect(SamplingMath.sampleSize(confidence: 0.95, margin: 0.05, population: 1_000_000_000) == 385)
        #expect(SamplingMath.sampleSize(confidence: 0.95, margin: 0.05, population: 1_000) == 278)
        // Never more than the population.
        #expect(SamplingMath.sampleSize(confidence: 0.99, margin: 0.001, population: 50) == 50)
    }

    @Test("Wilson score interval: textbook values, zero successes, the finite population correction")
    func wilson() {
        func close(_ a: (low: Double, high: Double), _ lo: Double, _ hi: Double) -> Bool { abs(a.low - lo) < 1e-9 && abs(a.high - hi) < 1e-9 }
        #expect(close(SamplingMath.wilsonInterval(successes: 10, n: 100, confidence: 0.95), 0.0552291370606751, 0.17436566150491345))
        #expect(close(SamplingMath.wilsonInterval(successes: 81, n: 263, confidence: 0.95), 0.2552885198782743, 0.3662095769828001))
        #expect(close(SamplingMath.wilsonInterval(successes: 0, n: 50, confidence: 0.95), 0, 0.0713475991333587))
        // 20 of 2,000 drawn from 20,000: narrower than without the correction.
        let corrected = SamplingMath.wilsonInterval(successes: 20, n: 2_000, confidence: 0.95, population: 20_000)
        #expect(close(corrected, 0.006626606160981858, 0.015064638160722435))
        let plain = SamplingMath.wilsonInterval(successes: 20, n: 2_000, confidence: 0.95)
        #expect(plain.high - plain.low > corrected.high - corrected.low)
        // The whole population sampled: the rate is known exactly.
        #expect(SamplingMath.wilsonInterval(successes: 7, n: 700, confidence: 0.99, population: 700) == (0.01, 0.01))
    }

    @Test("an estimate's implied differing rows: the interval times the population, within what the sample saw")
    func estimate() {
        let e = SampleEstimate(sampled: 2_000, differing: 20, population: 20_000, confidence: 0.95)
        #expect(e.rate == 0.01)
        #expect(e.differingRows == (132, 302))
        let none = SampleEstimate(sampled: 100, differing: 0, population: 100, confidence: 0.95)
        #expect(none.differingRows == (0, 0))
    }
}
