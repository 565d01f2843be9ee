import CoreMetrics
import Synchronization

/// A ``PersistentServer``'s statistics as swift-metrics instruments, with Prometheus names and the dimension
/// `listener` (the address it listens on), published from snapshots once a second and when the server stops, so
/// that counting costs the request path nothing:
///
/// | Metric | Kind |
/// |---|---|
/// | `inlong_transport_server_connections_accepted_total` | counter |
/// | `inlong_transport_server_connections_rejected_total` | counter (over ``PersistentServer/Configuration/maxConnections``) |
/// | `inlong_transport_server_connections_open` | gauge |
/// | `inlong_transport_server_connections_paused` | gauge (not reading: the handler pool is full) |
/// | `inlong_transport_server_requests_handled_total` | counter |
/// | `inlong_transport_server_requests_queued` | gauge (waiting for a handler) |
/// | `inlong_transport_server_receive_buffers_discarded_total` | counter |
final class ServerMetrics: Sendable {
    private let accepted: Counter
    private let rejected: Counter
    private let open: Gauge
    private let paused: Gauge
    private let handled: Counter
    private let queued: Gauge
    private let discarded: Counter
    /// What the counters were last advanced to: each publication adds the difference.
    private let published = Mutex(PersistentServerStatistics())

    private init(listener: String, factory: any MetricsFactory) {
        let dimensions = [("listener", listener)]
        func counter(_ name: String) -> Counter {
            Counter(label: "inlong_transport_server_\(name)_total", dimensions: dimensions, factory: factory)
        }
        func gauge(_ name: String) -> Gauge {
            Gauge(label: "inlong_transport_server_\(name)", dimensions: dimensions, factory: factory)
        }
        self.accepted = counter("connections_accepted")
        self.rejected = counter("connections_rejected")
        self.open = gauge("connections_open")
        self.paused = gauge("connections_paused")
        self.handled = counter("requests_handled")
        self.queued = gauge("requests_queued")
        self.discarded = counter("receive_buffers_discarded")
    }

    /// The metrics of the server listening on `listener`, or `nil` when metrics go nowhere (no factory given,
    /// none bootstrapped): the server then publishes nothing.
    static func make(listener: String, factory: (any MetricsFactory)?) -> ServerMetrics? {
        metricsFactoryInUse(factory).map { ServerMetrics(listener: listener, factory: $0) }
    }

    func publish(_ statistics: PersistentServerStatistics) {
        self.published.withLock { published in
            Self.advance(self.accepted, from: &published.acceptedConnections, to: statistics.acceptedConnections)
            Self.advance(self.rejected, from: &published.rejectedConnections, to: statistics.rejectedConnections)
            Self.advance(self.handled, from: &published.requestsHandled, to: statistics.requestsHandled)
            Self.advance(self.discarded, from: &published.receiveBuffersDiscarded, to: statistics.receiveBuffersDiscarded)
            self.open.record(statistics.openConnections)
            self.paused.record(statistics.pausedConnections)
            self.queued.record(statistics.queuedRequests)
        }
    }

    private static func advance(_ counter: Counter, from published: inout Int, to current: Int) {
        guard current > published else { return }
        counter.increment(by: current - published)
        published = current
    }
}
