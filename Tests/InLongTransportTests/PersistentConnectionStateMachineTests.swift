import Testing

@testable import InLongTransport

/// The connection's own rules around the reconnect machine: which channel requests go to, draining, watchers and
/// the run's end. Channels and watchers are strings.
@Suite struct PersistentConnectionStateMachineTests {
    typealias Machine = PersistentConnectionStateMachine<String, String>

    static let endpoints = [Endpoint(host: "127.0.0.1", port: 1), Endpoint(host: "127.0.0.1", port: 2)]

    func makeMachine(endpoints: Int = 2, reconnects: Bool = true) -> Machine {
        Machine(
            endpoints: Array(Self.endpoints.prefix(endpoints)),
            reconnect: ReconnectStateMachine(
                endpointCount: endpoints,
                backoff: ExponentialBackoff(initial: .milliseconds(100), maximum: .seconds(1), multiplier: 2, jitter: 0.2),
                reconnects: reconnects,
                random: { $0.lowerBound }
            )
        )
    }

    @Test func theRunConnectsToTheFirstEndpointAndWatchersSeeEachState() {
        var machine = self.makeMachine()
        #expect(machine.watcherAdded("w", id: 1).text == ["tell w idle"])
        #expect(machine.runStarted().text == ["tell w connecting", "connect 127.0.0.1:1 as #1"])
        #expect(machine.openChannel == nil)
        #expect(!machine.isAcceptingRequests)
        #expect(machine.connected("c1", channelID: 1).text == ["tell w ready"])
        #expect(machine.openChannel == "c1")
        #expect(machine.isAcceptingRequests)
        #expect(machine.connectedEndpoint == Self.endpoints[0])
        #expect(machine.connectivity == .ready)
    }

    @Test func aLateWatcherIsToldTheCurrentStateOnlyAndARemovedOneNothing() {
        var machine = self.makeMachine()
        _ = machine.runStarted()
        #expect(machine.watcherAdded("late", id: 1).text == ["tell late connecting"])
        #expect(machine.watcherAdded("gone", id: 2).text == ["tell gone connecting"])
        #expect(machine.watcherRemoved(id: 2).text == [])
        #expect(machine.connected("c1", channelID: 1).text == ["tell late ready"])
    }

    /// Rotating to the next endpoint is still `connecting`: no watcher is told the same state twice.
    @Test func theSameStateAgainIsNoChange() {
        var machine = self.makeMachine()
        _ = machine.watcherAdded("w", id: 1)
        _ = machine.runStarted()
        #expect(machine.connectFailed().text == ["connect 127.0.0.1:2 as #2"])
        #expect(machine.connectFailed().text == ["tell w transientFailure", "back off 80 ms"])
        #expect(machine.backoffElapsed().text == ["tell w connecting", "connect 127.0.0.1:1 as #3"])
    }

    @Test func recycleDrainsTheOpenChannelAndItsCloseConnectsToTheNextEndpoint() {
        var machine = self.makeMachine()
        _ = machine.runStarted()
        _ = machine.connected("c1", channelID: 1)
        _ = machine.provedHealthy(channelID: 1)
        #expect(machine.recycleRequested().text == ["drain c1"])
        // Requests still reach the draining channel, which refuses them; a pool no longer picks it.
        #expect(machine.openChannel == "c1")
        #expect(!machine.isAcceptingRequests)
        #expect(machine.channelClosed(channelID: 1).text == ["connect 127.0.0.1:2 as #2"])
        #expect(machine.openChannel == nil)
        #expect(machine.connected("c2", channelID: 2).text == [])
        #expect(machine.isAcceptingRequests)
    }

    @Test func recycleWithoutAChannelDoesNothing() {
        var machine = self.makeMachine()
        #expect(machine.recycleRequested().text == [])
        _ = machine.runStarted()
        #expect(machine.recycleRequested().text == [])
    }

    /// Events of a channel that is no longer the open one (a late timer, a second close) change nothing.
    @Test func eventsOfAnotherChannelChangeNothing() {
        var machine = self.makeMachine(endpoints: 1)
        _ = machine.runStarted()
        _ = machine.connected("c1", channelID: 1)
        #expect(machine.ageExpired(channelID: 7).text == [])
        #expect(machine.provedHealthy(channelID: 7).text == [])
        #expect(machine.channelClosed(channelID: 7).text == [])
        #expect(machine.isAcceptingRequests)
        // Never proved healthy (the proof named another channel): its close is a failed attempt, backed off.
        #expect(machine.channelClosed(channelID: 1).text == ["back off 80 ms"])
        #expect(machine.channelClosed(channelID: 1).text == [])
    }

