import InLongTransport

/// When the client asks the Manager, for which group, and what it does when the Manager fails. Pure: the discovery
/// loop asks it for the next step with the time, performs the step and reports the outcome; it waits for a wake-up
/// (the step's time, or a group met) when the step is to wait.
///
/// The configured groups are asked first, then groups as the dispatcher first meets them. One ask is one group, of
/// up to `attempts` requests, the next `500 ms × n` after the n-th failed (as the Manager client always retried);
/// when every request of a first ask failed, the cache stands in for the Manager. A group with no proxies is asked
/// again with a growing backoff, and every group found is refreshed once per `refreshInterval` (a failed refresh
/// keeps its last good list, and reads no cache). Once a second, even between the requests of an ask, the proxies
/// the router avoids give their slots to spares.
struct DiscoverySchedule {
    enum Step: Equatable {
        /// One request to the Manager for `group`'s proxies: the `attempt`-th of this ask, a refresh of a group
        /// found before or not.
        case ask(group: String, attempt: Int, refresh: Bool)
        /// Every request of a first ask failed: the cached list stands in.
        case readCache(group: String)
        case replaceFailingProxies
        /// Nothing is due before the instant.
        case wait(until: ContinuousClock.Instant)
    }

    /// How an ask went on after a request's or the cache's answer.
    enum Outcome: Equatable {
        /// Proxies were found; the ask is over.
        case found
        /// Another request, or the cache, comes next.
        case continuing
        /// The ask is over with no proxies found.
        case gaveUp
    }

    private struct Asking {
        enum Phase {
            /// The next request is due then.
            case due(ContinuousClock.Instant)
            /// A request is under way.
            case asked
            /// The cache is to be read, or is being read.
            case cacheDue
            case cacheRead
        }

        var group: String
        /// A first ask, or one again after no proxy was found (a failure backs off and reads the cache), or a
        /// refresh.
        var refresh: Bool
        var attempt = 1
        var phase = Phase.asked
    }

    static let spareCheckInterval = Duration.seconds(1)

    /// The wait after the `attempt`-th failed request of an ask.
    static func attemptDelay(after attempt: Int) -> Duration {
        .milliseconds(500 * Int64(attempt))
    }

    let refreshInterval: Duration
    /// Requests per ask.
    let attempts: Int
    /// Whether a cache file can stand in for the Manager.
    let usesCache: Bool
    private let backoff: ExponentialBackoff
    private let random: @Sendable (ClosedRange<Double>) -> Double
    private(set) var known: [String] = []
    /// Groups without proxies yet: when each is asked again.
    private var retries: [String: (due: ContinuousClock.Instant, backoff: ExponentialBackoff.Iterator)] = [:]
    private var refreshDue: ContinuousClock.Instant
    /// Groups of the refresh under way, not asked yet.
    private var refreshing: [String] = []
    /// When the refresh under way became due.
    private var refreshStarted: ContinuousClock.Instant
    private var spareCheckDue: ContinuousClock.Instant
    private var asking: Asking?

    init(
        groups: [String],
        refreshInterval: Duration,
        attempts: Int = 1,
        usesCache: Bool = false,
        now: ContinuousClock.Instant,
        backoff: ExponentialBackoff = ExponentialBackoff(initial: .milliseconds(200), maximum: .seconds(10)),
        random: @escaping @Sendable (ClosedRange<Double>) -> Double = { Double.random(in: $0) }
    ) {
        self.refreshInterval = refreshInterval
        self.attempts = max(attempts, 1)
        self.usesCache = usesCache
        self.backoff = backoff
        self.random = random
        self.refreshDue = now + refreshInterval
        self.refreshStarted = now
        self.spareCheckDue = now + Self.spareCheckInterval
        self.met(groups, now: now)
    }

    /// Groups the dispatcher has records for and no proxies: asked at once, if not known yet.
    mutating func met(_ groups: some Sequence<String>, now: ContinuousClock.Instant) {
        for group in groups where !self.known.contains(group) {
            self.known.append(group)
            self.retries[group] = (now, self.backoff.makeIterator(random: self.random))
        }
    }

