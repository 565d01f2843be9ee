import Foundation
@testable import InLongTransport
import InLongWire
import Testing

/// Who runs a server's inbound requests (``HandlerPoolStateMachine``) under seeded random schedules: peers that
/// send when they may read, handlers that end in any order, connections that close or drain, a stop. Invariants
/// after every event: every request is handled once or dropped for a reason, the limits hold, no worker idles
/// while a request could start, a paused connection reads again as soon as there is room, and a stop ends every
/// worker and connection.
final class HandlerPoolSimulation {
    typealias Machine = HandlerPoolStateMachine<Int, Int, Int>

    enum Fate: Equatable {
        case waiting
        case running(worker: Int)
        case handled
        /// Dropped: its connection closed or drained, or the pool stopped, before it started.
        case dropped
    }

    struct Connection {
        var open = true
        var paused = false
        var draining = false
        var closeReported = false
        var requests: [Int] = []
    }

    let seed: UInt64
    let steps: Int
    var random: SplitMix64
    var trace = EventTrace(keep: Int(ProcessInfo.processInfo.environment["INLONG_SIMULATION_TRACE"] ?? "") ?? 30)
    var step = 0
    let configuration: Machine.Configuration
    let workers: Int
    var machine: Machine
    var connections: [Connection] = []
    var requests: [(connection: Int, fate: Fate)] = []
    /// What each worker does: nil while it waits in the pool.
    var jobs: [Int: Int?] = [:]
    var exited: Set<Int> = []
    var stopped = false

    init(seed: UInt64, steps: Int) {
        self.seed = seed
        self.steps = steps
        self.random = SplitMix64(seed: seed)
        self.configuration = Machine.Configuration(
            queueLimit: Int.random(in: 0...6, using: &self.random),
            perConnectionLimit: Int.random(in: 1...3, using: &self.random)
        )
        self.workers = Int.random(in: 1...5, using: &self.random)
        self.machine = Machine(configuration: self.configuration)
    }

    func violation(_ invariant: String, _ detail: String) -> SimulationViolation {
        SimulationViolation(simulation: "handler pool", seed: self.seed, step: self.step, invariant: invariant, detail: detail, trace: self.trace.events)
    }

    // MARK: Driving the machine as InboundHandlerPool does

    func apply(_ effects: Machine.Effects) throws {
        if let (worker, job) = effects.own { try self.start(job.request, on: worker) }
        for (worker, job) in effects.start { try self.start(job.request, on: worker) }
        for worker in effects.exit {
            guard self.jobs[worker] == .some(nil) else { throw self.violation("only a waiting worker exits", "worker \(worker)") }
            self.jobs[worker] = nil
            self.exited.insert(worker)
            self.trace.record("worker \(worker) exits")
        }
        for connection in effects.resumeReading {
            guard self.connections[connection].paused || self.connections[connection].draining else {
                throw self.violation("only a paused connection is told to read again", "connection \(connection)")
            }
            self.connections[connection].paused = false
            self.trace.record("connection \(connection) reads again")
        }
        for connection in effects.close {
            guard !self.connections[connection].closeReported else { throw self.violation("a connection is closed once", "connection \(connection)") }
            let running = self.requests.indices.filter {
                self.requests[$0].connection == connection && { if case .running = $0 { true } else { false } }(self.requests[$0].fate)
            }
            guard running.isEmpty else {
                throw self.violation("a draining connection closes only when no handler of its runs", "connection \(connection): \(running)")
            }
            self.connections[connection].closeReported = true
            try self.close(connection)
        }
    }

    func start(_ request: Int, on worker: Int) throws {
        guard self.jobs[worker] == .some(nil) else { throw self.violation("a worker runs one job at a time", "worker \(worker) given \(request)") }
        guard self.requests[request].fate == .waiting else {
            throw self.violation("every request is handled once", "request \(request) was \(self.requests[request].fate)")
        }
        self.requests[request].fate = .running(worker: worker)
        self.jobs[worker] = .some(request)
        self.trace.record("worker \(worker) runs request \(request) of connection \(self.requests[request].connection)")
    }

    /// The channel closed: what waited is dropped; what runs finishes.
    func close(_ connection: Int) throws {
        guard self.connections[connection].open else { return }
        self.connections[connection].open = false
        self.trace.record("connection \(connection) closed")
        for request in self.connections[connection].requests where self.requests[request].fate == .waiting {
            self.requests[request].fate = .dropped
        }
        try self.apply(self.machine.connectionClosed(connection))
    }

    func received(on connection: Int) throws {
        guard self.connections[connection].open, !self.connections[connection].paused, !self.connections[connection].draining else { return }
        let request = self.requests.count
        self.requests.append((connection, .waiting))
        self.connections[connection].requests.append(request)
        let received = self.machine.requestReceived(request, on: connection)
        self.trace.record("request \(request) on connection \(connection): \(received)")
        switch received {
        case .start(let worker, let job):
            try self.start(job.request, on: worker)
        case .queued:
            break
        case .pauseReading:
            self.connections[connection].paused = true
        case .refused:
            guard self.stopped else { throw self.violation("an open connection's request is taken", "request \(request)") }
            self.requests[request].fate = .dropped
        }
    }

