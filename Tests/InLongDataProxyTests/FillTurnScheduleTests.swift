import InLongTransport
import InLongWire
import NIOCore
import Testing

@testable import InLongDataProxy

/// The client's loop over a call of many records (``DataProxyClient/appendDelimited(_:delimiter:group:stream:attributes:)``
/// and the `contentsOf` calls), driven against the machine on seeded random schedules: turns begun, written and
/// committed among other callers' turns, single records, the dispatcher, acks, seals by age and a close; quotas
/// of a record or two up to more than a turn reserves, a backlog of one batch up to four.
///
/// - Every turn makes progress or says why not: a turn that accepted nothing, with no stop, is a sender spinning;
///   so is one told to try again at once that then stops again with nothing changed meanwhile.
/// - A parked caller is resumed once what stopped it cleared (a schedule run to its end leaves none parked).
/// - A sender's append or a fill's commit never takes the dispatcher's backlog past its limit: fills under way at
///   once seal only the room each reserved.
/// - Every record accepted ends exactly once (acked or failed), byte for byte, in a batch within the limits; a
///   key's batches leave in id order. On even seeds the dispatcher now and then finds no connection (it stalls).
@Suite struct FillTurnScheduleTests {
    static let start = ContinuousClock.now
    static let keys = [BatchKey(group: "g", stream: "s", perRecordAttributes: false), BatchKey(group: "g", stream: "t", perRecordAttributes: false)]
    static let proxy = Endpoint(host: "127.0.0.1", port: 1)

    struct Violation: Error, CustomStringConvertible {
        var seed: UInt64
        var step: Int
        var what: String
        var trace: [String]
        var description: String { "seed \(self.seed), step \(self.step): \(self.what)\n" + self.trace.suffix(30).joined(separator: "\n") }
    }

    /// A call of many records: delimited lines or bodies of their own, of one key.
    struct Caller {
        enum State {
            case ready
            /// Between the two turns of the lock: the fill is written, its commit comes at a later step.
            case filled(BatchFill)
            case parked
            case done
        }

        var key: BatchKey
        /// Delimited text, or `nil` for bodies.
        var text: [UInt8]?
        var bodies: [ByteBuffer]
        var cursor = 0
        var state = State.ready
        /// Turns in a row with nothing accepted and nothing else changed meanwhile.
        var idleTurns = 0
        var accepted = 0
        /// The call stopped at a record larger than any batch.
        var stoppedTooLarge = false

        var end: Int { self.text?.count ?? self.bodies.count }

        /// The records of `range` of the source: delimited ones without their delimiter (and a CR before it),
        /// empty ones left out.
        func records(_ range: Range<Int>) -> [String] {
            guard let text = self.text else { return self.bodies[range].map { String(buffer: $0) } }
            // Split as bytes: a String takes "\r\n" for one character.
            return text[range].split(separator: 10, omittingEmptySubsequences: false).compactMap { line in
                let record = line.last == 13 ? line.dropLast() : line
                return record.isEmpty ? nil : String(decoding: record, as: UTF8.self)
            }
        }
    }

    struct Sim {
        let seed: UInt64
        var random: SplitMix64
        var machine: DeliveryStateMachine<Int>
        var now = FillTurnScheduleTests.start
        var callers: [Caller] = []
        var step = 0
        var trace: [String] = []
        /// What each accepted id must hold, and whether it ended.
        var expected: [UInt64: (key: BatchKey, body: String)] = [:]
        var ended: [UInt64: Int] = [:]
        var inFlight: [DeliveryJob] = []
        var closed = false
        let maxBytes: Int
        /// The single sender's next record, and whether it waits (parked; its waiter is `-1`).
        var singles = 0
        var singleParked = false
        /// The batch limit was lowered (as the Manager may).
        var lowered = false
        let maxRecords: Int
        /// The dispatcher finds no connection now and then (it stalls, and the senders go on up to the quota).
        var stalls = false
        /// Jobs dispatched once, and the last record dispatched per sender and stream: a sender's records of a
        /// stream leave in the order it sent them.
        var dispatched: Set<Int> = []
        var lastSent: [String: Int] = [:]
        /// The lanes (none on a third of the seeds) and the tasks that send single records through them, a task
        /// always through the same lane, as the client maps them (waiters `1000 +` the task's index).
        var lanes: [AppendLane] = []
        var laneTasks: [(lane: Int, sent: Int, parked: Bool)] = []
        var leases = 0
        var leasedSweeps = 0
        var backloggedTurns = 0