    /// The next step: the spare check when due (it asks no one, so it never delays an ask), then the ask under
    /// way, otherwise the ask due longest (a group without proxies, or the next group of a refresh), so neither
    /// kind starves the other.
    mutating func next(now: ContinuousClock.Instant) -> Step {
        if now >= self.spareCheckDue {
            self.spareCheckDue = now + Self.spareCheckInterval
            return .replaceFailingProxies
        }
        if var asking = self.asking {
            switch asking.phase {
            case .asked, .cacheRead:
                preconditionFailure("the last step's outcome was not reported")
            case .due(let due) where due > now:
                return .wait(until: min(due, self.spareCheckDue))
            case .due:
                asking.phase = .asked
                self.asking = asking
                return .ask(group: asking.group, attempt: asking.attempt, refresh: asking.refresh)
            case .cacheDue:
                asking.phase = .cacheRead
                self.asking = asking
                return .readCache(group: asking.group)
            }
        }
        if self.refreshing.isEmpty, now >= self.refreshDue {
            self.refreshStarted = self.refreshDue
            self.refreshDue = now + self.refreshInterval
            self.refreshing = self.known.filter { self.retries[$0] == nil }
        }
        // Groups without proxies in the order they became due (the configured ones first of all).
        let retry = self.known.filter { self.retries[$0].map { $0.due <= now } ?? false }
            .min { self.retries[$0]!.due < self.retries[$1]!.due }
        if let retry, self.refreshing.isEmpty || self.retries[retry]!.due <= self.refreshStarted {
            self.asking = Asking(group: retry, refresh: false)
            return .ask(group: retry, attempt: 1, refresh: false)
        }
        if !self.refreshing.isEmpty {
            let group = self.refreshing.removeFirst()
            self.asking = Asking(group: group, refresh: true)
            return .ask(group: group, attempt: 1, refresh: true)
        }
        var until = min(self.refreshDue, self.spareCheckDue)
        for retry in self.retries.values { until = min(until, retry.due) }
        return .wait(until: until)
    }

    /// The answer to the last ``Step/ask(group:attempt:refresh:)``: whether proxies were found.
    @discardableResult
    mutating func answered(_ group: String, found: Bool, now: ContinuousClock.Instant) -> Outcome {
        guard var asking = self.asking, asking.group == group, case .asked = asking.phase else { return .gaveUp }
        if found { return self.ended(asking, found: true, now: now) }
        if asking.attempt < self.attempts {
            asking.phase = .due(now + Self.attemptDelay(after: asking.attempt))
            asking.attempt += 1
            self.asking = asking
            return .continuing
        }
        if !asking.refresh, self.usesCache {
            asking.phase = .cacheDue
            self.asking = asking
            return .continuing
        }
        return self.ended(asking, found: false, now: now)
    }

    /// What the last ``Step/readCache(group:)`` found.
    @discardableResult
    mutating func cacheRead(_ group: String, found: Bool, now: ContinuousClock.Instant) -> Outcome {
        guard let asking = self.asking, asking.group == group, case .cacheRead = asking.phase else { return .gaveUp }
        return self.ended(asking, found: found, now: now)
    }

    private mutating func ended(_ asking: Asking, found: Bool, now: ContinuousClock.Instant) -> Outcome {
        self.asking = nil
        guard !asking.refresh else { return found ? .found : .gaveUp }
        if found {
            self.retries[asking.group] = nil
        } else if var retry = self.retries[asking.group] {
            retry.due = now + retry.backoff.next()
            self.retries[asking.group] = retry
        }
        return found ? .found : .gaveUp
    }

    /// Whether `group` waits to be asked again (no proxy found yet).
    func isRetrying(_ group: String) -> Bool {
        self.retries[group] != nil
    }

    /// Whether an ask is under way (between its requests, too).
    var isAsking: Bool { self.asking != nil }
}
