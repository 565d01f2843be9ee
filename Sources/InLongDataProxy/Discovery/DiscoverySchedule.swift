import InLongTransport

/// When the client asks the Manager, and for which group. Pure: the discovery loop asks it for the next step with
/// the time, performs the step and reports the outcome.
///
/// The configured groups are asked first (the cache standing in for a Manager that is down), then groups as the
/// dispatcher first meets them; a group with no proxies is asked again with a growing backoff, and every group
/// found is refreshed once per `refreshInterval` (a failed refresh keeps its last good list). Once a second, the
/// proxies the pool avoids give their slots to spares.
struct DiscoverySchedule {
    enum Step: Equatable {
        case discover(group: String, useCache: Bool)
        case replaceFailingProxies
        /// Nothing is due before the instant.
        case wait(until: ContinuousClock.Instant)
    }

    private enum Asking {
        /// A first ask, or one again after no proxy was found: a failure backs off.
        case find(String)
        case refresh(String)
    }

    static let spareCheckInterval = Duration.seconds(1)

    let refreshInterval: Duration
    private let backoff: ReconnectBackoff
    private let random: @Sendable (ClosedRange<Double>) -> Double
    private(set) var known: [String] = []
    /// Groups without proxies yet: when each is asked again.
    private var retries: [String: (due: ContinuousClock.Instant, backoff: ReconnectBackoff.Iterator)] = [:]
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
        now: ContinuousClock.Instant,
        backoff: ReconnectBackoff = ReconnectBackoff(initial: .milliseconds(200), maximum: .seconds(10)),
        random: @escaping @Sendable (ClosedRange<Double>) -> Double = { Double.random(in: $0) }
    ) {
        self.refreshInterval = refreshInterval
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

    /// The next step: the spare check when due (it asks no one, so it never delays an ask), otherwise the ask
    /// due longest (a group without proxies, or the next group of a refresh), so neither kind starves the other.
    mutating func next(now: ContinuousClock.Instant) -> Step {
        precondition(self.asking == nil, "the last step's outcome was not reported")
        if now >= self.spareCheckDue {
            self.spareCheckDue = now + Self.spareCheckInterval
            return .replaceFailingProxies
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
            self.asking = .find(retry)
            return .discover(group: retry, useCache: true)
        }
        if !self.refreshing.isEmpty {
            let group = self.refreshing.removeFirst()
            self.asking = .refresh(group)
            return .discover(group: group, useCache: false)
        }
        var until = min(self.refreshDue, self.spareCheckDue)
        for retry in self.retries.values { until = min(until, retry.due) }
        return .wait(until: until)
    }

    /// The outcome of the last ``Step/discover(group:useCache:)``: whether proxies were found.
    mutating func discovered(_ group: String, found: Bool, now: ContinuousClock.Instant) {
        guard let asking = self.asking else { return }
        self.asking = nil
        guard case .find(let asked) = asking, asked == group else { return }
        if found {
            self.retries[group] = nil
        } else if var retry = self.retries[group] {
            retry.due = now + retry.backoff.next()
            self.retries[group] = retry
        }
    }

    /// Whether `group` waits to be asked again (no proxy found yet).
    func isRetrying(_ group: String) -> Bool {
        self.retries[group] != nil
    }
}
