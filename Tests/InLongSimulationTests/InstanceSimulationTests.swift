@testable import InLongAgent
import InLongWire
import Testing

/// Instances sharing one budget, driven on a simulated clock by seeded random schedules: sources that grow and
/// fail, reads larger than asked, acks that come late, records that fail retriably and are sent again, set-aside
/// writes that fail, budgets smaller than a read, stops with a deadline. The invariants are checked after every
/// step (the budget is exact; every record an instance was given ended once, or it holds it once, owed or in a
/// delivery in flight); a schedule in which no instance can move while work is left is a deadlock.
@Suite struct InstanceSimulationTests {
    typealias Machine = InstanceStateMachine<Int, Int, Int>

    struct Violation: Error, CustomStringConvertible {
        var seed: UInt64
        var step: Int
        var invariant: String
        var detail: String
        var description: String {
            "instance seed \(self.seed), step \(self.step): \(self.invariant): \(self.detail)\nreplay: INLONG_SIMULATION_SEED=\(self.seed) swift test --filter InstanceSimulationTests"
        }
    }

    /// A source of `total` bytes that becomes readable over time; a read is a position (its sequence number).
    struct Source {
        var total: Int
        var readable: Int
        var read = 0
        var nextPosition = 0
        var acked: [Int] = []
        var ackedBytes = 0
    }

    enum State {
        case ready
        case acquiring(wake: Machine.Wake, id: Int)
        case waiting(wake: Machine.Wake)
        case finished(Machine.End)
    }

    struct Sim {
        let seed: UInt64
        var random: SplitMix64
        var now: ContinuousClock.Instant
        let start: ContinuousClock.Instant
        var budget: ByteBudgetState<Int>
        var machines: [Machine]
        var states: [State]
        var sources: [Source]
        /// Deliveries not ended: when they end, their instance, their records and those that will fail retriably.
        var deliveries: [Int: (at: ContinuousClock.Instant, instance: Int, records: [Int], failing: [Int])] = [:]
        /// Per instance, the records it was given (read) and those that ended (acked or set aside).
        var given: [Int]
        var ended: [Set<Int>]
        var nextDelivery = 0
        var nextWaiter = 0
        var nextRecord = 0
        var step = 0
        /// The last events, printed with a violation.
        var trace: [String] = []
        var stopAt: ContinuousClock.Instant?
        /// The sink closed at some point: not every byte can be acked.
        var sinkClosed = false
        var deadline: ContinuousClock.Instant?
        let readSize: Int
        let maxUnacked: Int

        init(seed: UInt64) {
            self.seed = seed
            var random = SplitMix64(seed: seed)
            self.now = ContinuousClock.now
            self.start = self.now
            let readSize = Int.random(in: 100...2_000, using: &random)
            self.readSize = readSize
            self.maxUnacked = readSize * Int.random(in: 1...4, using: &random)
            let count = Int.random(in: 1...6, using: &random)
            // Often less than one read per instance: the case that deadlocked.
            self.budget = ByteBudgetState(capacity: Int.random(in: readSize / 2...readSize * (count + 1), using: &random))
            let limits = Machine.Limits(
                readSize: readSize,
                maxUnackedBytes: self.maxUnacked,
                pollInterval: .milliseconds(100),
                resendDelay: .milliseconds(Int.random(in: 1...500, using: &random))
            )
            self.machines = Array(repeating: Machine(limits: limits), count: count)
            self.states = Array(repeating: .ready, count: count)
            self.given = Array(repeating: 0, count: count)
            self.ended = Array(repeating: [], count: count)
            self.sources = (0..<count).map { _ in
                let total = Int.random(in: 0...readSize * 20, using: &random)
                return Source(total: total, readable: Int.random(in: 0...total, using: &random))
            }
            if Int.random(in: 0..<4, using: &random) == 0 {
                self.stopAt = self.now + .milliseconds(Int.random(in: 0...20_000, using: &random))
            }
            self.random = random
        }

        func fail(_ invariant: String, _ detail: String) -> Violation {
            Violation(seed: self.seed, step: self.step, invariant: invariant, detail: detail + "; last events:\n" + self.trace.joined(separator: "\n"))
        }

        mutating func record(_ event: String) {
            if self.trace.count == 24 { self.trace.removeFirst() }
            self.trace.append("\(self.step) t+\(self.now - self.start): \(event)")
        }

