import Foundation
@testable import InLongTransport
import InLongWire
import Synchronization
import Testing

/// How a persistent connection finds a peer (``ReconnectStateMachine``) and how a pool avoids failing endpoints
/// (``EndpointHealth``), under seeded random schedules on a simulated clock: endpoints that refuse, accept slowly,
/// accept and close at once, drop healthy connections, go down and up (partitions), an endpoint list that grows
/// and shrinks, and a shutdown at any moment. Invariants after every event.
final class ReconnectSimulation {
    enum Pending: Equatable {
        case nothing
        /// A connect attempt to this endpoint ends at the instant, refused or not.
        case connect(endpoint: Int, at: ContinuousClock.Instant)
        case backoff(until: ContinuousClock.Instant)
        /// A connection is open; it may drop.
        case open(endpoint: Int, since: ContinuousClock.Instant)
        /// A drain was asked: the channel closes at the instant.
        case closing(at: ContinuousClock.Instant)
        case finished
    }

    let seed: UInt64
    let steps: Int
    var random: SplitMix64
    var trace = EventTrace(keep: Int(ProcessInfo.processInfo.environment["INLONG_SIMULATION_TRACE"] ?? "") ?? 30)
    var step = 0
    let start = ContinuousClock.now
    var now: ContinuousClock.Instant
    let backoff: ExponentialBackoff
    var machine: ReconnectStateMachine
    var pending = Pending.nothing
    var endpointsUp: [Bool]
    /// Endpoints that accept and close at once (a proxy that is up but refuses work).
    var endpointsFlaky: [Bool]
    var shutdownAsked = false
    /// Connect attempts since the last connection that proved healthy, and backoffs since.
    var attemptsSinceHealthy = 0
    var backoffsSinceHealthy = 0
    /// Endpoints tried since the last backoff or healthy connection.
    var triedInRound: Set<Int> = []
    var resizedInRound = false
    /// Since when an endpoint has been up and not flaky without interruption (nil: none is).
    var healedSince: ContinuousClock.Instant?

    init(seed: UInt64, steps: Int) {
        self.seed = seed
        self.steps = steps
        var random = SplitMix64(seed: seed)
        self.now = self.start
        let count = Int.random(in: 1...4, using: &random)
        self.endpointsUp = (0..<count).map { _ in Int.random(in: 0..<3, using: &random) > 0 }
        self.endpointsFlaky = (0..<count).map { _ in Int.random(in: 0..<5, using: &random) == 0 }
        self.backoff = ExponentialBackoff(
            initial: .milliseconds(Int64.random(in: 10...200, using: &random)),
            maximum: .milliseconds(Int64.random(in: 200...5_000, using: &random)),
            multiplier: [1, 1.5, 2, 3][Int.random(in: 0..<4, using: &random)],
            jitter: [0, 0.2, 0.5][Int.random(in: 0..<3, using: &random)]
        )
        // The machine's jitter comes from the schedule's own generator: replays are exact.
        let jitter = Mutex(SplitMix64(seed: seed ^ 0x9E37_79B9))
        self.machine = ReconnectStateMachine(endpointCount: count, backoff: self.backoff) { range in
            jitter.withLock { Double.random(in: range, using: &$0) }
        }
        self.random = random
    }

    func violation(_ invariant: String, _ detail: String) -> SimulationViolation {
        SimulationViolation(simulation: "reconnect", seed: self.seed, step: self.step, invariant: invariant, detail: detail, trace: self.trace.events)
    }

    var endpointCount: Int { self.endpointsUp.count }

    /// An attempt or connection to an endpoint since taken off the list goes to the address it had: gone.
    func isUp(_ endpoint: Int) -> Bool { endpoint < self.endpointCount && self.endpointsUp[endpoint] }
    func isFlaky(_ endpoint: Int) -> Bool { endpoint < self.endpointCount && self.endpointsFlaky[endpoint] }

    // MARK: Driving the machine as PersistentConnection does