    func finish(_ worker: Int) throws {
        guard case let request?? = self.jobs[worker] else { return }
        self.requests[request].fate = .handled
        self.jobs[worker] = .some(nil)
        self.trace.record("worker \(worker) finished request \(request)")
        try self.apply(self.machine.workerReady(worker, finished: self.requests[request].connection))
    }

    func drain(_ connection: Int) throws {
        guard self.connections[connection].open, !self.connections[connection].draining else { return }
        self.connections[connection].draining = true
        self.trace.record("connection \(connection) drains")
        for request in self.connections[connection].requests where self.requests[request].fate == .waiting {
            self.requests[request].fate = .dropped
        }
        try self.apply(self.machine.connectionDraining(connection))
    }

    func stop() throws {
        guard !self.stopped else { return }
        self.stopped = true
        self.trace.record("stop")
        for index in self.requests.indices where self.requests[index].fate == .waiting { self.requests[index].fate = .dropped }
        try self.apply(self.machine.stop())
    }

    // MARK: Invariants

    func check() throws {
        var running: [Int: Int] = [:]
        var waiting = 0
        for request in self.requests {
            switch request.fate {
            case .running: running[request.connection, default: 0] += 1
            case .waiting: waiting += 1
            case .handled, .dropped: break
            }
        }
        if let (connection, count) = running.first(where: { $0.value > self.configuration.perConnectionLimit }) {
            throw self.violation("at most perConnectionLimit handlers run per connection", "connection \(connection): \(count)")
        }
        let parked = self.stopped ? 0 : self.connections.filter { $0.open && $0.paused }.count
        guard self.machine.queuedCount <= self.configuration.queueLimit, waiting == self.machine.queuedCount + parked else {
            throw self.violation(
                "the queue holds what waits, within its limit",
                "machine \(self.machine.queuedCount) queued, \(parked) parked; simulation \(waiting) waiting"
            )
        }
        guard self.machine.idleWorkerCount > 0 else { return }
        // An idle worker: nothing that could start waits.
        for (index, connection) in self.connections.enumerated() where connection.open && !connection.draining {
            let waits = connection.requests.contains { self.requests[$0].fate == .waiting }
            if waits, running[index, default: 0] < self.configuration.perConnectionLimit {
                throw self.violation("no worker idles while a request could start", "connection \(index) waits with \(running[index, default: 0]) running")
            }
        }
    }

    func runSchedule() throws {
        for worker in 0..<self.workers {
            self.jobs[worker] = .some(nil)
            try self.apply(self.machine.workerReady(worker, finished: nil))
        }
        while self.step < self.steps {
            self.step += 1
            switch Int.random(in: 0..<100, using: &self.random) {
            case 0..<5:
                let connection = self.connections.count
                self.connections.append(Connection())
                if !self.machine.connectionOpened(connection) {
                    guard self.stopped else { throw self.violation("connections open until the stop", "\(connection)") }
                    self.connections[connection].open = false
                }
                self.trace.record("connection \(connection) opened")
            case 5..<50:
                let open = self.connections.indices.filter { self.connections[$0].open }
                if let connection = open.randomElement(using: &self.random) { try self.received(on: connection) }
            case 50..<90:
                let busy = self.jobs.compactMap { $0.value == nil ? nil : $0.key }.sorted()
                if let worker = busy.randomElement(using: &self.random) { try self.finish(worker) }
            case 90..<94:
                let open = self.connections.indices.filter { self.connections[$0].open }
                if let connection = open.randomElement(using: &self.random) { try self.close(connection) }
            case 94..<98:
                let open = self.connections.indices.filter { self.connections[$0].open }
                if let connection = open.randomElement(using: &self.random) { try self.drain(connection) }
            default:
                if Int.random(in: 0..<20, using: &self.random) == 0 { try self.stop() }
            }
            try self.check()
        }
        // Stop: the handlers under way end; then every worker has exited and every connection is closed.
        try self.stop()
        while let worker = self.jobs.first(where: { $0.value != nil })?.key { try self.finish(worker) }
        guard self.exited.count == self.workers else {
            throw self.violation("a stop ends every worker", "\(self.exited.count) of \(self.workers) exited")
        }
        let left = self.connections.indices.filter { self.connections[$0].open }
        guard left.isEmpty else { throw self.violation("a stop closes every connection", "\(left) open") }
        let waiting = self.requests.indices.filter { self.requests[$0].fate == .waiting }
        guard waiting.isEmpty else { throw self.violation("every request ends handled or dropped", "\(waiting.prefix(5))") }
    }
}

@Suite struct HandlerPoolSimulationTests {
    @Test func everyInboundRequestIsHandledOnceOrDroppedForAReason() async throws {
        try await SimulationRuns.explore("handler pool", seeds: 100, offset: 7_000, steps: 600) { seed, steps in
            let simulation = HandlerPoolSimulation(seed: seed, steps: steps)
            try simulation.runSchedule()
            return simulation.step
        }
    }
}
