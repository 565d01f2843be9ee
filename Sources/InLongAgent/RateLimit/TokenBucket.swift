import Synchronization

/// A token bucket with the time passed in: ``rate`` tokens a second flow in, at most ``burst`` are held. A taker
/// asks for its ``allowance(now:)`` (the whole tokens held) and takes at most that, or that and part of one unit it
/// cannot split (a line's bytes): so over any span from the start the tokens taken are at most the burst, what
/// flowed in, and that part of one unit. A take that overdrew is paid back before the next allowance. Pure.
package struct TokenBucket: Sendable, Hashable {
    /// Tokens a second.
    package let rate: Double
    /// Tokens held at most (what may go at once after a quiet while).
    package let burst: Double
    /// Tokens held now; negative after a take that overdrew.
    package private(set) var tokens: Double
    private var updated: ContinuousClock.Instant?

    /// A full bucket.
    package init(rate: Double, burst: Double) {
        precondition(rate > 0 && burst >= 1)
        self.rate = rate
        self.burst = burst
        self.tokens = burst
    }

    /// When a take may go: `nil` now (the bucket holds a whole token), else the instant it holds one again.
    package mutating func available(now: ContinuousClock.Instant) -> ContinuousClock.Instant? {
        self.refill(now: now)
        guard self.tokens < 1 else { return nil }
        // The instant at which the bucket holds just over one token.
        let seconds = (1 - self.tokens) / self.rate
        let nanoseconds = Int64((seconds * 1e9).rounded(.up)) + 1
        return now + .nanoseconds(nanoseconds)
    }

    /// The whole tokens held (0 while the bucket is in debt or holds less than one): what a take may use now.
    package mutating func allowance(now: ContinuousClock.Instant) -> Int {
        self.refill(now: now)
        return self.tokens >= 1 ? Int(min(self.tokens, Double(Int.max / 2)).rounded(.down)) : 0
    }

    /// Takes `count` tokens (going into debt when there are fewer); a negative count gives tokens back (never
    /// past the burst).
    package mutating func take(_ count: Int, now: ContinuousClock.Instant) {
        self.refill(now: now)
        self.tokens = min(self.burst, self.tokens - Double(count))
    }

    private mutating func refill(now: ContinuousClock.Instant) {
        if let updated = self.updated, now > updated {
            let elapsed = Double((now - updated).components.seconds) + Double((now - updated).components.attoseconds) * 1e-18
            self.tokens = min(self.burst, self.tokens + elapsed * self.rate)
        }
        if self.updated.map({ now > $0 }) ?? true { self.updated = now }
    }
}

/// A source's rate limit, shared by its instances (every file of a source, or a listener's one): its bytes and
/// lines buckets behind a lock. A read goes once both hold a whole token, and reads at most what they hold: as
/// many records as the lines bucket holds, and records until the one that reaches the bytes the bytes bucket holds
/// (a record is not split, so the bytes bucket may be overdrawn by less than one record, paid back before the next
/// read). So a source keeps its limits to within one record.
final class SourceRateLimiter: Sendable {
    /// What the next read may take, or when it may go.
    enum Allowance: Equatable {
        /// Read now, at most `records` records, ending at the first record that reaches `bytes` bytes.
        case read(records: Int, bytes: Int)
        /// Nothing may go before this instant.
        case wait(until: ContinuousClock.Instant)
    }

    private let buckets: Mutex<(bytes: TokenBucket?, lines: TokenBucket?)>
    /// Bytes a read takes at most, so that reads keep the pace even (a read of 1 MiB would go at once and then wait long).
    let maxReadBytes: Int

    init(_ limit: AgentConfiguration.RateLimit) {
        let bytes = limit.bytesPerSecond.map { TokenBucket(rate: Double($0), burst: Double(limit.burstBytes ?? $0)) }
        let lines = limit.linesPerSecond.map { TokenBucket(rate: Double($0), burst: Double(limit.burstLines ?? $0)) }
        self.buckets = Mutex((bytes, lines))
        self.maxReadBytes = max(1, min(64 << 10, bytes.map { Int($0.burst) } ?? Int.max))
    }

