import CoreMetrics
import Synchronization

/// The one path of a connection's events: each call counts for ``PersistentConnection/statistics()`` and, when
/// metrics go somewhere, records the endpoint's swift-metrics instruments (created once per endpoint).
@usableFromInline
struct ConnectionObserver: Sendable {
    let counters: StatisticsCounters
    /// `nil` when no metrics backend is configured or bootstrapped.
    let metrics: TransportMetrics?

    @usableFromInline
    func connected() {
        self.counters.connected()
        self.metrics?.connects.increment()
    }

    /// Counts a failed connect; returns whether it is the first since the last connect (or the start): the one
    /// an operator is told of at warning, the retries that follow at debug.
    @discardableResult
    @usableFromInline
    func connectFailed(_ failure: TransportError) -> Bool {
        let first = self.counters.connectFailed(failure)
        self.metrics?.connectFailures.increment()
        return first
    }

    @usableFromInline
    func disconnected(reason: String) {
        self.counters.disconnected(reason: reason)
        self.metrics?.disconnected(reason: reason)
    }

    @usableFromInline
    func bytesRead(_ count: Int) {
        self.counters.bytesIn.add(count, ordering: .relaxed)
        self.metrics?.bytesIn.increment(by: Int64(count))
    }

    @usableFromInline
    func frameRead() {
        self.counters.framesIn.add(1, ordering: .relaxed)
        self.metrics?.framesIn.increment()
    }

    @usableFromInline
    func bytesWritten(_ count: Int) {
        self.counters.bytesOut.add(count, ordering: .relaxed)
        self.metrics?.bytesOut.increment(by: Int64(count))
    }

    @usableFromInline
    func framesWritten(_ count: Int) {
        self.counters.framesOut.add(count, ordering: .relaxed)
        self.metrics?.framesOut.increment(by: Int64(count))
    }

    /// A request's frame is on its way: it awaits its response.
    @usableFromInline
    func requestInFlight() {
        let inFlight = self.counters.inFlight.add(1, ordering: .relaxed).newValue
        self.metrics?.inFlight.set(inFlight)
    }

    @usableFromInline
    func requestSucceeded() {
        self.counters.requestsSucceeded.add(1, ordering: .relaxed)
        let inFlight = self.counters.inFlight.subtract(1, ordering: .relaxed).newValue
        if let metrics = self.metrics {
            metrics.requestsSucceeded.increment()
            metrics.inFlight.set(inFlight)
        }
    }

    /// `wasInFlight`: the request had been counted by ``requestInFlight()``.
    @usableFromInline
    func requestFailed(timedOut: Bool, wasInFlight: Bool) {
        let inFlight = wasInFlight ? self.counters.inFlight.subtract(1, ordering: .relaxed).newValue : nil
        if timedOut {
            self.counters.requestsTimedOut.add(1, ordering: .relaxed)
            self.metrics?.requestsTimedOut.increment()
        } else {
            self.counters.requestsFailed.add(1, ordering: .relaxed)
            self.metrics?.requestsFailed.increment()
        }
        if let inFlight { self.metrics?.inFlight.set(inFlight) }
    }

    @usableFromInline
    func heartbeatAnswered(rtt: Int64) {
        self.counters.lastHeartbeatRTTNanoseconds.store(Int(rtt), ordering: .relaxed)
        self.metrics?.heartbeatRTT.recordNanoseconds(rtt)
    }

    @usableFromInline
    func unsolicitedDropped() {
        self.counters.unsolicitedDropped.add(1, ordering: .relaxed)
    }

    @usableFromInline
    func receiveBufferDiscarded() {
        self.counters.receiveBuffersDiscarded.add(1, ordering: .relaxed)
    }

    @usableFromInline
    func reportedLoad(_ load: Int) {
        self.counters.reportedLoad.store(load, ordering: .relaxed)
    }
}