    func run(_ action: ReconnectStateMachine.Action) throws {
        switch action {
        case .none:
            break
        case .connect(let endpoint, _):
            guard !self.shutdownAsked else { throw self.violation("no connect after shutdown", "endpoint \(endpoint)") }
            guard endpoint < self.endpointCount else { throw self.violation("connects only to listed endpoints", "endpoint \(endpoint) of \(self.endpointCount)") }
            guard case .nothing = self.pending else { throw self.violation("one attempt or connection at a time", "connect while \(self.pending)") }
            self.attemptsSinceHealthy += 1
            self.triedInRound.insert(endpoint)
            // A round has at most as many attempts as the longest list (4) has endpoints, then a backoff.
            guard self.attemptsSinceHealthy <= (self.backoffsSinceHealthy + 1) * 4 + 1 else {
                throw self.violation(
                    "no endpoint is dialled flat out",
                    "\(self.attemptsSinceHealthy) attempts and \(self.backoffsSinceHealthy) backoffs since a healthy connection"
                )
            }
            self.pending = .connect(endpoint: endpoint, at: self.now + .milliseconds(Int64.random(in: 1...100, using: &self.random)))
            self.trace.record("\(self.now - self.start): connect to \(endpoint)")
        case .backoff(let delay, _):
            guard case .nothing = self.pending else { throw self.violation("one attempt or connection at a time", "backoff while \(self.pending)") }
            // Every endpoint of the list, unless the list changed during the round (its rotation is then renumbered).
            guard self.resizedInRound || self.triedInRound.count >= min(self.endpointCount, self.attemptsSinceHealthy) else {
                throw self.violation("backs off only after every endpoint failed in a row", "tried \(self.triedInRound.sorted()) of \(self.endpointCount)")
            }
            let low = self.backoff.initial * (1 - self.backoff.jitter) - .microseconds(1)
            let high = self.backoff.maximum * (1 + self.backoff.jitter) + .microseconds(1)
            guard delay >= low, delay <= high else {
                throw self.violation("a backoff stays within its bounds", "\(delay) outside \(low)...\(high)")
            }
            self.backoffsSinceHealthy += 1
            self.triedInRound = []
            self.resizedInRound = false
            self.pending = .backoff(until: self.now + delay)
            self.trace.record("\(self.now - self.start): back off \(delay)")
        case .drainAndClose:
            guard case .open = self.pending else { throw self.violation("drains only an open connection", "\(self.pending)") }
            self.pending = .closing(at: self.now + .milliseconds(Int64.random(in: 0...50, using: &self.random)))
            self.trace.record("drain and close")
        case .cancelConnect:
            guard case .connect = self.pending else { throw self.violation("cancels only an attempt", "\(self.pending)") }
            self.trace.record("cancel the attempt")
            self.pending = .nothing
            try self.run(self.machine.connectFailed())
        case .finish:
            guard self.shutdownAsked else { throw self.violation("finishes only when shut down", "\(self.machine.state)") }
            self.pending = .finished
            self.trace.record("finish")
        }
    }

    /// Whatever was pending ends at its instant.
    func complete() throws {
        switch self.pending {
        case .connect(let endpoint, let at):
            self.now = max(self.now, at)
            self.pending = .nothing
            if self.isUp(endpoint) {
                self.trace.record("connected to \(endpoint)")
                self.pending = .open(endpoint: endpoint, since: self.now)
                try self.run(self.machine.connectSucceeded())
                if self.isFlaky(endpoint), case .open = self.pending {
                    self.trace.record("\(endpoint) closes at once")
                    self.pending = .nothing
                    try self.run(self.machine.connectionClosed())
                }
            } else {
                self.trace.record("refused by \(endpoint)")
                try self.run(self.machine.connectFailed())
            }
        case .backoff(let until):
            self.now = max(self.now, until)
            self.pending = .nothing
            try self.run(self.machine.backoffElapsed())
        case .closing(let at):
            self.now = max(self.now, at)
            self.pending = .nothing
            try self.run(self.machine.connectionClosed())
        case .open, .nothing, .finished:
            break
        }
    }

    /// Moves the clock on; what is pending ends at its instant on the way (and what that starts, at its own).
    func advance(by amount: Duration) throws {
        let target = self.now + amount
        while true {
            switch self.pending {
            case .connect(_, let at), .backoff(let at), .closing(let at):
                guard at <= target else { break }
                try self.complete()
                try self.checkLiveness()
                continue
            default:
                break
            }
            break
        }
        self.now = target
    }

