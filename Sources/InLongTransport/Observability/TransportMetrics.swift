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

    init(endpoint: Endpoint) {
        let dimensions = [("endpoint", endpoint.description)]
        self.endpoint = endpoint.description
        self.connects = Counter(label: "inlong.transport.connects", dimensions: dimensions)
        self.connectFailures = Counter(label: "inlong.transport.connect_failures", dimensions: dimensions)
        self.framesOut = Counter(label: "inlong.transport.frames_out", dimensions: dimensions)
        self.framesIn = Counter(label: "inlong.transport.frames_in", dimensions: dimensions)
        self.bytesOut = Counter(label: "inlong.transport.bytes_out", dimensions: dimensions)
        self.bytesIn = Counter(label: "inlong.transport.bytes_in", dimensions: dimensions)
        self.requestsSucceeded = Counter(
            label: "inlong.transport.requests",
            dimensions: dimensions + [("result", "ok")]
        )
        self.requestsFailed = Counter(label: "inlong.transport.requests", dimensions: dimensions + [("result", "failed")])
        self.requestsTimedOut = Counter(
            label: "inlong.transport.requests",
            dimensions: dimensions + [("result", "timeout")]
        )
        self.inFlight = Meter(label: "inlong.transport.in_flight", dimensions: dimensions)
        self.heartbeatRTT = Timer(label: "inlong.transport.heartbeat_rtt", dimensions: dimensions)
    }

    func disconnected(reason: String) {
        Counter(label: "inlong.transport.disconnects", dimensions: [("endpoint", self.endpoint), ("reason", reason)])
            .increment()
    }
}
