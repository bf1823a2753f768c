/// The statistics of a sampled verify (`cdcr verify --sample N` / `--confidence C --margin E`):
/// the normal quantile for a confidence, the sample size for a margin, and the Wilson score interval
/// of the mismatch rate, each with the finite population correction. Pure arithmetic, no C library.
public enum SamplingMath {
    /// The standard normal quantile Φ⁻¹(p) for 0 < p < 1 (Acklam's rational approximation; relative
    /// error below 1.2·10⁻⁹, far below what a sample size or an interval needs).
    public static func normalQuantile(_ p: Double) -> Double {
        precondition(p > 0 && p < 1, "a quantile needs 0 < p < 1")
        let a = [-3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02, 1.383577518672690e+02, -3.066479806614716e+01, 2.506628277459239e+00]
        let b = [-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02, 6.680131188771972e+01, -1.328068155288572e+01]
        let c = [-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00, -2.549732539343734e+00, 4.374664141464968e+00, 2.938163982698783e+00]
        let d = [7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00, 3.754408661907416e+00]
        let low = 0.02425
        func tail(_ q: Double) -> Double {
            let r = (-2 * naturalLog(q)).squareRoot()
            return (((((c[0] * r + c[1]) * r + c[2]) * r + c[3]) * r + c[4]) * r + c[5]) / ((((d[0] * r + d[1]) * r + d[2]) * r + d[3]) * r + 1)
        }
        if p < low { return tail(p) }
        if p > 1 - low { return -tail(1 - p) }
        let q = p - 0.5, r = q * q
        return (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q
            / (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1)
    }

    /// z of a two-sided confidence level: `z(0.95)` ≈ 1.96, `z(0.99)` ≈ 2.576.
    public static func z(confidence: Double) -> Double {
        precondition(confidence > 0 && confidence < 1, "a confidence needs 0 < c < 1")
        return normalQuantile(1 - (1 - confidence) / 2)
    }

    /// Keys to sample so the mismatch rate is known within ±`margin` at `confidence`, from a
    /// population of `population` keys: n₀ = z²·p(1−p)/E² with the worst case p = ½, then the finite
    /// population correction n = n₀ / (1 + (n₀ − 1)/N), rounded up (never more than N).
    public static func sampleSize(confidence: Double, margin: Double, population: Int64) -> Int {
        precondition(margin > 0 && margin < 1, "a margin needs 0 < E < 1")
        let z = z(confidence: confidence)
        let n0 = z * z * 0.25 / (margin * margin)
        guard population > 0 else { return 0 }
        let n = n0 / (1 + (n0 - 1) / Double(population))
        return Int(min(Double(population), n.rounded(.up)))
    }

    /// The Wilson score interval of a proportion: `successes` of `n` sampled keys, at `confidence`.
    /// With a `population` N the sample was drawn from without replacement, the variance shrinks
    /// by the finite population correction (N − n)/(N − 1), applied as an effective sample size
    /// n' = n·(N − 1)/(N − n); a sample of the whole population is exact.
    public static func wilsonInterval(successes: Int, n: Int, confidence: Double, population: Int64? = nil) -> (low: Double, high: Double) {
        precondition(n > 0 && successes >= 0 && successes <= n, "0 ≤ successes ≤ n, n > 0")
        let p = Double(successes) / Double(n)
        var effective = Double(n)
        if let population {
            let big = Double(population)
            if big <= Double(n) { return (p, p) }
            effective = Double(n) * (big - 1) / (big - Double(n))
        }
        let z = z(confidence: confidence), z2 = z * z
        let denominator = 1 + z2 / effective
        let center = (p + z2 / (2 * effective)) / denominator
        let half = z / denominator * (p * (1 - p) / effective + z2 / (4 * effective * effective)).squareRoot()
        return (max(0, center - half), min(1, center + half))
    }

    /// The natural logarithm of a positive finite number, from its binary exponent and
    /// ln(m) = 2·atanh((m − 1)/(m + 1)) for the significand m ∈ [1, 2) (|t| ≤ ⅓: 20 terms reach
    /// double precision). CDCCore uses no C library, so no libm.
    static func naturalLog(_ x: Double) -> Double {
        precondition(x > 0 && x.isFinite)
        let ln2 = 0.693_147_180_559_945_309_417_232_121_458
        let m = x.significand, e = Double(x.exponent)
        let t = (m - 1) / (m + 1), t2 = t * t
        var term = t, sum = 0.0
        for k in stride(from: 1, through: 41, by: 2) {
            sum += term / Double(k)
            term *= t2
        }
        return 2 * sum + e * ln2
    }
}

/// What a sample says about a table: `differing` of `sampled` keys differ; the population is the
/// estimated number of keys on either side. The rate's interval is Wilson's at `confidence`.
public struct SampleEstimate: Sendable, Equatable {
    public let sampled: Int
    public let differing: Int
    public let population: Int64
    public let confidence: Double

    public init(sampled: Int, differing: Int, population: Int64, confidence: Double) {
        self.sampled = sampled
        self.differing = differing
        self.population = max(population, Int64(sampled))
        self.confidence = confidence
    }

    /// The point estimate of the mismatch rate.
    public var rate: Double { sampled == 0 ? 0 : Double(differing) / Double(sampled) }

    /// The Wilson interval of the rate, with the finite population correction.
    public var interval: (low: Double, high: Double) {
        sampled == 0 ? (0, 1) : SamplingMath.wilsonInterval(successes: differing, n: sampled, confidence: confidence, population: population)
    }

    /// The implied range of differing rows in the whole table: the interval times the population,
    /// never fewer than the differences already seen nor more than the rows not seen to agree.
    public var differingRows: (low: Int64, high: Int64) {
        let (lo, hi) = interval
        let seen = Int64(differing), agreeing = Int64(sampled - differing)
        let low = max(seen, Int64((lo * Double(population)).rounded(.down)))
        let high = min(population - agreeing, Int64((hi * Double(population)).rounded(.up)))
        return (low, max(low, high))
    }
}