    func drop() throws {
        guard case .open(let endpoint, _) = self.pending else { return }
        self.trace.record("connection to \(endpoint) dropped")
        self.pending = .nothing
        try self.run(self.machine.connectionClosed())
    }

    func proveHealthy() {
        guard case .open(let endpoint, _) = self.pending, !self.isFlaky(endpoint) else { return }
        self.machine.connectionProvedHealthy()
        self.attemptsSinceHealthy = 0
        self.backoffsSinceHealthy = 0
        self.triedInRound = []
        self.resizedInRound = false
        self.trace.record("connection to \(endpoint) proved healthy")
    }

    func resize() {
        let count = Int.random(in: 1...4, using: &self.random)
        while self.endpointsUp.count < count {
            self.endpointsUp.append(Int.random(in: 0..<2, using: &self.random) == 0)
            self.endpointsFlaky.append(false)
        }
        self.endpointsUp.removeLast(self.endpointsUp.count - count)
        self.endpointsFlaky.removeLast(self.endpointsFlaky.count - count)
        self.machine.endpointsChanged(count: count)
        self.resizedInRound = true
        self.trace.record("endpoints now \(count)")
    }

    // MARK: Invariants

    func checkLiveness() throws {
        let healthy = self.endpointsUp.indices.contains { self.endpointsUp[$0] && !self.endpointsFlaky[$0] }
        if !healthy || self.shutdownAsked {
            self.healedSince = nil
            return
        }
        if case .open = self.pending {
            self.healedSince = nil
            return
        }
        let since = self.healedSince ?? self.now
        self.healedSince = since
        // A full round of attempts and the longest backoff between two rounds, twice over for the round that was
        // under way.
        let bound = (self.backoff.maximum * (1 + self.backoff.jitter) + .milliseconds(100) * self.endpointCount) * 2 + .milliseconds(200)
        if self.now - since > bound {
            throw self.violation("once an endpoint is up, a connection opens in time", "waiting \(self.now - since), bound \(bound)")
        }
    }

    func runSchedule() throws {
        try self.run(self.machine.start())
        while self.step < self.steps {
            self.step += 1
            if case .finished = self.pending { return }
            switch Int.random(in: 0..<100, using: &self.random) {
            case 0..<40:
                try self.complete()
            case 40..<50:
                try self.advance(by: .milliseconds(Int64.random(in: 0...500, using: &self.random)))
            case 50..<60:
                try self.drop()
            case 60..<72:
                self.proveHealthy()
            case 72..<86:
                let endpoint = Int.random(in: 0..<self.endpointCount, using: &self.random)
                self.endpointsUp[endpoint].toggle()
                self.trace.record("\(self.now - self.start): endpoint \(endpoint) \(self.endpointsUp[endpoint] ? "up" : "down")")
            case 86..<90:
                let endpoint = Int.random(in: 0..<self.endpointCount, using: &self.random)
                self.endpointsFlaky[endpoint].toggle()
                self.trace.record("endpoint \(endpoint) \(self.endpointsFlaky[endpoint] ? "closes at once" : "serves")")
            case 90..<95:
                self.resize()
            case 95 where Int.random(in: 0..<10, using: &self.random) == 0:
                self.shutdownAsked = true
                self.trace.record("shutdown")
                try self.run(self.machine.shutdownRequested())
            default:
                // Every endpoint down for a while: a partition.
                for index in self.endpointsUp.indices { self.endpointsUp[index] = false }
                self.trace.record("partition")
            }
            try self.checkLiveness()
        }
        // Shutdown ends everything: at most the step under way completes first.
        if !self.shutdownAsked {
            self.shutdownAsked = true
            try self.run(self.machine.shutdownRequested())
        }
        for _ in 0..<3 where self.pending != .finished { try self.complete() }
        guard case .finished = self.pending, case .shutDown = self.machine.state else {
            throw self.violation("a shutdown finishes once the step under way ends", "\(self.pending), machine \(self.machine.state)")
        }
    }
}