        init(seed: UInt64) {
            self.seed = seed
            var random = SplitMix64(seed: seed)
            let maxRecords = Int.random(in: 1...8, using: &random)
            let maxBytes = Int.random(in: 24...160, using: &random)
            // From a record or two up to more than one turn reserves (16 batches): turns stop at the quota, at the
            // turn's end, or both.
            let quotaRecords = [1, 2, Int.random(in: 3...40, using: &random), 1_000].randomElement(using: &random)!
            let quotaBytes = [Int.random(in: 30...600, using: &random), Int.random(in: 600...6_000, using: &random), 1 << 20].randomElement(using: &random)!
            self.maxBytes = maxBytes
            self.maxRecords = maxRecords
            self.machine = DeliveryStateMachine<Int>(
                configuration: .init(
                    deliveryTimeout: .seconds(3_600),
                    retryBackoff: ExponentialBackoff(initial: .milliseconds(100), maximum: .seconds(1), multiplier: 2, jitter: 0),
                    backlogLimit: Int.random(in: 1...4, using: &random)
                ),
                limits: .init(maxRecords: maxRecords, maxBytes: maxBytes, linger: .milliseconds(10), quotaBytes: quotaBytes, quotaRecords: quotaRecords)
            )
            self.machine.proxiesChanged([FillTurnScheduleTests.proxy])
            self.random = random
            self.trace.append("maxRecords \(maxRecords) maxBytes \(maxBytes) quota \(quotaRecords) records \(quotaBytes) bytes")
            for index in 0..<Int.random(in: 1...3, using: &self.random) {
                self.callers.append(self.makeCaller(index))
            }
            if seed % 3 != 0 {
                // Quotas a lane can lease from (a sixty-fourth each) and that still bind.
                self.lanes = Array(repeating: AppendLane(), count: Int.random(in: 1...3, using: &self.random))
                self.laneTasks = (0..<Int.random(in: 1...4, using: &self.random)).map { ($0 % self.lanes.count, 0, false) }
                self.machine.accumulator.limits.quotaRecords = Int.random(in: 100...1_000, using: &self.random)
                self.machine.accumulator.limits.quotaBytes = Int.random(in: 3_000...40_000, using: &self.random)
                self.trace.append("\(self.lanes.count) lanes, \(self.laneTasks.count) tasks, quota \(self.machine.accumulator.limits.quotaRecords) records \(self.machine.accumulator.limits.quotaBytes) bytes")
            }
        }

        mutating func makeCaller(_ index: Int) -> Caller {
            let key = FillTurnScheduleTests.keys.randomElement(using: &self.random)!
            let count = Int.random(in: 0...300, using: &self.random)
            var bodies: [String] = []
            for number in 0..<count {
                let name = "c\(index)-\(number)"
                // Now and then longer than any batch: the call stops there (a too-large record).
                let length = Int.random(in: 0..<400, using: &self.random) == 0 ? self.maxBytes : Int.random(in: 0...(self.maxBytes / 3), using: &self.random)
                bodies.append(name + String(repeating: "x", count: length))
            }
            if Bool.random(using: &self.random) {
                var text = ""
                for body in bodies {
                    switch Int.random(in: 0..<12, using: &self.random) {
                    case 0: text += "\n" + body + "\n"
                    case 1: text += body + "\r\n"
                    default: text += body + "\n"
                    }
                }
                return Caller(key: key, text: Array(text.utf8), bodies: [])
            }
            return Caller(key: key, text: nil, bodies: bodies.map { ByteBuffer(string: $0) })
        }

        mutating func fail(_ what: String) -> Violation {
            Violation(seed: self.seed, step: self.step, what: what, trace: self.trace)
        }

        /// Something besides a caller's own turn changed the machine: callers that turned idle may go on.
        mutating func worldChanged() {
            for index in self.callers.indices { self.callers[index].idleTurns = 0 }
        }

        mutating func apply(_ actions: DeliveryStateMachine<Int>.Actions?) throws {
            guard let actions else { return }
            for (job, _, _) in actions.finish { try self.ended(job) }
            for waiter in actions.resumeSenders {
                self.trace.append("resume \(waiter)")
                if waiter == -1 {
                    self.singleParked = false
                } else if waiter >= 1000 {
                    self.laneTasks[waiter - 1000].parked = false
                } else if case .parked = self.callers[waiter].state {
                    self.callers[waiter].state = .ready
                } else {
                    throw self.fail("caller \(waiter) resumed while not parked")
                }
            }
        }

