import CoreMetrics

/// swift-metrics instruments of one connection, created once (labels `inlong.transport.*`, dimension `endpoint`).
struct TransportMetrics: Sendable {
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

    init(endpoint: Endpoint, factory: any MetricsFactory) {
        let dimensions = [("endpoint", endpoint.description)]
        self.endpoint = endpoint.description
        self.factory = factory
        self.connects = Counter(label: "inlong.transport.connects", dimensions: dimensions, factory: factory)
        self.connectFailures = Counter(label: "inlong.transport.connect_failures", dimensions: dimensions, factory: factory)
        self.framesOut = Counter(label: "inlong.transport.frames_out", dimensions: dimensions, factory: factory)
        self.framesIn = Counter(label: "inlong.transport.frames_in", dimensions: dimensions, factory: factory)
        self.bytesOut = Counter(label: "inlong.transport.bytes_out", dimensions: dimensions, factory: factory)
        self.bytesIn = Counter(label: "inlong.transport.bytes_in", dimensions: dimensions, factory: factory)
        self.requestsSucceeded = Counter(
            label: "inlong.transport.requests",
            dimensions: dimensions + [("result", "ok")],
            factory: factory
        )
        self.requestsFailed = Counter(label: "inlong.transport.requests", dimensions: dimensions + [("result", "failed")], factory: factory)
        self.requestsTimedOut = Counter(
            label: "inlong.transport.requests",
            dimensions: dimensions + [("result", "timeout")],
            factory: factory
        )
        self.inFlight = Meter(label: "inlong.transport.in_flight", dimensions: dimensions, factory: factory)
        self.heartbeatRTT = Timer(label: "inlong.transport.heartbeat_rtt", dimensions: dimensions, factory: factory)
    }

    func disconnected(reason: String) {
        Counter(label: "inlong.transport.disconnects", dimensions: [("endpoint", self.endpoint), ("reason", reason)], factory: self.factory)
            .increment()
    }
}