/// ``EndpointHealth`` under random outcomes: it never avoids every usable endpoint, pauses stay within their
/// bounds and grow only while failures go on, a success clears an endpoint.
struct EndpointHealthSimulation {
    static func run(seed: UInt64, steps: Int) throws {
        var random = SplitMix64(seed: seed)
        let start = ContinuousClock.now
        var now = start
        let threshold = Int.random(in: 1...4, using: &random)
        let base = Duration.milliseconds(Int64.random(in: 10...1_000, using: &random))
        var health = EndpointHealth(threshold: threshold, basePause: base)
        let all = (0..<5).map { Endpoint(host: "127.0.0.\($0 + 1)", port: 4_000) }
        var usable = Array(all.prefix(3))
        var trace = EventTrace()
        func violation(_ invariant: String, _ detail: String, _ step: Int) -> SimulationViolation {
            SimulationViolation(simulation: "endpoint health", seed: seed, step: step, invariant: invariant, detail: detail, trace: trace.events)
        }
        for step in 1...steps {
            let endpoint = usable[Int.random(in: 0..<usable.count, using: &random)]
            switch Int.random(in: 0..<10, using: &random) {
            case 0..<6:
                let pause = health.failed(endpoint, now: now, usable: usable)
                trace.record("\(endpoint) failed: \(pause.map { "avoided \($0)" } ?? "not avoided")")
                if let pause, pause < base || pause > base * 30 {
                    throw violation("a pause stays within its bounds", "\(pause)", step)
                }
                if pause != nil, usable.allSatisfy(health.avoided(now: now).contains) {
                    throw violation("an endpoint is never avoided when that leaves none of the usable ones", "\(usable)", step)
                }
            case 6, 7:
                health.succeeded(endpoint)
                trace.record("\(endpoint) succeeded")
                if health.avoided(now: now).contains(endpoint) {
                    throw violation("a success clears an endpoint", "\(endpoint)", step)
                }
            case 8:
                now += .milliseconds(Int64.random(in: 0...3_000, using: &random))
            default:
                usable = Array(all.shuffled(using: &random).prefix(Int.random(in: 1...5, using: &random)))
                health.retain(usable)
                trace.record("usable: \(usable.count)")
            }
        }
    }
}

/// ``PersistentConnectionStateMachine`` driven as ``PersistentConnection`` drives it, under seeded random
/// schedules: attempts that open or fail, channels that drop, prove healthy, age out or are recycled, late events
/// of channels long closed, watchers that come and go, a shutdown or a cancelled run at any moment. Invariants
/// after every event: one attempt, backoff or channel at a time and never none while it runs; requests go to the
/// open channel only while it is not draining; every watcher is told each change once, in order, ends told
/// `shutdown`, and hears nothing once gone.
final class ConnectionDriverSimulation {
    /// Channels are their ids; watchers are numbers.
    typealias Machine = PersistentConnectionStateMachine<Int, Int>

    let seed: UInt64
    let steps: Int
    var random: SplitMix64
    var trace = EventTrace(keep: Int(ProcessInfo.processInfo.environment["INLONG_SIMULATION_TRACE"] ?? "") ?? 30)
    var step = 0
    let endpoints: [Endpoint]
    let reconnects: Bool
    var machine: Machine

    // What the driver has under way.
    var attempt: (channelID: Int, endpoint: Endpoint)?
    var backoffPending = false
    var open: (channelID: Int, endpoint: Endpoint)?
    var drainAsked = false
    var lastChannelID = 0
    var shutdownAsked = false
    var runFinished = false
    var runEnded = false

    // What the watchers heard.
    var told: [Int: [PersistentConnectionState]] = [:]
    var live: Set<Int> = []
    var ended: Set<Int> = []
    var nextWatcher = 0