        mutating func ended(_ job: DeliveryJob) throws {
            var block = job.batch.block
            var records: [String] = []
            while let length = block.readInteger(as: UInt32.self) { records.append(block.readString(length: Int(length))!) }
            let ids = job.batch.ids.map(\.rawValue)
            guard ids.count == records.count else { throw self.fail("a batch of \(ids.count) ids holds \(records.count) records") }
            guard ids.count <= self.maxRecords, job.batch.block.readableBytes <= self.maxBytes else {
                throw self.fail("a batch of \(ids.count) records and \(job.batch.block.readableBytes) bytes, past \(self.maxRecords) and \(self.maxBytes)")
            }
            for (id, record) in zip(ids, records) {
                self.ended[id, default: 0] += 1
                guard self.ended[id] == 1 else { throw self.fail("record \(id) ended twice") }
                guard let want = self.expected[id], want.body == record, want.key == job.batch.key else {
                    throw self.fail("record \(id) holds \(record) in \(job.batch.key.stream)'s batch, expected \(self.expected[id].map { "\($0.body) in \($0.key.stream)'s" } ?? "none")")
                }
            }
        }

        /// A sender told the buffer is full (it would fail fast, or spill) while only the fills' reservations
        /// held the room for its record is wrong: those end within a turn.
        mutating func checkFull(_ blocked: DeliveryStateMachine<Int>.Blocked, bodyLength: Int) throws {
            guard blocked == .full else { return }
            let accumulator = self.machine.accumulator
            let charge = bodyLength + BatchAccumulator.recordOverhead
            let limits = accumulator.limits
            if accumulator.heldRecords == 0 || (accumulator.heldRecords < limits.quotaRecords && accumulator.heldBytes + charge <= limits.quotaBytes) {
                throw self.fail("told full with room for a record of \(bodyLength) bytes but for reservations")
            }
        }

        /// Batches ready for the dispatcher, with the seals the fills under way may still make.
        var backlog: Int { self.machine.backlogReady }

        /// A sender's append or a fill's commit never takes the backlog past its limit (nor further past it, when
        /// seals by age took it there): concurrent fills each seal only what they reserved of the room.
        mutating func checkBacklog(before: Int, _ event: String) throws {
            guard !self.machine.backlog.stalled else { return }
            let limit = self.machine.backlog.limit
            guard self.backlog <= max(limit, before) else {
                throw self.fail("\(event) took the backlog from \(before) to \(self.backlog), past its limit of \(limit)")
            }
        }

        /// A caller stopped by `blocked` waits as the client does: a close ends the call, otherwise it tries again
        /// at once or parks.
        mutating func wait(_ index: Int, _ blocked: DeliveryStateMachine<Int>.Blocked, bodyLength: Int) throws {
            if blocked == .leased {
                // The client has the lanes hand their batches in, and the caller goes on at once.
                self.trace.append("caller \(index): leased, lanes hand in")
                try self.handInLanes()
                self.callers[index].state = .ready
                return
            }
            if blocked == .closed {
                self.trace.append("caller \(index): closed")
                self.callers[index].state = .done
                return
            }
            let bytes = BatchAccumulator.quotaBytes(bodyLength: bodyLength, attributesLength: nil)
            switch self.machine.wait(for: blocked, bytes: bytes, waiter: index) {
            case .retryNow:
                self.trace.append("caller \(index): \(blocked), retry now")
                self.callers[index].state = .ready
            case .parked:
                self.trace.append("caller \(index): \(blocked), parked")
                self.callers[index].state = .parked
            }
        }

        /// The caller's next step: begin a turn (and write it), or commit the one written.
        mutating func turn(_ index: Int) throws {
            var caller = self.callers[index]
            switch caller.state {
            case .ready:
                let wanted: BatchAccumulator.Wanted
                if let text = caller.text {
                    wanted = text.withUnsafeBytes { BatchAccumulator.wanted(delimited: $0, from: caller.cursor, delimiter: 10) }
                } else {
                    wanted = caller.bodies.withUnsafeBufferPointer { BatchAccumulator.wanted(UnsafeBufferPointer(rebasing: $0[caller.cursor...])) }
                }
                let backlog = self.backlog
                let begun = self.machine.beginFill(key: caller.key, wanted: wanted)
                // What a turn reserves is within the room: the reservations of the turns under way together are too.
                try self.checkBacklog(before: backlog, "caller \(index)'s beginning")
                switch begun {
                case .blocked(let blocked):
                    caller.idleTurns += 1
                    self.callers[index] = caller
                    if caller.idleTurns > 2 { throw self.fail("caller \(index) spins: begun \(blocked) again with nothing changed") }
                    try self.wait(index, blocked, bodyLength: 0)
                case .fill(var fill):
                    let held = (self.machine.accumulator.heldRecords, self.machine.accumulator.heldBytes)
                    self.trace.append(
                        "caller \(index): begin reserving \(fill.reservedRecords)r \(fill.reservedBytes)b \(fill.maxSealed) seals, held \(held)"
                    )
                    if let text = caller.text {
                        text.withUnsafeBytes { fill.fill(from: DelimitedFillSource(bytes: $0, delimiter: 10), at: caller.cursor) }
                    } else {
                        caller.bodies.withUnsafeBufferPointer { fill.fill(from: BodiesFillSource(bodies: $0), at: caller.cursor) }
                    }
                    caller.state = .filled(fill)
                    self.callers[index] = caller
                }
            case .filled(let fill):
                let (from, to, records, stop) = (caller.cursor, fill.cursor, fill.records, fill.stop)
                let cutToLowerLimit = fill.maxBytes > self.machine.accumulator.limits.maxBytes
                let backlog = self.backlog
                let (committed, actions) = self.machine.commitFill(fill, now: self.now, wallSeconds: 7)
                try self.checkBacklog(before: backlog, "caller \(index)'s commit")
                self.trace.append("caller \(index): commit \(committed.ids) \(stop) refused \(committed.refused)")
                if !committed.ids.isEmpty { self.worldChanged() }
                if !committed.refused {
                    let taken = caller.records(from..<to)
                    guard taken.count == records, committed.ids.count == records else {
                        throw self.fail("caller \(index): \(records) records written, \(taken.count) between the cursors \(from)..<\(to) \(taken), \(committed.ids.count) ids, text \(caller.text != nil)")
                    }
                    for (id, body) in zip(committed.ids, taken) { self.expected[id] = (caller.key, body) }
                    caller.cursor = to
                    caller.accepted += records
                }
                caller.state = .ready
                self.callers[index] = caller
                try self.apply(actions)
                if committed.tooLargeLimit != nil {
                    self.callers[index].stoppedTooLarge = true
                    self.callers[index].state = .done
                    return
                }
                if caller.cursor >= caller.end {
                    self.callers[index].state = .done
                    return
                }
                guard let blocked = committed.blocked else {
                    // No stop: the turn's reservation ran out, having accepted records, or the batch limit was
                    // lowered since the turn began (its batches were cut to the old one: it writes them again).
                    if committed.refused {
                        if !cutToLowerLimit { throw self.fail("caller \(index): a turn refused with no stop and no limit lowered") }
                    } else if records == 0 {
                        throw self.fail("caller \(index): a turn with no stop accepted nothing (\(stop))")
                    }
                    return
                }
                try self.checkFull(blocked, bodyLength: committed.stoppedBefore ?? 0)
                if records == 0 {
                    self.callers[index].idleTurns += 1
                    if self.callers[index].idleTurns > 2 { throw self.fail("caller \(index) spins: stopped \(blocked) again with nothing changed") }
                }
                try self.wait(index, blocked, bodyLength: committed.stoppedBefore ?? 0)
            case .parked, .done:
                break
            }
        }

        mutating func single() throws {
            guard !self.singleParked, !self.closed else { return }
            let key = FillTurnScheduleTests.keys.randomElement(using: &self.random)!
            let body = "s-\(self.singles)" + String(repeating: "y", count: Int.random(in: 0...(self.maxBytes / 3), using: &self.random))
            let backlog = self.backlog
            let (result, sealed) = self.machine.append(ByteBuffer(string: body), attributes: nil, key: key, now: self.now, wallSeconds: 7)
            _ = sealed
            try self.checkBacklog(before: backlog, "a single record")
            switch result {
            case .accepted(let id):
                try self.accepted(id, key: key, body: body)
                self.singles += 1
                self.worldChanged()
            case .blocked(.leased):
                try self.handInLanes()
            case .blocked(let blocked):
                guard blocked != .closed else { return }
                try self.checkFull(blocked, bodyLength: body.utf8.count)
                if case .parked = self.machine.wait(for: blocked, bytes: body.utf8.count, waiter: -1) { self.singleParked = true }
            case .tooLarge:
                if !self.lowered { throw self.fail("a single record within the limit was too large") }
            }
        }

        /// The dispatcher takes the next job and a connection takes it.
        mutating func dispatch() throws {
            let (next, actions) = self.machine.nextJob(now: self.now)
            try self.apply(actions)
            guard var job = next?.job else { return }
            if self.dispatched.insert(job.id).inserted {
                let ids = job.batch.ids.map(\.rawValue)
                guard ids == ids.sorted() else { throw self.fail("a batch's ids out of order: \(ids)") }
                for id in ids {
                    guard let body = self.expected[id]?.body else { throw self.fail("record \(id) dispatched, never accepted") }
                    let (sender, number) = Self.sender(of: body)
                    let stream = "\(sender)/\(job.batch.key.stream)"
                    if let last = self.lastSent[stream], number <= last {
                        throw self.fail("\(sender)'s record \(number) of \(job.batch.key.stream) leaves after its record \(last)")
                    }
                    self.lastSent[stream] = number
                }
            }
            if self.stalls, Int.random(in: 0..<4, using: &self.random) == 0 {
                self.trace.append("no connection for job \(job.id)")
                try self.apply(self.machine.notSubmitted(job, spentBlock: nil))
                self.worldChanged()
                return
            }
            if job.frame == nil { job.frame = ByteBuffer(string: "frame") }
            try self.apply(self.machine.submitted(job, to: FillTurnScheduleTests.proxy, now: self.now, spentBlock: nil))
            self.inFlight.append(job)
            self.worldChanged()
        }

        mutating func ack() throws {
            guard !self.inFlight.isEmpty else { return }
            let job = self.inFlight.remove(at: Int.random(in: 0..<self.inFlight.count, using: &self.random))
            try self.apply(self.machine.completed(jobID: job.id, outcome: .acked(proxyIP: nil), now: self.now))
            self.worldChanged()
        }

        mutating func tick() throws {
            self.now += .milliseconds(Int64.random(in: 1...15, using: &self.random))
            // As the client's clock does: lanes past their linger hand their batches in, then the machine's tick.
            for index in self.lanes.indices where self.lanes[index].isDue(at: self.now, linger: self.machine.accumulator.limits.linger) {
                try self.apply(self.machine.handInLane(&self.lanes[index], dueAt: self.now, close: false))
            }
            try self.checkLeases()
            try self.apply(self.machine.tick(now: self.now))
            self.worldChanged()
        }

        /// Who sent a record, and its number among that sender's: `c0-12…`, `s-3…`, `l1-5…`.
        static func sender(of body: String) -> (String, Int) {
            let parts = body.split(separator: "-", maxSplits: 1)
            return (String(parts[0]), Int(parts[1].prefix { $0.isNumber })!)
        }

        /// Records a record accepted with `id`: no id is given twice.
        mutating func accepted(_ id: UInt64, key: BatchKey, body: String) throws {
            guard self.expected[id] == nil else { throw self.fail("id \(id) given twice") }
            self.expected[id] = (key, body)
        }

        /// Every lane hands its batch in (a sender needs the quota they leased; a close, with `close`).
        mutating func handInLanes(close: Bool = false) throws {
            if !close { self.leasedSweeps += 1 }
            for index in self.lanes.indices {
                try self.apply(self.machine.handInLane(&self.lanes[index], close: close))
            }
            try self.checkLeases()
            self.worldChanged()
        }

        /// The machine counts as leased what the open lanes hold, and no lane holds past its lease.
        mutating func checkLeases() throws {
            let batches = self.lanes.flatMap(\.batches)
            let leased = (batches.reduce(0) { $0 + $1.leasedRecords }, batches.reduce(0) { $0 + $1.leasedBytes })
            let accumulator = self.machine.accumulator
            guard leased == (accumulator.leasedRecords, accumulator.leasedBytes) else {
                throw self.fail("lanes hold leases of \(leased), the machine counts \((accumulator.leasedRecords, accumulator.leasedBytes))")
            }
            for batch in batches where batch.records > batch.leasedRecords || batch.charged > batch.leasedBytes {
                throw self.fail("a lane's batch holds \(batch.records) records and \(batch.charged) bytes on a lease of \(batch.leasedRecords) and \(batch.leasedBytes)")
            }
            for lane in self.lanes where lane.batches.count > AppendLane.maxBatches || Set(lane.batches.map(\.key)).count != lane.batches.count {
                throw self.fail("a lane holds \(lane.batches.count) batches of \(Set(lane.batches.map(\.key)).count) keys")
            }
        }

        /// A task sends one record through its lane, as the client's `send` does: the lane, the machine's turn when
        /// the lane asks for one, the machine's way when the turn says so, a wait when it says that.
        mutating func laneSend(_ task: Int) throws {
            guard !self.laneTasks[task].parked, !self.closed else { return }
            let key = FillTurnScheduleTests.keys.randomElement(using: &self.random)!
            let body = "l\(task)-\(self.laneTasks[task].sent)" + String(repeating: "z", count: Int.random(in: 0...(self.maxBytes / 3), using: &self.random))
            let buffer = ByteBuffer(string: body)
            let recordBytes = BatchAccumulator.blockBytes(bodyLength: buffer.readableBytes, attributesLength: nil)
            let charge = BatchAccumulator.charge(bodyLength: buffer.readableBytes, attributesLength: nil)
            let index = self.laneTasks[task].lane
            var appended = self.lanes[index].append(buffer, key: key, recordBytes: recordBytes, charge: charge, ids: self.machine.recordIDs)
            if appended == .needsTurn {
                let backlog = self.backlog
                let (turn, actions) = self.machine.laneTurn(&self.lanes[index], next: (buffer, key, recordBytes, charge), now: self.now, wallSeconds: 7)
                self.trace.append("task \(task) on lane \(index): \(turn)")
                try self.checkBacklog(before: backlog, "task \(task)'s lane turn")
                try self.apply(actions)
                try self.checkLeases()
                switch turn {
                case .leased:
                    self.leases += 1
                    let accumulator = self.machine.accumulator
                    let limits = accumulator.limits
                    guard 2 * (accumulator.heldBytes + accumulator.reservedBytes + accumulator.leasedBytes) <= limits.quotaBytes,
                        2 * (accumulator.heldRecords + accumulator.reservedRecords + accumulator.leasedRecords) <= limits.quotaRecords
                    else { throw self.fail("a lease took the quota past its half") }
                    appended = self.lanes[index].append(buffer, key: key, recordBytes: recordBytes, charge: charge, ids: self.machine.recordIDs)
                case .backlogged:
                    guard self.lanes[index].index(of: key) != nil, self.machine.backlog.room(ready: self.machine.backlogReady) == 0 else {
                        throw self.fail("task \(task) told to wait for the backlog with room in it")
                    }
                    self.backloggedTurns += 1
                    if case .parked = self.machine.wait(for: .backlogged, bytes: charge, waiter: 1000 + task) { self.laneTasks[task].parked = true }
                    return
                case .appendedHere(let result):
                    guard self.lanes[index].index(of: key) == nil else {
                        throw self.fail("task \(task)'s record went the machine's way beside its lane's batch of the key")
                    }
                    switch result {
                    case .accepted(let id):
                        try self.accepted(id, key: key, body: body)
                        self.laneTasks[task].sent += 1
                        self.worldChanged()
                    case .blocked(.leased):
                        try self.handInLanes()
                    case .blocked(.closed):
                        return
                    case .blocked(let blocked):
                        try self.checkFull(blocked, bodyLength: buffer.readableBytes)
                        if case .parked = self.machine.wait(for: blocked, bytes: buffer.readableBytes, waiter: 1000 + task) {
                            self.laneTasks[task].parked = true
                        }
                    case .tooLarge:
                        if !self.lowered { throw self.fail("a lane task's record within the limit was too large") }
                    }
                    return
                }
            }
            guard case .appended(let id, let full) = appended else { throw self.fail("a lane's new lease did not take its record") }
            try self.accepted(id, key: key, body: body)
            self.laneTasks[task].sent += 1
            self.worldChanged()
            if full {
                let backlog = self.backlog
                let actions = self.machine.laneFilled(&self.lanes[index], key: key)
                try self.checkBacklog(before: backlog, "task \(task)'s full batch")
                try self.apply(actions)
            }
            try self.checkLeases()
        }

        var callersLeft: Bool {
            self.callers.contains { if case .done = $0.state { false } else { true } }
        }

        mutating func run() throws {
            for _ in 0..<3_000 {
                self.step += 1
                switch Int.random(in: 0..<20, using: &self.random) {
                case 0..<9:
                    try self.turn(Int.random(in: 0..<self.callers.count, using: &self.random))
                case 9, 10:
                    if !self.laneTasks.isEmpty, Bool.random(using: &self.random) {
                        try self.laneSend(Int.random(in: 0..<self.laneTasks.count, using: &self.random))
                    } else {
                        try self.single()
                    }
                case 11..<14:
                    try self.dispatch()
                case 14..<17:
                    try self.ack()
                case 17:
                    try self.tick()
                case 18:
                    // Once in a while, the Manager lowers the batch limit, between two turns of a call or not.
                    guard !self.lowered, Int.random(in: 0..<20, using: &self.random) == 0 else { break }
                    self.lowered = true
                    let limit = max(24, self.maxBytes - Int.random(in: 1...(self.maxBytes / 2), using: &self.random))
                    self.trace.append("limit \(limit)")
                    self.machine.accumulator.limits.maxBytes = min(self.machine.accumulator.limits.maxBytes, limit)
                    self.worldChanged()
                default:
                    // Rarely, the close: every caller is told at its next turn (a parked one is resumed).
                    guard !self.closed, Int.random(in: 0..<40, using: &self.random) == 0 else { break }
                    self.closed = true
                    self.trace.append("close")
                    try self.handInLanes(close: true)
                    try self.apply(self.machine.closeRequested(now: self.now, deadline: self.now + .seconds(3_600)))
                    self.worldChanged()
                }
                if !self.callersLeft, self.closed || Int.random(in: 0..<50, using: &self.random) == 0 { break }
            }
            // The end: the callers go on with only the dispatcher and acks beside them; none may stay parked.
            var rounds = 0
            while self.callersLeft {
                rounds += 1
                guard rounds < 100_000 else { throw self.fail("the callers never finish") }
                self.step += 1
                if let index = self.callers.indices.first(where: { if case .parked = self.callers[$0].state { false } else if case .done = self.callers[$0].state { false } else { true } }) {
                    try self.turn(index)
                    continue
                }
                // Every caller left is parked: only the dispatcher, acks and time can resume them.
                let before = (self.machine.waitingJobs, self.inFlight.count, self.machine.accumulator.openRecords)
                guard before != (0, 0, 0) else { throw self.fail("callers parked with nothing left to resume them") }
                try self.dispatch()
                try self.ack()
                try self.tick()
            }
            // The sender of single records is not left parked either.
            var singleRounds = 0
            while self.singleParked, !self.closed {
                singleRounds += 1
                guard singleRounds < 10_000 else {
                    throw self.fail("the single sender stays parked: \(self.machine.waitingJobs) waiting, \(self.machine.accumulator.reservedSeals) seals reserved")
                }
                try self.dispatch()
                try self.ack()
                try self.tick()
            }
            var laneRounds = 0
            while self.laneTasks.contains(where: \.parked), !self.closed {
                laneRounds += 1
                guard laneRounds < 10_000 else { throw self.fail("a lane task stays parked") }
                try self.dispatch()
                try self.ack()
                try self.tick()
            }
            try self.handInLanes(close: true)
            guard self.machine.accumulator.reservedSeals == 0, self.machine.accumulator.fills == 0 else {
                throw self.fail("\(self.machine.accumulator.fills) fills and \(self.machine.accumulator.reservedSeals) seals left reserved")
            }
            // Then everything accepted is sent and acked.
            try self.apply(self.machine.closeRequested(now: self.now, deadline: self.now + .seconds(3_600)))
            var rounds2 = 0
            while self.machine.waitingJobs > 0 || !self.inFlight.isEmpty {
                rounds2 += 1
                guard rounds2 < 100_000 else { throw self.fail("the jobs never end") }
                try self.dispatch()
                try self.ack()
            }
            for id in self.expected.keys where self.ended[id] != 1 {
                throw self.fail("record \(id) accepted but never ended")
            }
            guard self.machine.accumulator.heldRecords == 0, self.machine.accumulator.reservedRecords == 0, self.machine.accumulator.leasedRecords == 0 else {
                throw self.fail("\(self.machine.accumulator.heldRecords) records held, \(self.machine.accumulator.reservedRecords) reserved at the end")
            }
        }
    }

