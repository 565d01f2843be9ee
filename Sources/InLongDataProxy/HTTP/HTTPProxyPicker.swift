import InLongTransport

/// Which proxy the next HTTP request goes to: the rules of the HTTP transport with no I/O and the time passed
/// in. HTTP has no connection to be ready or not, so the picker keeps what a connection pool would: requests in
/// flight per proxy (capped, so that a slow proxy backs the dispatcher up instead of growing memory) and a pause
/// after a failure (as the Java SDK freezes a node that answered 5xx or could not be reached).
///
/// A pick goes round-robin among the best tier with room: healthy and not avoided, then healthy but avoided (the
/// proxy a retry should leave), then paused (earliest resume first), then paused and avoided; so that a request
/// goes somewhere whenever any proxy has room, and never waits for a pause to end.
///
/// Proxies the Manager lists are added as they appear and never forgotten (a request may still be in flight to
/// one it no longer lists); a pick is among the candidates given (a group's proxies), or among all.
struct HTTPProxyPicker: Sendable {
    let maxInFlightPerProxy: Int
    let pauseAfterFailure: Duration
    private(set) var proxies: [Endpoint]
    private(set) var inFlight: [Int]
    private(set) var pausedUntil: [ContinuousClock.Instant?]
    private var cursor = 0

    init(proxies: [Endpoint], maxInFlightPerProxy: Int, pauseAfterFailure: Duration) {
        self.proxies = []
        self.maxInFlightPerProxy = max(1, maxInFlightPerProxy)
        self.pauseAfterFailure = pauseAfterFailure
        self.inFlight = []
        self.pausedUntil = []
        self.add(proxies)
    }

    /// Adds the proxies not known yet, with no request in flight and no pause.
    mutating func add(_ proxies: [Endpoint]) {
        for proxy in proxies where !self.proxies.contains(proxy) {
            self.proxies.append(proxy)
            self.inFlight.append(0)
            self.pausedUntil.append(nil)
        }
    }

    /// The tier of proxy `index` now: lower is better.
    func tier(_ index: Int, avoiding: Set<Endpoint>, now: ContinuousClock.Instant) -> Int {
        let paused = self.pausedUntil[index].map { now < $0 } ?? false
        let avoided = avoiding.contains(self.proxies[index])
        return (paused ? 2 : 0) + (avoided ? 1 : 0)
    }

    /// Takes a slot on the best proxy with room among `candidates` (`nil`: every proxy), or `nil` when each of them
    /// has its cap of requests in flight.
    mutating func pick(among candidates: Set<Endpoint>? = nil, avoiding: Set<Endpoint>, now: ContinuousClock.Instant) -> Endpoint? {
        var best: (index: Int, tier: Int, resume: ContinuousClock.Instant?)?
        let count = self.proxies.count
        for step in 0..<count {
            let index = (self.cursor + step) % count
            guard self.inFlight[index] < self.maxInFlightPerProxy else { continue }
            if let candidates, !candidates.contains(self.proxies[index]) { continue }
            let tier = self.tier(index, avoiding: avoiding, now: now)
            let resume = tier >= 2 ? self.pausedUntil[index] : nil
            if let current = best {
                guard tier < current.tier || (tier == current.tier && tier >= 2 && resume! < current.resume!) else { continue }
            }
            best = (index, tier, resume)
            if tier == 0 { break }
        }
        guard let best else { return nil }
        self.cursor = (best.index + 1) % count
        self.inFlight[best.index] += 1
        return self.proxies[best.index]
    }

    /// A request to `proxy` ended: its slot is free; a failure pauses the proxy, a success ends its pause.
    mutating func finished(_ proxy: Endpoint, succeeded: Bool, now: ContinuousClock.Instant) {
        guard let index = self.proxies.firstIndex(of: proxy) else { preconditionFailure("not a proxy of the picker: \(proxy)") }
        precondition(self.inFlight[index] > 0, "a request ended that was not picked")
        self.inFlight[index] -= 1
        self.pausedUntil[index] = succeeded ? nil : now + self.pauseAfterFailure
    }

    /// Requests in flight over every proxy.
    var totalInFlight: Int { self.inFlight.reduce(0, +) }
}