    init(seed: UInt64, steps: Int) {
        self.seed = seed
        self.steps = steps
        var random = SplitMix64(seed: seed)
        let count = Int.random(in: 1...3, using: &random)
        self.endpoints = (0..<count).map { Endpoint(host: "127.0.0.\($0 + 1)", port: 4_000) }
        self.reconnects = Int.random(in: 0..<5, using: &random) > 0
        let jitter = Mutex(SplitMix64(seed: seed ^ 0x5DEE_CE66))
        self.machine = Machine(
            endpoints: self.endpoints,
            reconnect: ReconnectStateMachine(
                endpointCount: count,
                backoff: ExponentialBackoff(initial: .milliseconds(10), maximum: .seconds(1), multiplier: 2, jitter: 0.2),
                reconnects: self.reconnects,
                random: { range in jitter.withLock { Double.random(in: range, using: &$0) } }
            )
        )
        self.random = random
    }

    func violation(_ invariant: String, _ detail: String) -> SimulationViolation {
        SimulationViolation(
            simulation: "connection driver",
            seed: self.seed,
            step: self.step,
            invariant: invariant,
            detail: detail,
            trace: self.trace.events
        )
    }

    // MARK: Driving the machine as PersistentConnection does

    func apply(_ actions: Machine.Actions) throws {
        for (watcher, state) in actions.tell {
            guard !self.ended.contains(watcher) else { throw self.violation("an ended watcher hears nothing", "watcher \(watcher) told \(state)") }
            guard self.live.contains(watcher) else { throw self.violation("a removed watcher hears nothing", "watcher \(watcher) told \(state)") }
            let heard = self.told[watcher, default: []]
            guard heard.last != state else { throw self.violation("a watcher is told each change once", "watcher \(watcher) told \(state) twice") }
            guard heard.last != .shutdown else { throw self.violation("nothing follows shutdown", "watcher \(watcher) told \(state)") }
            self.told[watcher, default: []].append(state)
        }
        switch actions.then {
        case .none:
            break
        case .connect(let endpoint, let channelID):
            guard !self.shutdownAsked, !self.runFinished else { throw self.violation("no connect after shutdown", "#\(channelID)") }
            guard self.attempt == nil, self.open == nil, !self.backoffPending else {
                throw self.violation("one attempt, backoff or channel at a time", "connect #\(channelID) with \(self.underWay)")
            }
            guard channelID > self.lastChannelID else { throw self.violation("channel ids are never reused", "#\(channelID) after #\(self.lastChannelID)") }
            guard self.endpoints.contains(endpoint) else { throw self.violation("connects only to listed endpoints", "\(endpoint)") }
            self.lastChannelID = channelID
            self.attempt = (channelID, endpoint)
            self.trace.record("connect #\(channelID) to \(endpoint)")
        case .backoff(let delay):
            guard self.attempt == nil, self.open == nil, !self.backoffPending else {
                throw self.violation("one attempt, backoff or channel at a time", "back off with \(self.underWay)")
            }
            self.backoffPending = true
            self.trace.record("back off \(delay)")
        case .drain(let channel):
            guard channel == self.open?.channelID else { throw self.violation("drains only the open channel", "#\(channel), open \(self.underWay)") }
            self.drainAsked = true
            self.trace.record("drain #\(channel)")
        case .finishRun:
            guard self.shutdownAsked || !self.reconnects else { throw self.violation("the run ends only when shut down", "\(self.underWay)") }
            guard self.attempt == nil, self.open == nil else { throw self.violation("the run ends with nothing open", "\(self.underWay)") }
            self.runFinished = true
            self.backoffPending = false
            self.trace.record("finish the run")
        case .endWatches(let watchers):
            for watcher in watchers {
                guard self.live.remove(watcher) != nil, self.ended.insert(watcher).inserted else {
                    throw self.violation("a watcher is ended once, while it watches", "watcher \(watcher)")
                }
                guard self.told[watcher]?.last == .shutdown else {
                    throw self.violation("a watcher is told shutdown before it ends", "watcher \(watcher) heard \(self.told[watcher] ?? [])")
                }
            }
            self.trace.record("end watchers \(watchers.sorted())")
        }
    }

    var underWay: String {
        "attempt \(self.attempt.map { "#\($0.channelID)" } ?? "-"), open \(self.open.map { "#\($0.channelID)" } ?? "-"), "
            + "backoff \(self.backoffPending), drain \(self.drainAsked)"
    }