    /// The schedules above reach the lanes' every turn: leases, batches waiting for the backlog, and senders whose
    /// room was in the lanes' leases.
    @Test func theSchedulesExerciseTheLanes() throws {
        var totals = (leases: 0, sweeps: 0, backlogged: 0, laneRecords: 0)
        for seed in UInt64(1)...200 {
            var sim = Sim(seed: seed)
            sim.stalls = seed % 2 == 0
            try? sim.run()
            totals.leases += sim.leases
            totals.sweeps += sim.leasedSweeps
            totals.backlogged += sim.backloggedTurns
            totals.laneRecords += sim.expected.values.filter { $0.body.hasPrefix("l") }.count
        }
        #expect(totals.leases > 100)
        #expect(totals.sweeps > 4)
        #expect(totals.backlogged > 10)
        #expect(totals.laneRecords > 1_000)
    }

    @Test(arguments: Array(UInt64(1)...200)) func everyTurnProgressesAndEveryRecordEndsOnce(seed: UInt64) throws {
        var sim = Sim(seed: seed)
        sim.stalls = seed % 2 == 0
        do {
            try sim.run()
        } catch let violation as Violation {
            Issue.record("\(violation)")
        }
        // The schedule did something: callers accepted records, or were closed before, or had none that fit.
        let nothingToSend = sim.callers.allSatisfy { $0.records(0..<$0.end).isEmpty || ($0.accepted == 0 && $0.stoppedTooLarge) }
        #expect(sim.expected.count > 0 || nothingToSend || sim.closed, "seed \(seed)")
    }

