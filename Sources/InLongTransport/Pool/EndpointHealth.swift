/// Which endpoints of a pool to avoid, from the outcomes the application reports. Pure: the pool feeds it
/// outcomes and the time.
///
/// An endpoint whose last `threshold` outcomes failed is avoided for a pause of `basePause`, doubled each time it
/// fails again once back, up to `maxPause`; a success clears it. An endpoint is never avoided when that would
/// leave none of `usable` in use. Package-visible: a client's router keeps its proxies' health with its ready set.
package struct EndpointHealth: Sendable {
    private struct Entry {
        var consecutiveFailures = 0
        var pause: Duration = .zero
        var avoidedUntil: ContinuousClock.Instant?
    }

    package var threshold: Int
    package var basePause: Duration
    package var maxPause: Duration
    private var entries: [Endpoint: Entry] = [:]

    /// `maxPause` defaults to 30 times `basePause`.
    package init(threshold: Int, basePause: Duration = .seconds(1), maxPause: Duration? = nil) {
        self.threshold = max(threshold, 1)
        self.basePause = basePause
        self.maxPause = maxPause ?? basePause * 30
    }

    /// The endpoints to avoid at `now`.
    package func avoided(now: ContinuousClock.Instant) -> Set<Endpoint> {
        guard !self.entries.isEmpty else { return [] }
        var avoided: Set<Endpoint> = []
        for (endpoint, entry) in self.entries {
            if let until = entry.avoidedUntil, until > now { avoided.insert(endpoint) }
        }
        return avoided
    }

    package mutating func succeeded(_ endpoint: Endpoint) {
        self.entries.removeValue(forKey: endpoint)
    }

    /// Records a failure; returns the pause when the endpoint is now avoided.
    @discardableResult
    package mutating func failed(_ endpoint: Endpoint, now: ContinuousClock.Instant, usable: [Endpoint]) -> Duration? {
        var entry = self.entries[endpoint] ?? Entry()
        entry.consecutiveFailures += 1
        defer { self.entries[endpoint] = entry }
        if let until = entry.avoidedUntil, until > now { return nil }
        guard entry.consecutiveFailures >= self.threshold else { return nil }
        let others = self.avoided(now: now)
        guard usable.contains(where: { $0 != endpoint && !others.contains($0) }) else { return nil }
        entry.pause = entry.pause == .zero ? self.basePause : min(entry.pause * 2, self.maxPause)
        entry.avoidedUntil = now + entry.pause
        return entry.pause
    }

    /// Forgets endpoints no longer in use.
    package mutating func retain(_ endpoints: [Endpoint]) {
        guard !self.entries.isEmpty else { return }
        let kept = Set(endpoints)
        self.entries = self.entries.filter { kept.contains($0.key) }
    }
}
