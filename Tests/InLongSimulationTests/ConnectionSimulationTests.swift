import DequeModule
import Foundation
import NIOCore
@testable import InLongTransport
import InLongWire
import Testing

/// One persistent connection's rules (``ConnectionStateMachine``) under seeded random schedules, driven as its
/// channel handler drives them (one request timer armed at the earliest deadline, one idle timer replaced when
/// rescheduled, a close after the writes when draining), against a simulated socket and peer: frames that reach
/// the peer late or not at all (it stops reading, the socket stops taking them), answers late, twice, for keys
/// that were never asked, or never; heartbeats; cancellation; drains; resets. Invariants after every event.
final class ConnectionSimulation {
    typealias Machine = ConnectionStateMachine<UInt32, Int>

    enum Ended: Equatable {
        case succeeded
        /// A send's frame reached the socket.
        case written
        /// Failed; whether the error says the peer may have the item.
        case failed(TransportError.Code, mayHaveBeenDelivered: Bool)
    }

    struct Operation {
        var key: UInt32?
        var timeout: TimeAmount?
        var submittedAt: NIODeadline
        /// When the channel was handed its frame.
        var handedAt: NIODeadline?
        /// When the frame reached the socket (the request's timeout runs from here).
        var writtenAt: NIODeadline?
        var ended: Ended?
    }

    let seed: UInt64
    let steps: Int
    var random: SplitMix64
    var trace = EventTrace(keep: Int(ProcessInfo.processInfo.environment["INLONG_SIMULATION_TRACE"] ?? "") ?? 30)
    var step = 0
    var now = NIODeadline.uptimeNanoseconds(1_000_000_000)
    let configuration: Machine.Configuration
    var machine: Machine
    var connection = 0
    var operations: [Operation] = []
    var nextKey: UInt32 = 1
    /// Frames handed to the channel and not yet on the socket, in order: the operation, or nil for a heartbeat.
    var channel: Deque<Int?> = []
    var peerReads = true
    /// Requests the peer holds unanswered, and keys it answered already (it may answer again).
    var peerHolds: [Int] = []
    var peerAnswered: [UInt32] = []
    var heartbeatsUnanswered = 0
    var writable = true
    var requestTimer: NIODeadline?
    var idleTimer: NIODeadline?
    var draining = false
    var lastRead: NIODeadline

    init(seed: UInt64, steps: Int) {
        self.seed = seed
        self.steps = steps
        self.random = SplitMix64(seed: seed)
        func maybe(_ milliseconds: ClosedRange<Int64>, using random: inout SplitMix64) -> TimeAmount? {
            Int.random(in: 0..<4, using: &random) == 0 ? nil : .milliseconds(Int64.random(in: milliseconds, using: &random))
        }
        self.configuration = Machine.Configuration(
            maxInFlight: Int.random(in: 1...8, using: &self.random),
            maxQueued: Int.random(in: 0...16, using: &self.random),
            heartbeatInterval: maybe(50...500, using: &self.random),
            readTimeout: maybe(300...2_000, using: &self.random),
            maxIdleTime: maybe(200...3_000, using: &self.random),
            queueTimeout: maybe(100...1_000, using: &self.random),
            recycleAfterTimeouts: Int.random(in: 0..<3, using: &self.random) == 0 ? nil : Int.random(in: 1...4, using: &self.random)
        )
        self.machine = Machine(configuration: self.configuration, now: self.now)
        self.lastRead = self.now
    }

    func violation(_ invariant: String, _ detail: String) -> SimulationViolation {
        SimulationViolation(simulation: "connection", seed: self.seed, step: self.step, invariant: invariant, detail: detail, trace: self.trace.events)
    }

    // MARK: Driving the machine as the channel handler does