    /// Found by the schedule above: the record quota had a little room left and a call's bytes were more than a
    /// turn reserves. The turn's reservation ran out on the records, which the quota bounded, and the turn said
    /// only "the turn is over": the next turn reserved no record, wrote nothing, and said the same, for ever (a
    /// sender spinning: `send(lines:)` never returned, and the test suite hung).
    @Test func aTurnStoppedByTheRecordQuotaSaysSoWhenItsBytesWereCapped() {
        var machine = DeliveryStateMachine<Int>(
            configuration: .init(deliveryTimeout: .seconds(30), retryBackoff: ExponentialBackoff(initial: .milliseconds(100), maximum: .seconds(1), multiplier: 2, jitter: 0), backlogLimit: 8),
            limits: .init(maxRecords: 4, maxBytes: 64, linger: .milliseconds(10), quotaBytes: 1 << 20, quotaRecords: 5)
        )
        let bodies = (0..<100).map { ByteBuffer(string: "record \($0) " + String(repeating: "z", count: 30)) }
        guard case .fill(var fill) = bodies.withUnsafeBufferPointer({ machine.beginFill(key: Self.keys[0], wanted: BatchAccumulator.wanted($0)) }) else {
            Issue.record("the fill did not begin")
            return
        }
        bodies.withUnsafeBufferPointer { fill.fill(from: BodiesFillSource(bodies: $0), at: 0) }
        #expect(fill.records == 5)
        #expect(fill.stop == .quota(length: bodies[5].readableBytes))
        let (committed, _) = machine.commitFill(fill, now: Self.start, wallSeconds: 7)
        #expect(committed.ids == 0..<5 && committed.blocked == .full && !committed.turnOver)
    }