        mutating func apply(_ effects: Machine.Effects, instance: Int) throws {
            for (position, bytes) in effects.acked {
                let expected = self.sources[instance].acked.last.map { $0 + 1 } ?? 0
                guard position == expected else {
                    throw self.fail("reads are acked in order, once", "instance \(instance) acked \(position), expected \(expected)")
                }
                self.sources[instance].acked.append(position)
                self.sources[instance].ackedBytes += bytes
            }
            self.budget.overdraw(effects.overdraw)
            try self.serve(self.budget.release(effects.release))
        }

        /// Hands the budget's grants to the instances waiting for them; only `leaving` (a waiter that stopped
        /// waiting) is sent away with nothing.
        mutating func serve(_ served: [ByteBudgetState<Int>.Served], leaving: Int? = nil) throws {
            for (waiter, bytes) in served {
                if bytes == 0 {
                    guard waiter == leaving else { throw self.fail("only a waiter that leaves is sent away", "instance \(waiter)") }
                    continue
                }
                guard case .acquiring = self.states[waiter] else { throw self.fail("only waiters are granted", "instance \(waiter)") }
                try self.apply(self.machines[waiter].acquired(bytes), instance: waiter)
                self.states[waiter] = .ready
            }
        }

        /// Instance `index` stops waiting for budget (woken otherwise), as a cancelled acquire does: whoever it
        /// held up behind it may be served now.
        mutating func leaveBudgetQueue(_ index: Int, id: Int) throws {
            self.states[index] = .ready
            try self.serve(self.budget.cancel(id: id), leaving: index)
        }

        mutating func send(_ records: [Int], instance: Int) -> [Int] {
            guard !records.isEmpty else { return [] }
            let id = self.nextDelivery
            self.nextDelivery += 1
            let failing = Int.random(in: 0..<5, using: &self.random) == 0 ? records.filter { _ in Bool.random(using: &self.random) } : []
            self.deliveries[id] = (self.now + .milliseconds(Int.random(in: 0...800, using: &self.random)), instance, records, failing)
            return [id]
        }

        /// Records set aside at once: their write failed sometimes, and they come back owed; else they ended.
        mutating func setAside(_ records: [Int], instance: Int) throws -> [Int] {
            if Int.random(in: 0..<10, using: &self.random) == 0 { return records }
            try self.end(records, instance: instance)
            return []
        }

        mutating func end(_ records: some Sequence<Int>, instance: Int) throws {
            for record in records where !self.ended[instance].insert(record).inserted {
                throw self.fail("a record ends once", "instance \(instance): record \(record) ended twice")
            }
        }

        /// Every record the instance was given ended once, or the machine still holds it once: owed, or in a
        /// delivery in flight.
        func checkRecords(_ instance: Int) throws {
            let (owed, inFlight) = self.machines[instance].unended
            let held = owed + inFlight.flatMap { self.deliveries[$0]?.records ?? [] }
            let heldSet = Set(held)
            guard heldSet.count == held.count else {
                throw self.fail("a record is held once", "instance \(instance): \(held.sorted())")
            }
            guard heldSet.isDisjoint(with: self.ended[instance]) else {
                throw self.fail("an ended record is not held", "instance \(instance): \(heldSet.intersection(self.ended[instance]).sorted())")
            }
            guard held.count + self.ended[instance].count == self.given[instance] else {
                throw self.fail(
                    "every record given is held or ended",
                    "instance \(instance): \(held.count) held + \(self.ended[instance].count) ended of \(self.given[instance])"
                )
            }
        }