    func run(_ action: Machine.Action) throws {
        switch action {
        case .none, .unmatchedResponse, .unsolicited, .heartbeatReplied:
            break
        case .write(let items):
            for item in items { try self.hand(item) }
        case .writeOne(let item):
            try self.hand(item)
        case .reject(let item, let error):
            try self.end(item.pending, .failed(error.code, mayHaveBeenDelivered: error.mayHaveBeenDelivered))
        case .succeed(let op):
            try self.end(op, .succeeded)
        case .fail(let op, let error):
            try self.end(op, .failed(error.code, mayHaveBeenDelivered: error.mayHaveBeenDelivered))
        case .sendHeartbeat(let nextCheck):
            self.machine.heartbeatWritten(now: self.now)
            self.channel.append(nil)
            self.idleTimer = nextCheck
        case .scheduleIdleCheck(let deadline):
            self.idleTimer = deadline
        case .scheduleRequestTimeout(_, let deadline):
            if self.requestTimer.map({ deadline < $0 }) ?? true { self.requestTimer = deadline }
        case .expire(let items, let nextCheck):
            for item in items {
                guard self.operations[item.pending].handedAt == nil else {
                    throw self.violation("only items never handed to the channel expire in the queue", "op \(item.pending)")
                }
                try self.end(item.pending, .failed(.requestTimeout, mayHaveBeenDelivered: false))
            }
            self.idleTimer = nextCheck
        case .close(let error):
            self.trace.record("close: \(error.code)")
            // Drained: what is handed to the channel goes out first.
            if error.code == .shutDown { while !self.channel.isEmpty { try self.socketTakes() } }
            try self.reset()
        }
    }

    func hand(_ item: Machine.Item) throws {
        let op = item.pending
        guard self.operations[op].handedAt == nil, self.operations[op].ended == nil else {
            throw self.violation("an item is handed to the channel once, and only while pending", "op \(op)")
        }
        self.operations[op].handedAt = self.now
        self.channel.append(op)
        // The socket buffer: past a few frames the channel stops being writable until it drains.
        if self.channel.count > 6, self.writable {
            self.writable = false
            try self.run(self.machine.writabilityChanged(isWritable: false, now: self.now))
        }
    }

    func end(_ op: Int, _ ended: Ended) throws {
        guard self.operations[op].ended == nil else {
            throw self.violation("every item ends once", "op \(op) ended \(self.operations[op].ended!) then \(ended)")
        }
        if case .failed(_, false) = ended, self.operations[op].writtenAt != nil {
            throw self.violation("an item that reached the socket is never reported unwritten", "op \(op): \(ended)")
        }
        if ended == .succeeded, !self.peerAnswered.contains(self.operations[op].key ?? 0) {
            throw self.violation("a request succeeds only when the peer answered it", "op \(op)")
        }
        self.operations[op].ended = ended
        self.trace.record("op \(op) ended: \(ended)")
    }

    /// The socket takes the oldest frame the channel holds: the peer has it once it reads.
    func socketTakes() throws {
        guard let frame = self.channel.popFirst() else { return }
        if let op = frame {
            self.operations[op].writtenAt = self.now
            try self.run(self.machine.frameWritten(now: self.now))
            if self.operations[op].key != nil {
                if self.operations[op].ended == nil { self.peerHolds.append(op) }
            } else {
                // A send ends when its write does (the channel handler completes its promise).
                try self.end(op, .written)
            }
            self.trace.record("frame of op \(op) on the socket")
        } else {
            self.heartbeatsUnanswered += 1
            self.trace.record("heartbeat on the socket")
        }
        if !self.writable, self.channel.count <= 2 {
            self.writable = true
            try self.run(self.machine.writabilityChanged(isWritable: true, now: self.now))
        }
    }

    func read() {
        self.lastRead = self.now
        self.machine.bytesRead(now: self.now)
    }

    /// The connection closed (reset, or closed by the machine): what it held fails, and a new one starts.
    func reset() throws {
        let (inFlight, queued) = self.machine.closed()
        // Sends the channel still held fail with their writes: they never reached the socket.
        for case let op? in self.channel where self.operations[op].key == nil {
            try self.end(op, .failed(.connectionClosed, mayHaveBeenDelivered: false))
        }
        for op in inFlight { try self.end(op, .failed(.connectionClosed, mayHaveBeenDelivered: true)) }
        for item in queued { try self.end(item.pending, .failed(.connectionClosed, mayHaveBeenDelivered: false)) }
        let stranded = self.operations.indices.filter { self.operations[$0].ended == nil }
        guard stranded.isEmpty else {
            throw self.violation("a closed connection holds nothing", "ops \(stranded.prefix(5)) still pending")
        }
        self.connection += 1
        self.machine = Machine(configuration: self.configuration, now: self.now)
        (self.channel, self.peerHolds, self.peerAnswered, self.heartbeatsUnanswered) = ([], [], [], 0)
        (self.writable, self.requestTimer, self.idleTimer, self.draining, self.lastRead) = (true, nil, nil, false, self.now)
        self.trace.record("connection \(self.connection) opened")
        try self.run(self.machine.nextIdleCheck(now: self.now))
    }

