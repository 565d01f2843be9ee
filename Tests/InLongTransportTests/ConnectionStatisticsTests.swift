import Testing

@testable import InLongTransport

/// What is not a plain counter: the last connect error (and whether a failure is the first of an outage, the one
/// logged at warning), and disconnects by reason.
@Suite struct ConnectionStatisticsTests {
    static let failure = TransportError(.connectFailed, endpoint: Endpoint(host: "127.0.0.1", port: 1))

    @Test func theFirstFailureOfAnOutageIsToldAndAConnectEndsTheOutage() {
        let counters = StatisticsCounters()
        #expect(counters.connectFailed(Self.failure))
        #expect(!counters.connectFailed(Self.failure))
        #expect(counters.snapshot().lastConnectError == "\(Self.failure)")
        counters.connected()
        #expect(counters.snapshot().lastConnectError == nil)
        #expect(counters.connectFailed(Self.failure))
        let snapshot = counters.snapshot()
        #expect(snapshot.connects == 1)
        #expect(snapshot.connectFailures == 3)
    }

    @Test func disconnectsAreCountedByReason() {
        let counters = StatisticsCounters()
        counters.disconnected(reason: "idle")
        counters.disconnected(reason: "closedByPeer")
        counters.disconnected(reason: "idle")
        #expect(counters.snapshot().disconnects == ["idle": 2, "closedByPeer": 1])
    }

    /// Random connects, failures and disconnects against a model.
    @Test(arguments: 0..<10)
    func randomOutcomesMatchAModel(seed: UInt64) {
        var random = Xorshift(seed: seed)
        let counters = StatisticsCounters()
        var inOutage = false
        var connects = 0
        var failures = 0
        var disconnects: [String: Int] = [:]
        let reasons = ["idle", "closedByPeer", "heartbeatTimeout", "local"]
        for _ in 0..<200 {
            switch Int.random(in: 0..<3, using: &random) {
            case 0:
                counters.connected()
                connects += 1
                inOutage = false
            case 1:
                #expect(counters.connectFailed(Self.failure) == !inOutage)
                failures += 1
                inOutage = true
            default:
                let reason = reasons.randomElement(using: &random)!
                counters.disconnected(reason: reason)
                disconnects[reason, default: 0] += 1
            }
            let snapshot = counters.snapshot()
            #expect(snapshot.connects == connects)
            #expect(snapshot.connectFailures == failures)
            #expect((snapshot.lastConnectError != nil) == inOutage)
            #expect(snapshot.disconnects == disconnects)
        }
    }
}
