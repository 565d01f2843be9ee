@testable import InLongDataProxy
import InLongTransport
import InLongWire
import NIOCore
import Testing

/// The client's delivery rules (``DeliveryStateMachine``) under seeded random schedules on a simulated clock:
/// callers appending and waiting for room, a dispatcher whose hand-over to a connection is interleaved with
/// deadlines and the close, proxies that ack, refuse, reject, fail before or after writing, or never answer,
/// groups without proxies, flushes, report readers that fall behind, a close with a deadline. The invariants are
/// checked after every event.
struct DeliverySimulation {
    typealias Machine = DeliveryStateMachine<Int>

    /// What a proxy will do with a request, decided when it is handed to the connection.
    enum Fate {
        case ack
        case failAfterWrite
        case refuseBeforeWrite
        case rejectRetriable
        case rejectFatal
        case unexpectedReply
        case silence

        /// Whether a proxy may have stored the records: written and not refused with an error code.
        var mayStore: Bool {
            switch self {
            case .ack, .failAfterWrite, .unexpectedReply, .silence: true
            case .refuseBeforeWrite, .rejectRetriable, .rejectFatal: false
            }
        }

        func outcome() -> DeliveryOutcome? {
            switch self {
            case .ack: .acked(proxyIP: "127.0.0.1")
            case .failAfterWrite: .transportFailed(TransportError(.connectionClosed, mayHaveBeenDelivered: true))
            case .refuseBeforeWrite: .transportFailed(TransportError(.notConnected))
            case .rejectRetriable: .rejected(.sinkServiceUnready, message: nil)
            case .rejectFatal: .rejected(.topicIsBlank, message: nil)
            case .unexpectedReply: .unexpectedReply("heartbeat")
            case .silence: nil
            }
        }
    }

    enum Ended: Equatable {
        case acked
        case failed(DataProxyError.Persistence)
    }

    let seed: UInt64
    let steps: Int
    var random: SplitMix64
    var trace = EventTrace()
    var step = 0
    let start = ContinuousClock.now
    var now: ContinuousClock.Instant
    var machine: Machine
    let keys: [BatchKey]
    let quotaBytes = 600
    var accepted: Set<UInt64> = []
    var ended: [UInt64: Ended] = [:]
    /// Jobs some request of which a proxy may have stored (written, and not refused with an error code).
    var written: Set<Int> = []
    var acceptedByProxy: Set<Int> = []
    /// Jobs the dispatcher took and has not reported yet.
    var handing: [DeliveryJob] = []
    var inFlight: [Int: (fate: Fate, at: ContinuousClock.Instant)] = [:]
    /// Parked senders: the simulation's waiter, and the machine's id for it.
    var parkedSenders: [Int: Int] = [:]
    var flushes: [Int: Set<UInt64>] = [:]
    var nextWaiter = 0
    var unroutedGroups: Set<String> = []
    var reportsHeld: [(bytes: Int, records: Int)] = []
    var readers = 0
    var closeDeadline: ContinuousClock.Instant?
    /// Batches encoded at once beside the dispatcher (0: the dispatcher encodes).
    let encoders: Int
    /// Jobs the encoders took and have not reported yet.
    var encoding: [DeliveryJob] = []
    /// Per stream, the last job the dispatcher took for its first time: batches of a stream go out in seal order.
    var lastFirstTaken: [BatchKey: Int] = [:]
    var taken: Set<Int> = []

    init(seed: UInt64, steps: Int) {
        self.seed = seed
        self.steps = steps
        self.random = SplitMix64(seed: seed)
        self.now = self.start
        // From a generator of its own, so that the schedules of seeds without encoders stay as they were.
        var encoderRandom = SplitMix64(seed: seed ^ 0x454E_434F_4445)
        self.encoders = Int.random(in: 0...3, using: &encoderRandom)
        self.keys = [
            BatchKey(group: "g1", stream: "a", perRecordAttributes: false),
            BatchKey(group: "g1", stream: "b", perRecordAttributes: false),
            BatchKey(group: "g2", stream: "a", perRecordAttributes: true),
        ]
        self.machine = Machine(
            configuration: .init(
                deliveryTimeout: .milliseconds(Int.random(in: 200...3_000, using: &self.random)),
                maxAttempts: Bool.random(using: &self.random) ? nil : Int.random(in: 1...4, using: &self.random),
                retryBackoff: ExponentialBackoff(initial: .milliseconds(20), maximum: .milliseconds(400), multiplier: 2, jitter: 0),
                backlogLimit: Int.random(in: 1...6, using: &self.random),
                encoders: self.encoders
            ),
            limits: .init(maxRecords: 5, maxBytes: 200, linger: .milliseconds(10), quotaBytes: self.quotaBytes, quotaRecords: 40)
        )
        self.machine.proxiesChanged([Endpoint(host: "127.0.0.1", port: 1)])
    }