    /// Found by the schedule above: with the record quota used up, a sender that parked while another caller's fill
    /// was open was resumed by that fill's commit, though the commit gave it no room; it began a fill of its own,
    /// which the first caller, parked meanwhile, was resumed by in turn: two callers waking each other for ever
    /// with nothing acked. A commit resumes only those whose record fits now.
    @Test func aCommitResumesOnlySendersItsEndGivesRoom() {
        var machine = DeliveryStateMachine<Int>(
            configuration: .init(deliveryTimeout: .seconds(30), retryBackoff: ExponentialBackoff(initial: .milliseconds(100), maximum: .seconds(1), multiplier: 2, jitter: 0), backlogLimit: 8),
            limits: .init(maxRecords: 4, maxBytes: 64, linger: .milliseconds(10), quotaBytes: 1 << 20, quotaRecords: 1)
        )
        _ = machine.append(ByteBuffer(string: "held"), attributes: nil, key: Self.keys[0], now: Self.start, wallSeconds: 7)
        guard case .fill(var fill) = machine.beginFill(key: Self.keys[0], wanted: (1, 20, 0)) else {
            Issue.record("the fill did not begin")
            return
        }
        #expect(machine.wait(for: .full, bytes: 5, waiter: 1) == .parked(id: 0))
        ByteBuffer(string: "a\n").withUnsafeReadableBytes { fill.fill(from: DelimitedFillSource(bytes: $0, delimiter: 10), at: 0) }
        let (committed, actions) = machine.commitFill(fill, now: Self.start, wallSeconds: 7)
        #expect(committed.ids.isEmpty && committed.blocked == .full)
        #expect(actions?.resumeSenders ?? [] == [])
    }