    /// What a read may take now, taken from the buckets at once (so that instances sharing the limit never read
    /// the same tokens), or when both buckets hold a whole token again. The read then ``settle(_:lines:bytes:now:)``s.
    func reserve(now: ContinuousClock.Instant) -> Allowance {
        self.buckets.withLock { buckets in
            let bytesAt = buckets.bytes?.available(now: now)
            let linesAt = buckets.lines?.available(now: now)
            if let until = [bytesAt, linesAt].compactMap({ $0 }).max() { return .wait(until: until) }
            var records = Int.max
            var bytes = Int.max
            if buckets.lines != nil {
                records = buckets.lines!.allowance(now: now)
                buckets.lines!.take(records, now: now)
            }
            if buckets.bytes != nil {
                bytes = buckets.bytes!.allowance(now: now)
                buckets.bytes!.take(bytes, now: now)
            }
            return .read(records: records, bytes: bytes)
        }
    }

    /// A read that reserved `reserved` took `lines` records covering `bytes` of the source: what it did not use
    /// goes back, what it read past it (less than one record of bytes) is taken.
    func settle(_ reserved: Allowance, lines: Int, bytes: Int, now: ContinuousClock.Instant) {
        guard case .read(let records, let reservedBytes) = reserved else { return }
        self.buckets.withLock { buckets in
            buckets.lines?.take(lines - records, now: now)
            buckets.bytes?.take(bytes - reservedBytes, now: now)
        }
    }
}

extension AgentConfiguration {
    /// How fast one source (all its files together) or listener may send, so that a log storm on one host cannot
    /// flood a shared cluster: bytes and lines (records) a second, each with a burst. A file source over its limit
    /// reads more slowly (its lines wait in the file, none is lost); a listener over its limit leaves messages in
    /// its queue, so that TCP senders are paused and UDP datagrams dropped and counted when it is full.
    public struct RateLimit: Sendable, Hashable, Codable {
        /// Bytes of the source a second (`nil`: no limit).
        public var bytesPerSecond: Int?
        /// Records a second (`nil`: no limit).
        public var linesPerSecond: Int?
        /// Bytes that may go at once after a quiet while. Defaults to a second's worth.
        public var burstBytes: Int?
        /// Records that may go at once after a quiet while. Defaults to a second's worth.
        public var burstLines: Int?

        public init(bytesPerSecond: Int? = nil, linesPerSecond: Int? = nil) {
            self.bytesPerSecond = bytesPerSecond
            self.linesPerSecond = linesPerSecond
        }

        /// Throws a typed error naming the key under `key` (`sources[0].rateLimit`) that cannot work.
        public func validate(key: String) throws(AgentConfigurationError) {
            guard self.bytesPerSecond != nil || self.linesPerSecond != nil else {
                throw AgentConfigurationError(key: key, "\(key) needs bytesPerSecond or linesPerSecond")
            }
            for (name, value) in [("bytesPerSecond", self.bytesPerSecond), ("linesPerSecond", self.linesPerSecond), ("burstBytes", self.burstBytes), ("burstLines", self.burstLines)] {
                if let value, value <= 0 { throw AgentConfigurationError(key: "\(key).\(name)", "\(key).\(name) must be positive") }
            }
            if self.burstBytes != nil, self.bytesPerSecond == nil {
                throw AgentConfigurationError(key: "\(key).burstBytes", "\(key).burstBytes needs \(key).bytesPerSecond")
            }
            if self.burstLines != nil, self.linesPerSecond == nil {
                throw AgentConfigurationError(key: "\(key).burstLines", "\(key).burstLines needs \(key).linesPerSecond")
            }
        }
    }
}