    func violation(_ invariant: String, _ detail: String) -> SimulationViolation {
        SimulationViolation(simulation: "delivery", seed: self.seed, step: self.step, invariant: invariant, detail: detail, trace: self.trace.events)
    }

    var events: Int { self.trace.count }

    // MARK: Actions

    mutating func apply(_ actions: Machine.Actions) throws {
        for (job, result, reportHolds) in actions.finish {
            self.inFlight[job.id] = nil
            let outcome: Ended
            switch result {
            case .success:
                guard self.acceptedByProxy.contains(job.id) else {
                    throw self.violation("acked only what a proxy stored", "job \(job.id)")
                }
                outcome = .acked
            case .failure(let error):
                if error.persistence == .notSent, self.written.contains(job.id) {
                    throw self.violation("notSent only when no proxy may have stored it", "job \(job.id): \(error)")
                }
                outcome = .failed(error.persistence)
            }
            for recordID in job.batch.ids {
                let id = recordID.rawValue
                guard self.accepted.contains(id) else { throw self.violation("only accepted records end", "record \(id)") }
                guard self.ended[id] == nil else { throw self.violation("every record ends once", "record \(id) again in job \(job.id)") }
                self.ended[id] = outcome
            }
            if reportHolds { self.reportsHeld.append((job.batch.chargedBytes, job.batch.recordCount)) }
            self.trace.record("job \(job.id) ended \(outcome)")
        }
        for waiter in actions.resumeSenders {
            guard self.parkedSenders.removeValue(forKey: waiter) != nil else { throw self.violation("only parked senders resume", "sender \(waiter)") }
        }
        for (waiter, allEnded) in actions.resumeFlushes {
            guard let target = self.flushes.removeValue(forKey: waiter) else { throw self.violation("a flush resumes once", "flush \(waiter)") }
            if allEnded, let open = target.first(where: { self.ended[$0] == nil }) {
                throw self.violation("a flush ends after every earlier record", "record \(open) has not ended")
            }
        }
    }

    mutating func check() throws {
        let held = self.machine.accumulator.heldBytes
        // One record always fits an empty client; a record here is at most 20 bytes and its overhead.
        guard held <= self.quotaBytes + 64 else { throw self.violation("the byte quota holds", "\(held) held") }
        guard held >= 0, self.machine.accumulator.heldRecords >= 0 else { throw self.violation("the quota never goes negative", "\(held)") }
        // The sub-states agree with each other and with what the callers see.
        guard self.machine.jobCount == self.machine.liveJobs.count else {
            throw self.violation("every job held is live, and every live job held", "\(self.machine.jobCount) held, \(self.machine.liveJobs.count) live")
        }
        guard self.machine.retries.ids.isSubset(of: self.machine.jobs.pending.keys) else {
            throw self.violation("only pending jobs wait to retry", "\(self.machine.retries.ids)")
        }
        guard self.machine.reports.heldRecords <= self.machine.accumulator.heldRecords, self.machine.reports.heldRecords >= 0 else {
            throw self.violation("report holds are part of the quota", "\(self.machine.reports.heldRecords) of \(self.machine.accumulator.heldRecords)")
        }
        guard self.machine.encodes.started <= self.encoders, self.machine.encodes.encodingCount <= self.encoding.count else {
            throw self.violation("at most the encoders' count of batches started", "\(self.machine.encodes.started) started, \(self.encoding.count) encoding")
        }
        guard self.machine.waiters.senderCount == self.parkedSenders.count, self.machine.waiters.flushCount == self.flushes.count else {
            throw self.violation("the parked waiters are the callers'", "\(self.machine.waiters.senderCount) senders, \(self.machine.waiters.flushCount) flushes")
        }
    }

    // MARK: Events

    mutating func append() throws {
        let key = self.keys.randomElement(using: &self.random)!
        if key.perRecordAttributes {
            let body = ByteBuffer(string: String(repeating: "x", count: Int.random(in: 1...12, using: &self.random)))
            let (result, sealed) = self.machine.append(body, attributes: "k=\(self.step)", key: key, now: self.now, wallSeconds: 0)
            if let sealed { try self.apply(Machine.Actions(sealed)) }
            switch result {
            case .accepted(let id): self.accepted.insert(id)
            case .blocked(let blocked): self.park(blocked)
            case .tooLarge: throw self.violation("small records fit", "refused as too large")
            }
            self.trace.record("append 1 to \(key.group)/\(key.stream): \(result)")
            return
        }
        let count = Int.random(in: 1...12, using: &self.random)
        let bodies = ArraySlice((0..<count).map { _ in ByteBuffer(string: String(repeating: "y", count: Int.random(in: 1...20, using: &self.random))) })
        let (ids, blocked, sealed) = self.machine.appendRun(bodies, key: key, now: self.now, wallSeconds: 0)
        for id in ids { self.accepted.insert(id) }
        if let sealed { try self.apply(Machine.Actions(sealed)) }
        if let blocked { self.park(blocked) }
        self.trace.record("append \(ids.count) of \(count) to \(key.group)/\(key.stream), blocked \(String(describing: blocked))")
    }

