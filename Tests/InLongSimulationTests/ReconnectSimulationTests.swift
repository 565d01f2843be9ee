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
    let backoff: Backoff
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
        self.backoff = Backoff(
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

@Suite struct ReconnectSimulationTests {
    @Test func aConnectionFindsAPeerOnceOneIsUpAndNeverDialsFlatOut() async throws {
        try await SimulationRuns.explore("reconnect", seeds: 200, offset: 5_000, steps: 1_000) { seed, steps in
            let simulation = ReconnectSimulation(seed: seed, steps: steps)
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
