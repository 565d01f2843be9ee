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
        let twenty = bucket.allowance(now: self.at(0))
        #expect(twenty == 20)
        // Overdrawn by 40: a whole token again after 0.41 s at 100 a second.
        bucket.take(60, now: self.at(0))
        let none = bucket.allowance(now: self.at(0))
        #expect(none == 0)
        let owed = bucket.available(now: self.at(0))
        let until = try #require(owed)
        #expect(until > self.at(409) && until <= self.at(411))
        let stillNone = bucket.allowance(now: self.at(405))
        #expect(stillNone == 0)
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

    /// The instances of one source (its files) share its limit: a read reserves what the buckets hold, so a second
    /// read at the same instant waits, and what the first did not use goes back (never past the burst).
    @Test func readsSharingALimitReserveTheirTokens() throws {
        var limit = AgentConfiguration.RateLimit(bytesPerSecond: 1000, linesPerSecond: 100)
        limit.burstLines = 10
        let limiter = SourceRateLimiter(limit)
        let first = limiter.reserve(now: self.at(0))
        #expect(first == .read(records: 10, bytes: 1000))
        let second = limiter.reserve(now: self.at(0))
        guard case .wait = second else {
            Issue.record("a second read at the same instant went: \(second)")
            return
        }
        // 4 records of 30 bytes read: 6 records and 880 bytes go back.
        limiter.settle(first, lines: 4, bytes: 30, now: self.at(0))
        let third = limiter.reserve(now: self.at(0))
        #expect(third == .read(records: 6, bytes: 970))
        // Nothing used, after a long quiet: the buckets are full again, not fuller.
        limiter.settle(third, lines: 0, bytes: 0, now: self.at(60_000))
        let fourth = limiter.reserve(now: self.at(60_000))
        #expect(fourth == .read(records: 10, bytes: 1000))
    }

    @Test func lessThanAWholeTokenIsNoAllowance() throws {
        var bucket = TokenBucket(rate: 10, burst: 5)
        bucket.take(5, now: self.at(0))
        // 0.5 of a token after 50 ms: nothing may go until 100 ms.
        let half = bucket.allowance(now: self.at(50))
        #expect(half == 0)
        let next = bucket.available(now: self.at(50))
        let until = try #require(next)
        #expect(until > self.at(99) && until <= self.at(101))
        let one = bucket.allowance(now: until)
        #expect(one == 1)
    }

    /// Random takers at random times, each going when the bucket says and taking at most its allowance: a lines
    /// taker takes up to the allowance; a bytes taker takes whole lines of random lengths until the one that
    /// reaches the allowance. Over every span from the start, lines taken are at most the burst and what flowed in
    /// (no slack), bytes taken at most that and one line less a byte; waiting as told is enough; the bucket never
    /// holds more than its burst.
    @Test(arguments: 0..<40)
    func seededSchedulesKeepTheRateToOneRecordAndNeverStarve(seed: UInt64) throws {
        var random = SplitMix64(seed: 0x7B0C_4E7_0000 + seed)
        let rate = Double(Int.random(in: 1...5000, using: &random))
        let burst = Double(Int.random(in: 1...10_000, using: &random))
        let maxWant = Int.random(in: 1...2000, using: &random)
        let maxLine = Int.random(in: 1...500, using: &random)
        var lines = TokenBucket(rate: rate, burst: burst)
        var bytes = TokenBucket(rate: rate, burst: burst)
        var now = 0
        var linesTaken = 0
        var bytesTaken = 0
        for step in 0..<500 {
            now += Int.random(in: 0...200, using: &random)
            for isBytes in [false, true] {
                if let until = isBytes ? bytes.available(now: self.at(now)) : lines.available(now: self.at(now)) {
                    // Waiting as told is enough.
                    let atUntil = isBytes ? bytes.allowance(now: until) : lines.allowance(now: until)
                    #expect(atUntil >= 1, "seed \(seed) step \(step)")
                    let waited = until - self.at(now)
                    now += Int((Double(waited.components.seconds) * 1000 + Double(waited.components.attoseconds) * 1e-15).rounded(.up))
                }
                if isBytes {
                    let allowance = bytes.allowance(now: self.at(now))
                    #expect(allowance >= 1, "seed \(seed) step \(step)")
                    // Whole lines until the one that reaches the allowance (or the taker has no more).
                    var count = 0
                    for _ in 0..<Int.random(in: 1...maxWant, using: &random) where count < allowance {
                        count += Int.random(in: 1...maxLine, using: &random)
                    }
                    bytes.take(count, now: self.at(now))
                    bytesTaken += count
                } else {
                    let allowance = lines.allowance(now: self.at(now))
                    #expect(allowance >= 1, "seed \(seed) step \(step)")
                    let count = min(allowance, Int.random(in: 1...maxWant, using: &random))
                    lines.take(count, now: self.at(now))
                    linesTaken += count
                }
            }
            let flowed = burst + rate * Double(now) / 1000
            #expect(Double(linesTaken) <= flowed + 1e-6, "seed \(seed) step \(step): \(linesTaken) lines by \(now) ms, \(flowed) allowed")
            #expect(Double(bytesTaken) <= flowed + Double(maxLine - 1) + 1e-6, "seed \(seed) step \(step): \(bytesTaken) bytes by \(now) ms")
            #expect(lines.tokens <= burst && bytes.tokens <= burst, "seed \(seed) step \(step)")
        }
    }
}
