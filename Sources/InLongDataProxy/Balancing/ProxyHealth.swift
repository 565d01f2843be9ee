import InLongTransport

/// Which proxies to avoid, from the outcomes of the batches sent to them. Pure: the client feeds it outcomes and
/// the time.
///
/// A proxy whose last `threshold` batches failed (transport failures or retriable errors) is avoided for a pause
/// of `basePause`, doubled each time it fails again once back, up to `maxPause`; a success clears it. A proxy is
/// never avoided when that would leave none of `usable` in use.
struct ProxyHealth {
    private struct Entry {
        var consecutiveFailures = 0
        var pause: Duration = .zero
        var avoidedUntil: ContinuousClock.Instant?
    }

    var threshold: Int
    var basePause: Duration
    var maxPause: Duration
    private var entries: [Endpoint: Entry] = [:]

    /// `maxPause` defaults to 30 times `basePause`.
    init(threshold: Int, basePause: Duration = .seconds(1), maxPause: Duration? = nil) {
        self.threshold = max(threshold, 1)
        self.basePause = basePause
        self.maxPause = maxPause ?? basePause * 30
    }

    /// The proxies to avoid at `now`.
    func avoided(now: ContinuousClock.Instant) -> Set<Endpoint> {
        guard !self.entries.isEmpty else { return [] }
        var avoided: Set<Endpoint> = []
        for (endpoint, entry) in self.entries {
            if let until = entry.avoidedUntil, until > now { avoided.insert(endpoint) }
        }
        return avoided
    }

    mutating func succeeded(_ endpoint: Endpoint) {
        self.entries.removeValue(forKey: endpoint)
    }

    /// Records a failed batch; returns the pause when the proxy is now avoided.
    @discardableResult
    mutating func failed(_ endpoint: Endpoint, now: ContinuousClock.Instant, usable: [Endpoint]) -> Duration? {
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

    /// Forgets proxies no longer in use.
    mutating func retain(_ endpoints: [Endpoint]) {
        guard !self.entries.isEmpty else { return }
        let kept = Set(endpoints)
        self.entries = self.entries.filter { kept.contains($0.key) }
    }
}