    func completeAttempt(succeeds: Bool) throws {
        guard let attempt = self.attempt else { return }
        self.attempt = nil
        if succeeds {
            self.open = attempt
            self.drainAsked = false
            self.trace.record("#\(attempt.channelID) opened")
            try self.apply(self.machine.connected(attempt.channelID, channelID: attempt.channelID))
        } else {
            self.trace.record("#\(attempt.channelID) failed")
            try self.apply(self.machine.connectFailed())
        }
    }

    func closeOpenChannel() throws {
        guard let open = self.open else { return }
        self.open = nil
        self.drainAsked = false
        self.trace.record("#\(open.channelID) closed")
        try self.apply(self.machine.channelClosed(channelID: open.channelID))
    }

    /// An event of a channel that is not the open one must change nothing.
    func lateEvent() throws {
        guard self.lastChannelID > 0 else { return }
        var id = Int.random(in: 1...self.lastChannelID, using: &self.random)
        if id == self.open?.channelID || id == self.attempt?.channelID { id = self.lastChannelID + 100 }
        let before = (self.machine.connectivity, self.machine.openChannel, self.machine.isAcceptingRequests)
        let actions: Machine.Actions
        switch Int.random(in: 0..<3, using: &self.random) {
        case 0: actions = self.machine.channelClosed(channelID: id)
        case 1: actions = self.machine.provedHealthy(channelID: id)
        default: actions = self.machine.ageExpired(channelID: id)
        }
        self.trace.record("late event of #\(id)")
        let after = (self.machine.connectivity, self.machine.openChannel, self.machine.isAcceptingRequests)
        guard actions.tell.isEmpty, case .none = actions.then, before == after else {
            throw self.violation("events of another channel change nothing", "#\(id)")
        }
    }

    func addWatcher() throws {
        let watcher = self.nextWatcher
        self.nextWatcher += 1
        self.live.insert(watcher)
        self.trace.record("watcher \(watcher) added")
        let actions = self.machine.watcherAdded(watcher, id: watcher)
        guard actions.tell.count == 1, actions.tell.first?.watcher == watcher, actions.tell.first?.state == self.machine.connectivity else {
            throw self.violation("a new watcher is told the current state first", "\(actions.tell)")
        }
        try self.apply(actions)
    }

    func removeWatcher() throws {
        guard let watcher = self.live.randomElement(using: &self.random) else { return }
        self.live.remove(watcher)
        self.trace.record("watcher \(watcher) removed")
        try self.apply(self.machine.watcherRemoved(id: watcher))
    }

    func endRun() throws {
        // The driver closes what is open itself; the machine is not told of that close.
        self.open = nil
        self.attempt = nil
        self.runEnded = true
        self.trace.record("run ended")
        try self.apply(self.machine.runEnded())
    }

    // MARK: Invariants

    func check() throws {
        for watcher in self.live where self.told[watcher]?.last != self.machine.connectivity {
            throw self.violation("every watcher knows the current state", "watcher \(watcher) heard \(self.told[watcher] ?? []), now \(self.machine.connectivity)")
        }
        guard self.machine.openChannel == self.open?.channelID else {
            throw self.violation("requests go to the open channel", "machine \(String(describing: self.machine.openChannel)), \(self.underWay)")
        }
        let accepting = self.open != nil && !self.drainAsked
        guard self.machine.isAcceptingRequests == accepting else {
            throw self.violation("only an open channel that is not draining accepts requests", "\(self.underWay)")
        }
        if accepting {
            guard self.machine.connectivity == .ready, self.machine.connectedEndpoint == self.open?.endpoint else {
                throw self.violation("an accepting connection is ready on its endpoint", "\(self.machine.connectivity), \(String(describing: self.machine.connectedEndpoint))")
            }
        }
        let underWay = [self.attempt != nil, self.open != nil, self.backoffPending].filter { $0 }.count
        if !self.runFinished, !self.runEnded, !self.shutdownAsked {
            guard underWay == 1 else { throw self.violation("while it runs, exactly one attempt, backoff or channel", self.underWay) }
        }
    }