        /// One step of instance `index`, which is ready: settle, then run the machine's next action.
        mutating func run(_ index: Int) throws {
            if let deadline = self.deadline { self.machines[index].stop(deadline: deadline) }
            for (id, number) in self.machines[index].deliveriesInFlight {
                guard let delivery = self.deliveries[number], delivery.at <= self.now else { continue }
                self.deliveries[number] = nil
                try self.end(delivery.records.filter { !delivery.failing.contains($0) }, instance: index)
                try self.apply(self.machines[index].ended(delivery: id, resend: delivery.failing, now: self.now), instance: index)
            }
            let action = self.machines[index].next(now: self.now)
            self.record("instance \(index): \(action)")
            switch action {
            case .finish(let end):
                // What it ends with unended is read again (a file) or set aside (a listener), by the driver.
                try self.checkRecords(index)
                if end == .released {
                    let (owed, inFlight) = self.machines[index].unended
                    guard owed.isEmpty, inFlight.isEmpty else {
                        throw self.fail("a released instance holds nothing", "instance \(index): owed \(owed), in flight \(inFlight)")
                    }
                }
                try self.apply(self.machines[index].finished(), instance: index)
                self.states[index] = .finished(end)
            case .read(let maxBytes):
                var source = self.sources[index]
                if Int.random(in: 0..<30, using: &self.random) == 0 {
                    try self.apply(self.machines[index].readFailed(now: self.now), instance: index)
                    return
                }
                if Int.random(in: 0..<50, using: &self.random) == 0 {
                    // The client closed under the read: what is in flight still ends.
                    self.sinkClosed = true
                    self.record("instance \(index): sink closed")
                    try self.apply(self.machines[index].sinkClosed(), instance: index)
                    return
                }
                let available = source.readable - source.read
                guard available > 0 else {
                    try self.apply(self.machines[index].read(nil, now: self.now), instance: index)
                    return
                }
                // A read may overshoot what was asked (a line across the end), by up to half a read.
                let bytes = min(available, Int.random(in: 1...maxBytes + maxBytes / 2, using: &self.random))
                source.read += bytes
                let position = source.nextPosition
                source.nextPosition += 1
                self.sources[index] = source
                let records = Array(self.nextRecord..<self.nextRecord + Int.random(in: 1...5, using: &self.random))
                self.nextRecord += records.count
                self.given[index] += records.count
                if Int.random(in: 0..<40, using: &self.random) == 0 {
                    // The client closed part way through the read's send: what it accepted goes on, the rest is
                    // owed (set aside at the stop, or read again).
                    self.sinkClosed = true
                    let cut = Int.random(in: 0...records.count, using: &self.random)
                    self.record("instance \(index): sink closed after \(cut) of \(records.count) records")
                    let deliveries = cut > 0 ? self.send(Array(records.prefix(cut)), instance: index) : []
                    try self.apply(self.machines[index].read((position, bytes, deliveries, Array(records.dropFirst(cut))), now: self.now), instance: index)
                    try self.apply(self.machines[index].sinkClosed(), instance: index)
                    return
                }
                let deliveries = Bool.random(using: &self.random) || records.count > 1 ? self.send(records, instance: index) : []
                let owed = deliveries.isEmpty ? try self.setAside(records, instance: index) : []
                try self.apply(self.machines[index].read((position, bytes, deliveries, owed), now: self.now), instance: index)
            case .resend(let entry, let records):
                switch Int.random(in: 0..<30, using: &self.random) {
                case 0:
                    self.sinkClosed = true
                    try self.apply(self.machines[index].resent(entry: entry, records: records, result: nil, now: self.now), instance: index)
                case 1..<4:
                    // Part of them owed again (not accepted now, or their dead-letter write failed).
                    let half = records.count / 2
                    let deliveries = self.send(Array(records.prefix(half)), instance: index)
                    let result = (deliveries, Array(records.dropFirst(half)))
                    try self.apply(self.machines[index].resent(entry: entry, records: records, result: result, now: self.now), instance: index)
                default:
                    let deliveries = self.send(records, instance: index)
                    try self.apply(self.machines[index].resent(entry: entry, records: records, result: (deliveries, []), now: self.now), instance: index)
                }
            case .acquire(let bytes, let wake):
                let id = self.nextWaiter
                self.nextWaiter += 1
                let served = self.budget.acquire(bytes, id: id, waiter: index)
                if served.isEmpty {
                    self.states[index] = .acquiring(wake: wake, id: id)
                } else if served.count == 1, served[0].waiter == index, served[0].bytes > 0 {
                    try self.apply(self.machines[index].acquired(served[0].bytes), instance: index)
                } else {
                    throw self.fail("an acquire serves its own waiter, or queues it", "instance \(index): \(served)")
                }
            case .wait(let wake):
                self.states[index] = .waiting(wake: wake)
            case .idle(let until):
                if self.sources[index].read == self.sources[index].total {
                    self.machines[index].sourceExhausted()
                } else {
                    self.states[index] = .waiting(wake: .init(outcome: nil, until: until))
                }
            }
        }

        func isDue(_ wake: Machine.Wake) -> Bool {
            if let outcome = wake.outcome, (self.deliveries[outcome.delivery].map { $0.at <= self.now } ?? true) { return true }
            if let until = wake.until, until <= self.now { return true }
            return false
        }

        /// Wakes the instances whose wait is over; a budget waiter woken otherwise leaves the queue.
        mutating func wake() throws {
            for index in self.states.indices {
                switch self.states[index] {
                case .acquiring(let wake, let id) where self.isDue(wake):
                    // Woken by an outcome or the time: it leaves the budget's queue, as a cancelled acquire does.
                    try self.leaveBudgetQueue(index, id: id)
                    self.machines[index].budgetNotTaken()
                case .waiting(let wake) where self.isDue(wake):
                    self.states[index] = .ready
                default:
                    break
                }
            }
        }