    @Test func theAgeLimitDrainsAndTheCloseReconnects() {
        var machine = self.makeMachine()
        _ = machine.runStarted()
        _ = machine.connected("c1", channelID: 1)
        _ = machine.provedHealthy(channelID: 1)
        #expect(machine.ageExpired(channelID: 1).text == ["drain c1"])
        #expect(machine.connectivity == .ready)
        #expect(machine.channelClosed(channelID: 1).text == ["connect 127.0.0.1:2 as #2"])
    }

    /// A shutdown while connecting lets the attempt end: what opens is drained at once, and its close ends the run.
    @Test func aShutdownWhileConnectingDrainsWhatOpens() {
        var machine = self.makeMachine()
        _ = machine.watcherAdded("w", id: 1)
        _ = machine.runStarted()
        #expect(machine.shutdownRequested().text == [])
        #expect(machine.connected("c1", channelID: 1).text == ["drain c1"])
        #expect(!machine.isAcceptingRequests)
        #expect(machine.connectivity == .connecting)
        #expect(machine.channelClosed(channelID: 1).text == ["finish the run"])
        #expect(machine.runEnded().text == ["tell w shutdown", "end w"])
    }

    @Test func aShutdownWhileConnectingEndsTheRunWhenTheAttemptFails() {
        var machine = self.makeMachine()
        _ = machine.runStarted()
        _ = machine.shutdownRequested()
        #expect(machine.connectFailed().text == ["finish the run"])
    }

    @Test func aShutdownWhileReadyDrainsThenFinishes() {
        var machine = self.makeMachine()
        _ = machine.runStarted()
        _ = machine.connected("c1", channelID: 1)
        #expect(machine.shutdownRequested().text == ["drain c1"])
        #expect(machine.shutdownRequested().text == [])
        #expect(machine.channelClosed(channelID: 1).text == ["finish the run"])
    }

    @Test func aShutdownWhileBackingOffFinishesAndTheLateBackoffIsIgnored() {
        var machine = self.makeMachine(endpoints: 1)
        _ = machine.runStarted()
        #expect(machine.connectFailed().text == ["back off 80 ms"])
        #expect(machine.shutdownRequested().text == ["finish the run"])
        #expect(machine.backoffElapsed().text == [])
    }

    @Test func withoutReconnectTheFirstCloseFinishes() {
        var machine = self.makeMachine(reconnects: false)
        _ = machine.runStarted()
        _ = machine.connected("c1", channelID: 1)
        #expect(machine.channelClosed(channelID: 1).text == ["finish the run"])
    }

    @Test func watchersAreToldShutdownOnceAndEndedAndLaterOnesAtOnce() {
        var machine = self.makeMachine()
        _ = machine.watcherAdded("a", id: 1)
        _ = machine.watcherAdded("b", id: 2)
        let ended = machine.runEnded()
        #expect(ended.tell.map { "\($0.watcher) \($0.state)" }.sorted() == ["a shutdown", "b shutdown"])
        guard case .endWatches(let watchers) = ended.then else {
            Issue.record("no watcher ended: \(ended.text)")
            return
        }
        #expect(watchers.sorted() == ["a", "b"])
        #expect(machine.connectivity == .shutdown)
        #expect(machine.watcherAdded("late", id: 3).text == ["tell late shutdown", "end late"])
        #expect(machine.watcherRemoved(id: 1).text == [])
    }
}

extension PersistentConnectionStateMachine.Actions where Channel == String, Watcher == String {
    /// The actions as text, in the order the driver performs them.
    var text: [String] {
        var lines = self.tell.map { "tell \($0.watcher) \($0.state)" }
        switch self.then {
        case .none: break
        case .connect(let endpoint, let channelID): lines.append("connect \(endpoint) as #\(channelID)")
        case .backoff(let delay):
            lines.append(
                "back off \(delay.components.seconds * 1000 + delay.components.attoseconds / 1_000_000_000_000_000) ms"
            )
        case .drain(let channel): lines.append("drain \(channel)")
        case .finishRun: lines.append("finish the run")
        case .endWatches(let watchers): lines.append("end " + watchers.joined(separator: " "))
        }
        return lines
    }
}