    /// Moves the clock on, firing the timers that come due on the way, in order.
    func advance(by amount: TimeAmount) throws {
        let target = self.now + amount
        var firedAtOnce = 0
        while true {
            let due = [self.requestTimer, self.idleTimer].compactMap { $0 }.filter { $0 <= target }.min()
            guard let due else { break }
            firedAtOnce = due <= self.now ? firedAtOnce + 1 : 0
            guard firedAtOnce < 100 else {
                throw self.violation("a timer that fires moves something on", "timers rearmed for \(self.ms(due)) again and again")
            }
            self.now = max(self.now, due)
            if self.requestTimer == due {
                self.requestTimer = nil
                for key in self.machine.requestsPastDeadline(now: self.now) {
                    let (first, second) = self.machine.requestTimedOut(key: key, now: self.now)
                    try self.run(first)
                    try self.run(second)
                }
                if let next = self.machine.earliestRequestDeadline { try self.run(.scheduleRequestTimeout(0, next)) }
            } else {
                self.idleTimer = nil
                try self.run(self.machine.idleCheck(now: self.now))
            }
        }
        self.now = target
        try self.checkDeadlines()
    }

    // MARK: Invariants

    func checkDeadlines() throws {
        for (op, operation) in self.operations.enumerated() where operation.ended == nil {
            if let written = operation.writtenAt, let timeout = operation.timeout, self.now > written + timeout {
                throw self.violation("a written request ends by its timeout", "op \(op) written \(self.ms(written)), timeout \(timeout)")
            }
            if operation.handedAt == nil, let queueTimeout = self.configuration.queueTimeout, self.now > operation.submittedAt + queueTimeout {
                throw self.violation("a queued item ends by the queue timeout", "op \(op) submitted \(self.ms(operation.submittedAt))")
            }
        }
        if let readTimeout = self.configuration.readTimeout, self.now > self.lastRead + readTimeout {
            throw self.violation("a connection that reads nothing closes by the read timeout", "last read \(self.ms(self.lastRead))")
        }
        if let interval = self.configuration.heartbeatInterval, self.requestTimer == nil, self.idleTimer == nil {
            throw self.violation("with heartbeats on, the idle timer is always armed", "interval \(interval)")
        }
    }

    func checkBounds() throws {
        guard self.machine.inFlight.count <= self.configuration.maxInFlight, self.machine.queuedCount <= self.configuration.maxQueued else {
            throw self.violation("in flight and queued stay within their limits", "\(self.machine.inFlight.count) in flight, \(self.machine.queuedCount) queued")
        }
    }

    func ms(_ deadline: NIODeadline) -> String {
        "\((deadline.uptimeNanoseconds - 1_000_000_000) / 1_000_000) ms"
    }

    // MARK: Events

    func submit() throws {
        let op = self.operations.count
        if Int.random(in: 0..<5, using: &self.random) == 0 {
            self.operations.append(Operation(key: nil, submittedAt: self.now))
            self.trace.record("send op \(op)")
            try self.run(self.machine.sendSubmitted(pending: op, now: self.now))
            return
        }
        // Now and then a key still in flight: refused as a duplicate.
        let inFlightKeys = self.machine.inFlight.keys.sorted()
        let duplicate = !inFlightKeys.isEmpty && Int.random(in: 0..<20, using: &self.random) == 0
        let key = duplicate ? inFlightKeys[0] : self.nextKey
        if !duplicate { self.nextKey += 1 }
        let timeout: TimeAmount? = Int.random(in: 0..<5, using: &self.random) == 0 ? nil : .milliseconds(Int64.random(in: 20...800, using: &self.random))
        self.operations.append(Operation(key: key, timeout: timeout, submittedAt: self.now))
        self.trace.record("request op \(op) key \(key) timeout \(timeout.map { "\($0)" } ?? "none")")
        let action = self.machine.requestSubmitted(key: key, pending: op, timeout: timeout, now: self.now)
        if duplicate, !self.draining {
            guard case .reject(_, let error) = action, error.code == .duplicateKey else {
                throw self.violation("a key in flight is refused", "key \(key): \(action)")
            }
        }
        try self.run(action)
    }

