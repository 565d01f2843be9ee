import Testing

@testable import InLongTransport

@Suite struct ReconnectStateMachineTests {
    static let backoff = ExponentialBackoff(initial: .milliseconds(100), maximum: .seconds(1), multiplier: 2, jitter: 0.2)

    func makeMachine(endpoints: Int) -> ReconnectStateMachine {
        ReconnectStateMachine(endpointCount: endpoints, backoff: Self.backoff, random: { $0.lowerBound })
    }

    @Test func connectsToFirstEndpointThenReady() {
        var machine = self.makeMachine(endpoints: 2)
        #expect(machine.start() == .connect(endpoint: 0, publish: .connecting))
        #expect(machine.start() == .none)
        #expect(machine.connectSucceeded() == .none)
        #expect(machine.state == .ready(endpoint: 0))
    }

    @Test func rotatesOverEndpointsBeforeBackingOff() {
        var machine = self.makeMachine(endpoints: 3)
        _ = machine.start()
        #expect(machine.connectFailed() == .connect(endpoint: 1, publish: .connecting))
        #expect(machine.connectFailed() == .connect(endpoint: 2, publish: .connecting))
        // A whole round failed: back off (jitter fixed at its lower bound, 0.8).
        #expect(machine.connectFailed() == .backoff(.milliseconds(80), publish: .transientFailure))
        #expect(machine.backoffElapsed() == .connect(endpoint: 0, publish: .connecting))
        _ = machine.connectFailed()
        _ = machine.connectFailed()
        #expect(machine.connectFailed() == .backoff(.milliseconds(160), publish: .transientFailure))
    }

    @Test func backoffGrowsToTheMaximumAndResetsAfterSuccess() {
        var machine = self.makeMachine(endpoints: 1)
        _ = machine.start()
        var delays: [ReconnectStateMachine.Action] = []
        for _ in 0..<6 {
            delays.append(machine.connectFailed())
            _ = machine.backoffElapsed()
        }
        #expect(delays == [80, 160, 320, 640, 800, 800].map { .backoff(.milliseconds($0), publish: .transientFailure) })
        #expect(machine.connectSucceeded() == .none)
        machine.connectionProvedHealthy()
        #expect(machine.connectionClosed() == .connect(endpoint: 0, publish: .connecting))
        #expect(machine.connectFailed() == .backoff(.milliseconds(80), publish: .transientFailure))
    }

    /// A peer that accepts and closes at once: each close is a failed attempt, and the backoff keeps growing.
    @Test func connectionClosedBeforeProvingHealthyBacksOff() {
        var machine = self.makeMachine(endpoints: 1)
        _ = machine.start()
        var delays: [ReconnectStateMachine.Action] = []
        for _ in 0..<5 {
            #expect(machine.connectSucceeded() == .none)
            delays.append(machine.connectionClosed())
            #expect(machine.backoffElapsed() == .connect(endpoint: 0, publish: .connecting))
        }
        #expect(delays == [80, 160, 320, 640, 800].map { .backoff(.milliseconds($0), publish: .transientFailure) })
    }

    @Test func anUnhealthyCloseTriesTheNextEndpointBeforeBackingOff() {
        var machine = self.makeMachine(endpoints: 2)
        _ = machine.start()
        _ = machine.connectSucceeded()
        #expect(machine.connectionClosed() == .connect(endpoint: 1, publish: .connecting))
        _ = machine.connectSucceeded()
        #expect(machine.connectionClosed() == .backoff(.milliseconds(80), publish: .transientFailure))
        #expect(machine.state == .backingOff(nextEndpoint: 0))
    }

    @Test func provingHealthyTwiceOrOutsideReadyChangesNothing() {
        var machine = self.makeMachine(endpoints: 1)
        _ = machine.start()
        machine.connectionProvedHealthy()
        #expect(machine.state == .connecting(endpoint: 0))
        _ = machine.connectFailed()
        _ = machine.backoffElapsed()
        _ = machine.connectSucceeded()
        machine.connectionProvedHealthy()
        machine.connectionProvedHealthy()
        #expect(machine.connectionClosed() == .connect(endpoint: 0, publish: .connecting))
        // The backoff started over with the healthy connection.
        #expect(machine.connectFailed() == .backoff(.milliseconds(80), publish: .transientFailure))
    }