        /// The next time an instance wakes, if one will: a delivery ends that it waits for, or its time comes.
        func nextEventTime() -> ContinuousClock.Instant? {
            var times: [ContinuousClock.Instant] = []
            for state in self.states {
                switch state {
                case .acquiring(let wake, _), .waiting(let wake):
                    if let until = wake.until { times.append(until) }
                    if let outcome = wake.outcome, let delivery = self.deliveries[outcome.delivery] { times.append(delivery.at) }
                default:
                    break
                }
            }
            if let stopAt = self.stopAt, self.deadline == nil { times.append(stopAt) }
            return times.min()
        }

        mutating func check() throws {
            let held = self.machines.reduce(0) { $0 + $1.budgetHeld }
            guard self.budget.available + held == self.budget.capacity else {
                throw self.fail("the budget is exact", "available \(self.budget.available) + held \(held) != \(self.budget.capacity)")
            }
            for (index, machine) in self.machines.enumerated() where machine.unackedBytes > self.maxUnacked + self.readSize * 3 / 2 {
                throw self.fail("a file holds at most its limit and one read", "instance \(index): \(machine.unackedBytes)")
            }
        }

        mutating func run() throws {
            while self.states.contains(where: { if case .finished = $0 { false } else { true } }) {
                self.step += 1
                guard self.step < 200_000 else { throw self.fail("ends", "still running") }
                if let stopAt = self.stopAt, self.deadline == nil, self.now >= stopAt {
                    self.deadline = self.now + .milliseconds(Int.random(in: 0...1_000, using: &self.random))
                    // The stop wakes every instance, as the driver's waits end on a stop.
                    for index in self.states.indices {
                        switch self.states[index] {
                        case .finished: break
                        case .acquiring(_, let id):
                            try self.leaveBudgetQueue(index, id: id)
                        default: self.states[index] = .ready
                        }
                    }
                }
                try self.wake()
                let ready = self.states.indices.filter { if case .ready = self.states[$0] { true } else { false } }
                if let index = ready.randomElement(using: &self.random) {
                    try self.run(index)
                    try self.check()
                    if case .finished = self.states[index] {} else { try self.checkRecords(index) }
                    continue
                }
                // Nobody can move now: time passes to the next event; the sources grow meanwhile.
                guard let next = self.nextEventTime() else {
                    throw self.fail("no deadlock", "every instance waits and nothing will wake one: \(self.states.map { "\($0)" })")
                }
                self.now = max(self.now, next)
                for index in self.sources.indices {
                    let grown = self.sources[index].readable + Int.random(in: 0...self.readSize * 2, using: &self.random)
                    self.sources[index].readable = min(self.sources[index].total, grown)
                }
            }
            try self.check()
            guard self.budget.available == self.budget.capacity else {
                throw self.fail("the budget is whole at the end", "\(self.budget.available) of \(self.budget.capacity)")
            }
            if self.stopAt == nil, !self.sinkClosed {
                for (index, source) in self.sources.enumerated() where source.ackedBytes != source.total {
                    throw self.fail("every byte is acked", "instance \(index): \(source.ackedBytes) of \(source.total)")
                }
                for index in self.sources.indices where self.ended[index].count != self.given[index] {
                    throw self.fail("every record ended", "instance \(index): \(self.ended[index].count) of \(self.given[index])")
                }
            }
        }
    }

    @Test func sharedBudgetSchedules() async throws {
        let seeds = SimulationRuns.seeds(300)
        let events = try await SimulationRuns.onOwnThread {
            try seeds.reduce(0) { events, seed in
                var sim = Sim(seed: seed)
                try sim.run()
                return events + sim.step
            }
        }
        SimulationRuns.report("instances sharing a budget", events: events, seeds: seeds.count)
    }

    /// The schedule of the issue: four files behind slow acks and a budget of three reads. Every instance holds
    /// acked reads it has not settled while it waits for budget; waiting for budget alone, all four waited for ever.
    @Test func fourFilesBehindSlowAcksWithABudgetOfThreeReadsFinish() async throws {
        try await SimulationRuns.onOwnThread {
            for seed in UInt64(0)..<20 {
                var sim = Sim(seed: seed)
                sim.budget = ByteBudgetState(capacity: sim.readSize * 3)
                sim.stopAt = nil
                let limits = sim.machines[0].limits
                sim.machines = Array(repeating: Machine(limits: limits), count: 4)
                sim.states = Array(repeating: .ready, count: 4)
                sim.given = Array(repeating: 0, count: 4)
                sim.ended = Array(repeating: [], count: 4)
                sim.sources = (0..<4).map { _ in Source(total: sim.readSize * 30, readable: sim.readSize * 30) }
                try sim.run()
            }
        }
    }
}