    /// Found by the schedule above: two fills begun before either committed each saw the backlog's whole room and
    /// sealed up to it, twice the limit between them. Now a fill reserves the room it may seal: the second waits.
    @Test func fillsAtOnceSealNoMoreThanTheBacklogHolds() {
        var machine = DeliveryStateMachine<Int>(
            configuration: .init(deliveryTimeout: .seconds(30), retryBackoff: ExponentialBackoff(initial: .milliseconds(100), maximum: .seconds(1), multiplier: 2, jitter: 0), backlogLimit: 2),
            limits: .init(maxRecords: 2, maxBytes: 64, linger: .milliseconds(10), quotaBytes: 1 << 20, quotaRecords: 1_000)
        )
        let bodies = (0..<10).map { ByteBuffer(string: "record \($0)") }
        guard case .fill(var first) = bodies.withUnsafeBufferPointer({ machine.beginFill(key: Self.keys[0], wanted: BatchAccumulator.wanted($0)) }) else {
            Issue.record("the first fill did not begin")
            return
        }
        #expect(first.maxSealed == 2)
        let second = bodies.withUnsafeBufferPointer { machine.beginFill(key: Self.keys[1], wanted: BatchAccumulator.wanted($0)) }
        guard case .blocked(.backlogged) = second else {
            Issue.record("a second fill began with the room reserved: \(second)")
            return
        }
        // A single record goes in beside it as long as it seals nothing: it fills its batch, which stays open.
        #expect(machine.append(ByteBuffer(string: "one"), attributes: nil, key: Self.keys[1], now: Self.start, wallSeconds: 7).0 == .accepted(0))
        #expect(machine.append(ByteBuffer(string: "two"), attributes: nil, key: Self.keys[1], now: Self.start, wallSeconds: 7).0 == .accepted(1))
        // The next one would have to seal that batch to go in: it waits.
        #expect(machine.append(ByteBuffer(string: "three"), attributes: nil, key: Self.keys[1], now: Self.start, wallSeconds: 7).0 == .blocked(.backlogged))
        bodies.withUnsafeBufferPointer { first.fill(from: BodiesFillSource(bodies: $0), at: 0) }
        #expect(first.records == 4 && first.stop == .backlogged(length: bodies[4].readableBytes))
        let (committed, _) = machine.commitFill(first, now: Self.start, wallSeconds: 7)
        #expect(committed.ids == 2..<6 && committed.blocked == .backlogged)
        #expect(machine.waitingJobs == 2 && machine.backlogReady == 2)
    }