    func runSchedule() throws {
        try self.apply(self.machine.runStarted())
        while self.step < self.steps, !self.runFinished, !self.runEnded {
            self.step += 1
            switch Int.random(in: 0..<100, using: &self.random) {
            case 0..<30:
                try self.completeAttempt(succeeds: Int.random(in: 0..<3, using: &self.random) > 0)
            case 30..<40:
                try self.closeOpenChannel()
            case 40..<48:
                if self.backoffPending {
                    self.backoffPending = false
                    self.trace.record("backoff elapsed")
                    try self.apply(self.machine.backoffElapsed())
                }
            case 48..<56:
                if let open = self.open {
                    self.trace.record("#\(open.channelID) proved healthy")
                    try self.apply(self.machine.provedHealthy(channelID: open.channelID))
                }
            case 56..<60:
                if let open = self.open {
                    self.trace.record("#\(open.channelID) aged out")
                    try self.apply(self.machine.ageExpired(channelID: open.channelID))
                }
            case 60..<64:
                self.trace.record("recycle")
                try self.apply(self.machine.recycleRequested())
            case 64..<74:
                try self.lateEvent()
            case 74..<84:
                try self.addWatcher()
            case 84..<92:
                try self.removeWatcher()
            case 92..<96 where Int.random(in: 0..<4, using: &self.random) == 0:
                self.shutdownAsked = true
                self.trace.record("shutdown")
                try self.apply(self.machine.shutdownRequested())
            case 96..<100 where Int.random(in: 0..<20, using: &self.random) == 0:
                // The run's task was cancelled.
                try self.endRun()
            default:
                break
            }
            try self.check()
        }
        if !self.runEnded, !self.runFinished {
            if !self.shutdownAsked {
                self.shutdownAsked = true
                try self.apply(self.machine.shutdownRequested())
            }
            // What is under way ends: an attempt (opened, then drained and closed, or failed), or an open channel.
            for _ in 0..<3 where !self.runFinished {
                if self.attempt != nil {
                    try self.completeAttempt(succeeds: Int.random(in: 0..<2, using: &self.random) == 0)
                } else if self.open != nil {
                    guard self.drainAsked else { throw self.violation("a shutdown drains the open channel", self.underWay) }
                    try self.closeOpenChannel()
                }
                try self.check()
            }
            guard self.runFinished else { throw self.violation("a shutdown ends the run once what is under way ends", self.underWay) }
        }
        if !self.runEnded { try self.endRun() }
        guard self.live.isEmpty, self.machine.connectivity == .shutdown else {
            throw self.violation("the end of the run ends every watcher", "still watching: \(self.live.sorted())")
        }
        // A watcher that comes later is told at once, and ended.
        let late = self.nextWatcher
        self.live.insert(late)
        try self.apply(self.machine.watcherAdded(late, id: late))
        guard self.ended.contains(late), self.told[late] == [.shutdown] else {
            throw self.violation("a watcher after the end is told shutdown and ended", "\(self.told[late] ?? [])")
        }
    }
}

@Suite struct ReconnectSimulationTests {
    @Test func aConnectionFindsAPeerOnceOneIsUpAndNeverDialsFlatOut() async throws {
        try await SimulationRuns.explore("reconnect", seeds: 200, offset: 5_000, steps: 1_000) { seed, steps in
            let simulation = ReconnectSimulation(seed: seed, steps: steps)
            try simulation.runSchedule()
            return simulation.step
        }
    }

    @Test func theConnectionDriverKeepsOneThingUnderWayAndTellsEveryWatcherInOrder() async throws {
        try await SimulationRuns.explore("connection driver", seeds: 200, offset: 7_000, steps: 500) { seed, steps in
            let simulation = ConnectionDriverSimulation(seed: seed, steps: steps)
            try simulation.runSchedule()
            return simulation.step
        }
    }

    @Test func endpointHealthNeverAvoidsEveryUsableEndpoint() async throws {
        try await SimulationRuns.explore("endpoint health", seeds: 100, offset: 6_000, steps: 1_000) { seed, steps in
            try EndpointHealthSimulation.run(seed: seed, steps: steps)
            return steps
        }
    }
}
