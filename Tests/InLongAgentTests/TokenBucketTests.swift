import InLongWire
import Testing

@testable import InLongAgent

/// The rate limit's bucket, on a simulated clock.
@Suite struct TokenBucketTests {
    let start = ContinuousClock.now

    func at(_ milliseconds: Int) -> ContinuousClock.Instant { self.start + .milliseconds(milliseconds) }

    @Test func aFullBucketLetsTheBurstGoThenPaysItsDebtBackAtTheRate() throws {
        var bucket = TokenBucket(rate: 100, burst: 50)
        let full = bucket.available(now: self.at(0))
        #expect(full == nil)
        bucket.take(30, now: self.at(0))
        let partly = bucket.available(now: self.at(0))
        #expect(partly == nil)
        // Overdrawn by 40: 0.4 s at 100 a second.
        bucket.take(60, now: self.at(0))
        let owed = bucket.available(now: self.at(0))
        let until = try #require(owed)
        #expect(until > self.at(399) && until <= self.at(401))
        let halfway = bucket.available(now: self.at(200))
        #expect(halfway != nil)
        let paid = bucket.available(now: until)
        #expect(paid == nil)
        // A long quiet refills to the burst, not past it.
        let later = bucket.available(now: self.at(60_000))
        #expect(later == nil)
        #expect(bucket.tokens == 50)
    }

    @Test func aTimeGoingBackChangesNothing() {
        var bucket = TokenBucket(rate: 10, burst: 10)
        bucket.take(20, now: self.at(1000))
        let until = bucket.available(now: self.at(1000))
        let earlier = bucket.available(now: self.at(500))
        #expect(earlier != nil)
        let again = bucket.available(now: self.at(1000))
        #expect(again == until)
    }

    /// Random takes at random times, each when the bucket says it may go: over every span from the start, what was
    /// taken is at most the burst, what flowed in and one take; a taker that waits as told is let through then; the
    /// bucket never holds more than its burst.
    @Test(arguments: 0..<40)
    func seededSchedulesKeepTheRateAndNeverStarve(seed: UInt64) throws {
        var random = SplitMix64(seed: 0x7B0C_4E7_0000 + seed)
        let rate = Double(Int.random(in: 1...5000, using: &random))
        let burst = Double(Int.random(in: 1...10_000, using: &random))
        let maxTake = Int.random(in: 1...2000, using: &random)
        var bucket = TokenBucket(rate: rate, burst: burst)
        var now = 0
        var taken = 0.0
        for step in 0..<500 {
            now += Int.random(in: 0...200, using: &random)
            if let until = bucket.available(now: self.at(now)) {
                // Waiting as told is enough.
                let atUntil = bucket.available(now: until)
                #expect(atUntil == nil, "seed \(seed) step \(step)")
                let waited = until - self.at(now)
                now += Int((Double(waited.components.seconds) * 1000 + Double(waited.components.attoseconds) * 1e-15).rounded(.up))
                let afterWait = bucket.available(now: self.at(now))
                #expect(afterWait == nil, "seed \(seed) step \(step)")
            }
            let count = Int.random(in: 1...maxTake, using: &random)
            bucket.take(count, now: self.at(now))
            taken += Double(count)
            let allowed = burst + rate * Double(now) / 1000 + Double(maxTake)
            #expect(taken <= allowed, "seed \(seed) step \(step): \(taken) taken by \(now) ms, \(allowed) allowed")
            #expect(bucket.tokens <= burst, "seed \(seed) step \(step)")
        }
    }
}