    mutating func park(_ blocked: Machine.Blocked) {
        guard Bool.random(using: &self.random) else { return }
        let waiter = self.nextWaiter
        self.nextWaiter += 1
        if case .parked(let id) = self.machine.wait(for: blocked, bytes: 20, waiter: waiter) { self.parkedSenders[waiter] = id }
    }

    mutating func takeJob() throws {
        let (next, actions) = self.machine.nextJob(now: self.now)
        try self.apply(actions)
        guard var job = next?.job else { return }
        if self.encoders > 0, job.frame == nil {
            throw self.violation("with encoders, the dispatcher takes only encoded batches", "job \(job.id)")
        }
        if !self.taken.contains(job.id) {
            self.taken.insert(job.id)
            if let last = self.lastFirstTaken[job.batch.key], last > job.id {
                throw self.violation("batches of a stream go out in seal order", "job \(job.id) after job \(last)")
            }
            self.lastFirstTaken[job.batch.key] = job.id
        }
        if job.frame == nil {
            job.frame = ByteBuffer(string: "frame")
            job.batch.block = ByteBuffer()
        }
        self.handing.append(job)
        self.trace.record("dispatcher takes job \(job.id)")
    }

    /// An encoder takes the next sealed batch.
    mutating func startEncoding() throws {
        guard let job = self.machine.nextEncoding() else { return }
        self.encoding.append(job)
        self.trace.record("encoder takes job \(job.id)")
    }

    /// An encoder reports one of the batches it took, in any order: encoded, or (rarely) not encodable.
    mutating func finishEncoding() throws {
        guard !self.encoding.isEmpty else { return }
        let job = self.encoding.remove(at: Int.random(in: 0..<self.encoding.count, using: &self.random))
        if Int.random(in: 0..<20, using: &self.random) == 0 {
            self.trace.record("encoder fails job \(job.id)")
            try self.apply(self.machine.encodingFailed(jobID: job.id, "cannot encode"))
        } else {
            self.trace.record("encoder encoded job \(job.id)")
            try self.apply(self.machine.encoded(jobID: job.id, frame: ByteBuffer(string: "frame \(job.uniq)")))
        }
    }

    /// The dispatcher reports what became of the oldest job it took: a connection took it, none could, or its
    /// group has no proxy yet.
    mutating func handOver() throws {
        guard !self.handing.isEmpty else { return }
        let job = self.handing.removeFirst()
        switch Int.random(in: 0..<10, using: &self.random) {
        case 0..<7:
            if let early = job.batch.ids.first(where: { self.ended[$0.rawValue] == .failed(.notSent) }) {
                // About to write records already reported as not sent: the mislabel.
                throw self.violation("notSent only when no proxy may have stored it", "record \(early) of job \(job.id) is handed to a connection")
            }
            let fates: [Fate] = [.ack, .ack, .ack, .ack, .failAfterWrite, .refuseBeforeWrite, .rejectRetriable, .rejectFatal, .unexpectedReply, .silence]
            let fate = fates.randomElement(using: &self.random)!
            if fate.mayStore { self.written.insert(job.id) }
            if fate == .ack { self.acceptedByProxy.insert(job.id) }
            self.inFlight[job.id] = (fate, self.now + .milliseconds(Int.random(in: 0...400, using: &self.random)))
            self.trace.record("job \(job.id) handed to a connection: \(fate)")
            try self.apply(self.machine.submitted(job, to: Endpoint(host: "127.0.0.1", port: 1), now: self.now, spentBlock: nil))
        case 7, 8:
            self.trace.record("job \(job.id): no connection")
            try self.apply(self.machine.notSubmitted(job, spentBlock: nil))
        default:
            self.unroutedGroups.insert(job.batch.key.group)
            self.trace.record("job \(job.id): no proxy for \(job.batch.key.group) yet")
            try self.apply(self.machine.awaitRoute(job))
        }
    }

    mutating func answer(all: Bool = false) throws {
        let due = self.inFlight.filter { $0.value.at <= self.now || all }.keys.sorted()
        guard let id = all ? due.first : due.randomElement(using: &self.random), let fate = self.inFlight[id]?.fate else { return }
        self.inFlight[id] = nil
        guard let outcome = fate.outcome() else { return }
        self.trace.record("job \(id) answered: \(fate)")
        try self.apply(self.machine.completed(jobID: id, outcome: outcome, now: self.now))
    }