    /// The peer answers one request it holds (or a key it answered before, or one never asked).
    func peerAnswers() throws {
        self.read()
        switch Int.random(in: 0..<10, using: &self.random) {
        case 0:
            guard let key = self.peerAnswered.randomElement(using: &self.random) else { return }
            self.trace.record("peer answers key \(key) again")
            let (first, second) = self.machine.responseReceived(key: key, now: self.now)
            try self.run(first)
            try self.run(second)
        case 1:
            self.trace.record("peer answers a key never asked")
            let (first, second) = self.machine.responseReceived(key: 1_000_000 + UInt32(self.step), now: self.now)
            guard case .unmatchedResponse = first else { throw self.violation("an answer for no request matches none", "\(first)") }
            try self.run(second)
        default:
            guard !self.peerHolds.isEmpty else { return }
            let op = self.peerHolds.remove(at: Int.random(in: 0..<self.peerHolds.count, using: &self.random))
            let key = self.operations[op].key!
            self.peerAnswered.append(key)
            self.trace.record("peer answers op \(op) key \(key)")
            let (first, second) = self.machine.responseReceived(key: key, now: self.now)
            try self.run(first)
            try self.run(second)
        }
    }

    func cancel() throws {
        let pending = self.operations.indices.filter { self.operations[$0].ended == nil && self.operations[$0].key != nil }
        guard let op = pending.randomElement(using: &self.random) else { return }
        self.trace.record("cancel op \(op)")
        let (first, second) = self.machine.requestCancelled(key: self.operations[op].key!, now: self.now) { $0 == op }
        try self.run(first)
        try self.run(second)
    }

    func drain() throws {
        guard !self.draining else { return }
        self.draining = true
        self.trace.record("drain")
        let (unstarted, action) = self.machine.drainRequested()
        for item in unstarted { try self.end(item.pending, .failed(.shutDown, mayHaveBeenDelivered: false)) }
        try self.run(action)
    }

    func runSchedule() throws {
        try self.run(self.machine.nextIdleCheck(now: self.now))
        while self.step < self.steps {
            self.step += 1
            switch Int.random(in: 0..<100, using: &self.random) {
            case 0..<22: try self.submit()
            case 22..<40: if self.peerReads { try self.socketTakes() }
            case 40..<58: try self.peerAnswers()
            case 58..<62:
                if self.heartbeatsUnanswered > 0 {
                    self.heartbeatsUnanswered -= 1
                    self.read()
                    try self.run(self.machine.heartbeatReplyReceived(now: self.now))
                }
            case 62..<80: try self.advance(by: .milliseconds(Int64.random(in: 0...250, using: &self.random)))
            case 80..<85: try self.cancel()
            case 85..<90:
                self.peerReads.toggle()
                self.trace.record(self.peerReads ? "peer reads again" : "peer stops reading")
            case 90..<92:
                // A peer that holds requests forever (its answers lost): only timeouts end them.
                if !self.peerHolds.isEmpty { self.trace.record("peer drops op \(self.peerHolds.removeFirst())") }
            case 92..<94: try self.drain()
            case 94..<96:
                self.trace.record("reset by the network")
                try self.reset()
            default:
                try self.advance(by: .milliseconds(Int64.random(in: 500...3_000, using: &self.random)))
            }
            try self.checkBounds()
        }
        try self.settle()
    }

    /// The peer reads and answers everything: every item ends, by its answer or a timeout, and nothing is left.
    func settle() throws {
        self.trace.record("settle")
        self.peerReads = true
        for _ in 0..<10_000 {
            self.step += 1
            if self.operations.allSatisfy({ $0.ended != nil }) { return }
            while !self.channel.isEmpty { try self.socketTakes() }
            while !self.peerHolds.isEmpty {
                let op = self.peerHolds.removeFirst()
                self.peerAnswered.append(self.operations[op].key!)
                self.read()
                let (first, second) = self.machine.responseReceived(key: self.operations[op].key!, now: self.now)
                try self.run(first)
                try self.run(second)
            }
            try self.advance(by: .milliseconds(100))
        }
        let stranded = self.operations.indices.filter { self.operations[$0].ended == nil }
        // Requests without a timeout that the peer dropped wait for the connection: a drain or close ends them.
        let dropped = stranded.filter { self.operations[$0].writtenAt != nil && self.operations[$0].timeout == nil }
        if dropped.count == stranded.count {
            try self.drain()
            try self.reset()
            return
        }
        throw self.violation("once the peer answers, everything ends", "ops \(stranded.prefix(5)) pending")
    }
}

@Suite struct ConnectionSimulationTests {
    @Test func everyRequestEndsOnceAndOnTime() async throws {
        try await SimulationRuns.explore("connection", seeds: 100, offset: 4_000, steps: 1_000) { seed, steps in
            let simulation = ConnectionSimulation(seed: seed, steps: steps)
            try simulation.runSchedule()
            return simulation.step
        }
    }
}
