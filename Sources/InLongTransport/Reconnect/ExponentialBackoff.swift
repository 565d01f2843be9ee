/// Exponential backoff with jitter: attempt `n` (from 0) waits `min(initial × multiplier^n, maximum)`, then
/// scaled by a random factor in `1 ± jitter`.
public struct ExponentialBackoff: Hashable, Sendable {
    /// The first delay. Defaults to 100 ms.
    public var initial: Duration
    /// The largest delay before jitter. Defaults to 10 s.
    public var maximum: Duration
    /// The growth factor per attempt. Defaults to 2.
    public var multiplier: Double
    /// The relative jitter, in 0...1. Defaults to 0.2 (±20 %).
    public var jitter: Double

    public init(
        initial: Duration = .milliseconds(100),
        maximum: Duration = .seconds(10),
        multiplier: Double = 2,
        jitter: Double = 0.2
    ) {
        precondition(initial >= .zero && maximum >= initial && multiplier >= 1 && (0...1).contains(jitter))
        self.initial = initial
        self.maximum = maximum
        self.multiplier = multiplier
        self.jitter = jitter
    }

    /// The delays of successive attempts.
    public struct Iterator: Sendable {
        let backoff: ExponentialBackoff
        private var current: Double
        private var random: @Sendable (ClosedRange<Double>) -> Double

        init(backoff: ExponentialBackoff, random: @escaping @Sendable (ClosedRange<Double>) -> Double) {
            self.backoff = backoff
            self.current = backoff.initial.seconds
            self.random = random
        }

        /// The next delay.
        public mutating func next() -> Duration {
            let base = min(self.current, self.backoff.maximum.seconds)
            self.current = min(self.current * self.backoff.multiplier, self.backoff.maximum.seconds)
            let factor = self.backoff.jitter == 0 ? 1 : self.random((1 - self.backoff.jitter)...(1 + self.backoff.jitter))
            return .nanoseconds(Int64(base * factor * 1e9))
        }
    }

    /// Delays starting from ``initial``; `random` picks the jitter factor (inject a fixed one in tests).
    public func makeIterator(
        random: @escaping @Sendable (ClosedRange<Double>) -> Double = { Double.random(in: $0) }
    ) -> Iterator {
        Iterator(backoff: self, random: random)
    }
}

extension Duration {
    var seconds: Double {
        let (seconds, attoseconds) = self.components
        return Double(seconds) + Double(attoseconds) / 1e18
    }
}