    @Test func droppedConnectionReconnectsAtOnceToTheNextEndpoint() {
        var machine = self.makeMachine(endpoints: 2)
        _ = machine.start()
        _ = machine.connectSucceeded()
        machine.connectionProvedHealthy()
        #expect(machine.connectionClosed() == .connect(endpoint: 1, publish: .connecting))
    }

    @Test func shutdownWhileReadyDrainsThenFinishes() {
        var machine = self.makeMachine(endpoints: 1)
        _ = machine.start()
        _ = machine.connectSucceeded()
        #expect(machine.shutdownRequested() == .drainAndClose)
        #expect(machine.shutdownRequested() == .none)
        #expect(machine.connectionClosed() == .finish)
        #expect(machine.state == .shutDown)
    }

    @Test func shutdownWhileConnectingWaitsForTheAttempt() {
        var machine = self.makeMachine(endpoints: 1)
        _ = machine.start()
        #expect(machine.shutdownRequested() == .cancelConnect)
        #expect(machine.connectSucceeded() == .drainAndClose)
        #expect(machine.connectionClosed() == .finish)

        var failing = self.makeMachine(endpoints: 1)
        _ = failing.start()
        _ = failing.shutdownRequested()
        #expect(failing.connectFailed() == .finish)
    }

    @Test func shutdownWhileBackingOffOrIdleFinishesAtOnce() {
        var idle = self.makeMachine(endpoints: 1)
        #expect(idle.shutdownRequested() == .finish)
        #expect(idle.start() == .none)

        var backingOff = self.makeMachine(endpoints: 1)
        _ = backingOff.start()
        _ = backingOff.connectFailed()
        #expect(backingOff.shutdownRequested() == .finish)
        #expect(backingOff.backoffElapsed() == .none)
    }

    @Test func endpointsShrinkingKeepsIndicesValid() {
        var machine = self.makeMachine(endpoints: 3)
        _ = machine.start()
        _ = machine.connectFailed()
        _ = machine.connectFailed()
        machine.endpointsChanged(count: 1)
        #expect(machine.state == .connecting(endpoint: 0))
    }
}

@Suite struct BackoffTests {
    @Test func jitterStaysInBounds() {
        var iterator = ExponentialBackoff(initial: .seconds(1), maximum: .seconds(1), multiplier: 2, jitter: 0.5).makeIterator()
        for _ in 0..<1000 {
            let delay = iterator.next()
            #expect(delay >= .milliseconds(500) && delay <= .milliseconds(1500))
        }
    }

    @Test func noJitterIsExact() {
        var iterator = ExponentialBackoff(initial: .milliseconds(10), maximum: .milliseconds(50), multiplier: 3, jitter: 0).makeIterator()
        #expect((0..<4).map { _ in iterator.next() } == [.milliseconds(10), .milliseconds(30), .milliseconds(50), .milliseconds(50)])
    }
}

@Suite struct ReconnectSwitchTests {
    func makeMachine(endpoints: Int) -> ReconnectStateMachine {
        ReconnectStateMachine(endpointCount: endpoints, backoff: ReconnectStateMachineTests.backoff, reconnects: false, random: { $0.lowerBound })
    }

    @Test func withoutReconnectAFailedRoundFinishes() {
        var machine = self.makeMachine(endpoints: 2)
        _ = machine.start()
        #expect(machine.connectFailed() == .connect(endpoint: 1, publish: .connecting))
        #expect(machine.connectFailed() == .finish)
        #expect(machine.state == .shutDown)
    }

    @Test func withoutReconnectACloseFinishes() {
        var machine = self.makeMachine(endpoints: 2)
        _ = machine.start()
        _ = machine.connectSucceeded()
        machine.connectionProvedHealthy()
        #expect(machine.connectionClosed() == .finish)
        #expect(machine.state == .shutDown)
    }
}
