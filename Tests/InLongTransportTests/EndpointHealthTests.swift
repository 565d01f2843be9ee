import Testing

@testable import InLongTransport

/// Avoiding failing endpoints, with the time given: no clock involved.
@Suite struct EndpointHealthTests {
    private let a = Endpoint(host: "127.0.0.1", port: 1)
    private let b = Endpoint(host: "127.0.0.1", port: 2)
    private let t0 = ContinuousClock.now

    @Test func avoidedAfterTheThresholdThenBackAfterThePause() {
        var health = EndpointHealth(threshold: 2, basePause: .seconds(1))
        #expect(health.failed(self.a, now: self.t0, usable: [self.a, self.b]) == nil)
        #expect(health.avoided(now: self.t0).isEmpty)
        #expect(health.failed(self.a, now: self.t0, usable: [self.a, self.b]) == .seconds(1))
        #expect(health.avoided(now: self.t0 + .milliseconds(999)) == [self.a])
        // Late failures of batches sent before do not lengthen the pause.
        #expect(health.failed(self.a, now: self.t0 + .milliseconds(500), usable: [self.a, self.b]) == nil)
        #expect(health.avoided(now: self.t0 + .seconds(1)).isEmpty)
        // The probe fails: avoided again, twice as long.
        #expect(health.failed(self.a, now: self.t0 + .seconds(1), usable: [self.a, self.b]) == .seconds(2))
        #expect(health.avoided(now: self.t0 + .milliseconds(2999)) == [self.a])
        #expect(health.avoided(now: self.t0 + .seconds(3)).isEmpty)
    }

    @Test func thePauseStopsDoublingAtTheMaximum() {
        var health = EndpointHealth(threshold: 1, basePause: .seconds(1), maxPause: .seconds(3))
        var now = self.t0
        var pauses: [Duration?] = []
        for _ in 0..<4 {
            let pause = health.failed(self.a, now: now, usable: [self.a, self.b])
            pauses.append(pause)
            now = now + (pause ?? .zero)
        }
        #expect(pauses == [.seconds(1), .seconds(2), .seconds(3), .seconds(3)])
    }

    @Test func aSuccessClearsTheCount() {
        var health = EndpointHealth(threshold: 2)
        _ = health.failed(self.a, now: self.t0, usable: [self.a, self.b])
        health.succeeded(self.a)
        #expect(health.failed(self.a, now: self.t0, usable: [self.a, self.b]) == nil)
        #expect(health.avoided(now: self.t0).isEmpty)
    }

    @Test func theLastUsableProxyIsNeverAvoided() {
        var health = EndpointHealth(threshold: 1)
        #expect(health.failed(self.a, now: self.t0, usable: [self.a]) == nil)
        #expect(health.failed(self.a, now: self.t0, usable: [self.a, self.b]) != nil)
        // b is now the only one not avoided.
        #expect(health.failed(self.b, now: self.t0, usable: [self.a, self.b]) == nil)
        #expect(health.avoided(now: self.t0) == [self.a])
    }

    @Test func proxiesNoLongerInUseAreForgotten() {
        var health = EndpointHealth(threshold: 1)
        _ = health.failed(self.a, now: self.t0, usable: [self.a, self.b])
        health.retain([self.b])
        #expect(health.avoided(now: self.t0).isEmpty)
    }
}
