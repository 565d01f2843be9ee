import CoreMetrics
import Synchronization

/// swift-metrics instruments of one endpoint, created once (Prometheus names `inlong_transport_*`, dimension `endpoint`).
final class TransportMetrics: Sendable {
    let connects: Counter
    let connectFailures: Counter
    let framesOut: Counter
    let framesIn: Counter
    let bytesOut: Counter
    let bytesIn: Counter
    let requestsSucceeded: Counter
    let requestsFailed: Counter
    let requestsTimedOut: Counter
    let inFlight: Meter
    let heartbeatRTT: Timer
    private let endpoint: String
    private let factory: any MetricsFactory
    private let disconnects = Mutex<[String: Counter]>([:])

    init(endpoint: Endpoint, factory: any MetricsFactory) {
        let dimensions = [("endpoint", endpoint.description)]
        self.endpoint = endpoint.description
        self.factory = factory
        self.connects = Counter(label: "inlong_transport_connects_total", dimensions: dimensions, factory: factory)
        self.connectFailures = Counter(label: "inlong_transport_connect_failures_total", dimensions: dimensions, factory: factory)
        self.framesOut = Counter(label: "inlong_transport_frames_out_total", dimensions: dimensions, factory: factory)
        self.framesIn = Counter(label: "inlong_transport_frames_in_total", dimensions: dimensions, factory: factory)
        self.bytesOut = Counter(label: "inlong_transport_bytes_out_total", dimensions: dimensions, factory: factory)
        self.bytesIn = Counter(label: "inlong_transport_bytes_in_total", dimensions: dimensions, factory: factory)
        self.requestsSucceeded = Counter(
            label: "inlong_transport_requests_total",
            dimensions: dimensions + [("result", "ok")],
            factory: factory
        )
        self.requestsFailed = Counter(label: "inlong_transport_requests_total", dimensions: dimensions + [("result", "failed")], factory: factory)
        self.requestsTimedOut = Counter(
            label: "inlong_transport_requests_total",
            dimensions: dimensions + [("result", "timeout")],
            factory: factory
        )
        self.inFlight = Meter(label: "inlong_transport_requests_in_flight", dimensions: dimensions, factory: factory)
        self.heartbeatRTT = Timer(label: "inlong_transport_heartbeat_rtt_seconds", dimensions: dimensions, factory: factory)
    }

    func disconnected(reason: String) {
        let counter = self.disconnects.withLock { counters in
            if let counter = counters[reason] { return counter }
            let counter = Counter(
                label: "inlong_transport_disconnects_total",
                dimensions: [("endpoint", self.endpoint), ("reason", reason)],
                factory: self.factory
            )
            counters[reason] = counter
            return counter
        }
        counter.increment()
    }

    /// The metrics of `endpoint`, or `nil` when metrics go nowhere (no factory given, none bootstrapped): the
    /// connection then skips every metric call.
    static func make(endpoint: Endpoint, factory: (any MetricsFactory)?) -> TransportMetrics? {
        metricsFactoryInUse(factory).map { TransportMetrics(endpoint: endpoint, factory: $0) }
    }
}