    mutating func tick(by milliseconds: Int) throws {
        self.now += .milliseconds(milliseconds)
        self.trace.record("tick +\(milliseconds) ms")
        try self.apply(self.machine.tick(now: self.now))
    }

    mutating func routeGroups() throws {
        for group in self.unroutedGroups.sorted() {
            self.trace.record("proxies found for \(group)")
            try self.apply(self.machine.routeReady(group))
        }
        self.unroutedGroups.removeAll()
    }

    mutating func flush() throws {
        let waiter = self.nextWaiter
        self.nextWaiter += 1
        let target = self.accepted
        let (result, actions) = self.machine.flush(waiter: waiter, now: self.now)
        if case .parked = result { self.flushes[waiter] = target }
        self.trace.record("flush \(waiter): \(result)")
        try self.apply(actions)
    }

    mutating func takeReports() throws {
        guard !self.reportsHeld.isEmpty else { return }
        let (bytes, records) = self.reportsHeld.removeFirst()
        try self.apply(self.machine.reportsTaken(bytes: bytes, records: records))
    }

    mutating func close() throws {
        guard self.closeDeadline == nil else { return }
        let deadline = self.now + .milliseconds(Int.random(in: 0...1_500, using: &self.random))
        self.closeDeadline = deadline
        self.trace.record("close, deadline +\(deadline - self.now)")
        try self.apply(self.machine.closeRequested(now: self.now, deadline: deadline))
    }

    // MARK: Run

    mutating func run() throws {
        while self.step < self.steps {
            self.step += 1
            switch Int.random(in: 0..<100, using: &self.random) {
            case 0..<28: if self.closeDeadline == nil { try self.append() }
            case 28..<43:
                // The dispatcher's loop: start encodings, then take a job; encoders report in between.
                if self.encoders > 0, Bool.random(using: &self.random) {
                    if Bool.random(using: &self.random) { try self.startEncoding() } else { try self.finishEncoding() }
                } else {
                    try self.takeJob()
                }
            case 43..<58: try self.handOver()
            case 58..<73: try self.answer()
            case 73..<85: try self.tick(by: Int.random(in: 0...150, using: &self.random))
            case 85..<88: try self.routeGroups()
            case 88..<90: try self.flush()
            case 90..<94: try self.takeReports()
            case 94..<96:
                self.readers = self.readers == 0 ? 1 : 0
                self.machine.reportReadersChanged(self.readers)
            case 96..<98:
                if let (waiter, id) = self.parkedSenders.randomElement(using: &self.random) {
                    guard self.machine.cancelWait(id) == waiter else { throw self.violation("a cancelled wait gives back its waiter", "sender \(waiter)") }
                    self.parkedSenders[waiter] = nil
                }
            default:
                if self.step > self.steps / 2 { try self.close() }
            }
            try self.check()
        }
        try self.heal()
    }

    /// The network heals and the client closes: everything ends by the close deadline, every waiter resumes.
    mutating func heal() throws {
        try self.close()
        self.readers = 0
        self.machine.reportReadersChanged(0)
        var rounds = 0
        while !self.machine.isFinished || !self.handing.isEmpty || !self.encoding.isEmpty {
            rounds += 1
            guard rounds < 10_000 else {
                throw self.violation("everything ends once the network heals", "\(self.machine.jobCount) jobs left, \(self.handing.count) being handed over")
            }
            try self.routeGroups()
            while !self.handing.isEmpty { try self.handOver() }
            while !self.inFlight.isEmpty { try self.answer(all: true) }
            while !self.reportsHeld.isEmpty { try self.takeReports() }
            try self.startEncoding()
            while !self.encoding.isEmpty { try self.finishEncoding() }
            try self.takeJob()
            try self.tick(by: 50)
            try self.check()
        }
        // Report readers take what they were still owed.
        while !self.reportsHeld.isEmpty { try self.takeReports() }
        if let open = self.accepted.first(where: { self.ended[$0] == nil }) {
            throw self.violation("every accepted record ends", "record \(open) of \(self.accepted.count)")
        }
        guard self.parkedSenders.isEmpty, self.flushes.isEmpty else {
            throw self.violation("no waiter waits for ever", "\(self.parkedSenders.count) senders, \(self.flushes.count) flushes")
        }
        guard self.machine.accumulator.heldBytes == 0 else {
            throw self.violation("the quota is whole at the end", "\(self.machine.accumulator.heldBytes) bytes held")
        }
    }
}

@Suite struct DeliverySimulationTests {
    @Test func schedules() async throws {
        try await SimulationRuns.explore("delivery", seeds: 300, steps: 400) { seed, steps in
            var simulation = DeliverySimulation(seed: seed, steps: steps)
            try simulation.run()
            return simulation.events
        }
    }
}