    /// Found by the schedule above: a fill whose first record did not fit the free quota still reserved records and
    /// room in the backlog; the senders it held back were woken by its end, which wrote nothing, to be held back by
    /// the next such fill. Now it reserves nothing, and a record that fits goes in beside it.
    @Test func aFillThatCanTakeNoRecordHoldsNoSenderBack() {
        var machine = DeliveryStateMachine<Int>(
            configuration: .init(deliveryTimeout: .seconds(30), retryBackoff: ExponentialBackoff(initial: .milliseconds(100), maximum: .seconds(1), multiplier: 2, jitter: 0), backlogLimit: 1),
            limits: .init(maxRecords: 4, maxBytes: 256, linger: .milliseconds(10), quotaBytes: 60, quotaRecords: 10)
        )
        _ = machine.append(ByteBuffer(string: "held"), attributes: nil, key: Self.keys[0], now: Self.start, wallSeconds: 7)
        let large = [ByteBuffer(string: String(repeating: "l", count: 40))]
        guard case .fill(var fill) = large.withUnsafeBufferPointer({ machine.beginFill(key: Self.keys[1], wanted: BatchAccumulator.wanted($0)) }) else {
            Issue.record("the fill did not begin")
            return
        }
        #expect(fill.reservedRecords == 0 && fill.reservedBytes == 0 && fill.maxSealed == 0)
        #expect(machine.backlogReady == 0)
        #expect(machine.append(ByteBuffer(string: "small"), attributes: nil, key: Self.keys[0], now: Self.start, wallSeconds: 7).0 == .accepted(1))
        large.withUnsafeBufferPointer { fill.fill(from: BodiesFillSource(bodies: $0), at: 0) }
        let (committed, _) = machine.commitFill(fill, now: Self.start, wallSeconds: 7)
        #expect(committed.ids.isEmpty && committed.blocked == .full)
    }
}
