import Foundation
import InLongTestUtils
import InLongTransport
import InLongWire
import NIOCore
import Synchronization
import Testing

@testable import InLongDataProxy

/// A lane's batch and its lease, event by event: what a lane takes, when it asks for the machine's turn, and what
/// the machine does with its leases and its batches (``DeliveryStateMachine/laneTurn(_:next:now:wallSeconds:)``).
@Suite struct AppendLaneTests {
    typealias Machine = DeliveryStateMachine<Int>

    static let start = ContinuousClock.now
    static let key = BatchKey(group: "g", stream: "s", perRecordAttributes: false)
    static let other = BatchKey(group: "g", stream: "t", perRecordAttributes: false)
    static let proxy = Endpoint(host: "127.0.0.1", port: 1)

    func makeMachine(maxRecords: Int = 4, maxBytes: Int = 1 << 16, quotaBytes: Int = 1 << 20, backlogLimit: Int = 16) -> Machine {
        var machine = Machine(
            configuration: .init(
                deliveryTimeout: .seconds(10),
                retryBackoff: ExponentialBackoff(initial: .milliseconds(100), maximum: .seconds(1), multiplier: 2, jitter: 0),
                backlogLimit: backlogLimit
            ),
            limits: .init(maxRecords: maxRecords, maxBytes: maxBytes, linger: .milliseconds(10), quotaBytes: quotaBytes, quotaRecords: 10_000)
        )
        machine.proxiesChanged([Self.proxy])
        return machine
    }

    /// What the client's lane path does with one record: the lane, the machine's turn when it asks for one, the
    /// turn after a record that filled the batch. The id `nil` when the record waits.
    @discardableResult
    func send(_ body: String, key: BatchKey = key, lane: inout AppendLane, machine: inout Machine) -> (id: UInt64?, turn: Machine.LaneTurn?) {
        let buffer = ByteBuffer(string: body)
        let recordBytes = BatchAccumulator.blockBytes(bodyLength: buffer.readableBytes, attributesLength: nil)
        let charge = BatchAccumulator.charge(bodyLength: buffer.readableBytes, attributesLength: nil)
        var appended = lane.append(buffer, key: key, recordBytes: recordBytes, charge: charge, ids: machine.recordIDs)
        var turn: Machine.LaneTurn?
        if appended == .needsTurn {
            turn = machine.laneTurn(&lane, next: (buffer, key, recordBytes, charge), now: Self.start, wallSeconds: 7).0
            if case .appendedHere(.accepted(let id)) = turn { return (id, turn) }
            guard turn == .leased else { return (nil, turn) }
            appended = lane.append(buffer, key: key, recordBytes: recordBytes, charge: charge, ids: machine.recordIDs)
        }
        guard case .appended(let id, let full) = appended else { return (nil, turn) }
        if full { _ = machine.laneFilled(&lane, key: key) }
        return (id, turn)
    }

    func records(of job: DeliveryJob) -> [String] {
        var block = job.batch.block
        var records: [String] = []
        while let length = block.readInteger(as: UInt32.self) { records.append(block.readString(length: Int(length))!) }
        return records
    }

    @Test func aLaneFillsItsBatchToTheRecordLimitThenHandsItIn() throws {
        var machine = self.makeMachine(maxRecords: 3)
        var lane = AppendLane()
        #expect(self.send("a", lane: &lane, machine: &machine) == (0, .leased))
        #expect(machine.accumulator.leasedRecords == 3)
        #expect(self.send("b", lane: &lane, machine: &machine) == (1, nil))
        // The third fills the batch: it is handed in at once (the backlog has room) and the lease ends.
        #expect(self.send("c", lane: &lane, machine: &machine) == (2, nil))
        #expect(!lane.isOpen)
        #expect(machine.accumulator.leasedRecords == 0 && machine.accumulator.leasedBytes == 0)
        #expect(machine.accumulator.heldRecords == 3)
        let job = try #require(machine.nextJob(now: Self.start).next?.job)
        #expect(self.records(of: job) == ["a", "b", "c"])
        #expect(Array(job.batch.ids.map(\.rawValue)) == [0, 1, 2])
        #expect(job.batch.chargedBytes == 3 * (1 + BatchAccumulator.recordOverhead))
    }

    @Test func aLaneKeepsABatchPerKeyUpToItsMostThenTheOldestMakesWay() throws {
        var machine = self.makeMachine()
        var lane = AppendLane()
        let keys = (0...AppendLane.maxBatches).map { BatchKey(group: "g", stream: "k\($0)", perRecordAttributes: false) }
        for (number, key) in keys.prefix(AppendLane.maxBatches).enumerated() {
            #expect(self.send("a\(number)", key: key, lane: &lane, machine: &machine) == (UInt64(number), .leased))
        }
        // Records of the keys in turn go to their batches: no turn of the machine.
        for (number, key) in keys.prefix(AppendLane.maxBatches).enumerated() {
            #expect(self.send("b\(number)", key: key, lane: &lane, machine: &machine).turn == nil)
        }
        #expect(lane.batches.map(\.records) == Array(repeating: 2, count: AppendLane.maxBatches))
        #expect(machine.waitingJobs == 0)
        // One more key: the oldest batch is handed in to make way.
        #expect(self.send("c", key: keys[AppendLane.maxBatches], lane: &lane, machine: &machine).turn == .leased)
        #expect(lane.batches.map(\.key) == Array(keys.dropFirst()))
        let job = try #require(machine.nextJob(now: Self.start).next?.job)
        #expect(job.batch.key == keys[0] && self.records(of: job) == ["a0", "b0"])
    }

    @Test func idsTakenElsewhereInBetweenLeaveGapsInTheLanesRuns() throws {
        var machine = self.makeMachine()
        var lane = AppendLane()
        self.send("a", lane: &lane, machine: &machine)
        // Another lane, or the machine's own append, takes the next id.
        #expect(machine.append(ByteBuffer(string: "x"), attributes: nil, key: Self.other, now: Self.start, wallSeconds: 7).0 == .accepted(1))
        self.send("b", lane: &lane, machine: &machine)
        self.send("c", lane: &lane, machine: &machine)
        let handIn = lane.take(Self.key)
        #expect(handIn?.batch?.ids.runs == [0..<1, 2..<4])
    }

    @Test func aFullBatchWithoutRoomInTheBacklogStaysAndItsNextRecordWaits() throws {
        var machine = self.makeMachine(maxRecords: 1, backlogLimit: 1)
        var lane = AppendLane()
        // The first record fills its batch and seals it: the backlog of one is full.
        self.send("a", lane: &lane, machine: &machine)
        #expect(machine.waitingJobs == 1)
        var other = AppendLane()
        #expect(self.send("b", lane: &other, machine: &machine) == (1, .leased))
        // `b` filled its batch too, with no room to seal it: it stays, and the next record waits.
        #expect(other.isOpen && other.records == 1)
        // A record of another key does not wait: the lane opens a batch for it beside the full one.
        #expect(self.send("d", key: Self.other, lane: &other, machine: &machine) == (2, .leased))
        #expect(self.send("c", lane: &other, machine: &machine) == (nil, .backlogged))
        #expect(machine.nextRecordID == 3)
        // Once the dispatcher took the first, there is room: the lane's batch is sealed and the record taken.
        _ = machine.nextJob(now: Self.start)
        #expect(self.send("c", lane: &other, machine: &machine).id == 3)
    }

    @Test func aLeaseSealsTheKeysOpenBatchFirstSoARecordOfTheSameSenderIsNotOvertaken() throws {
        var machine = self.makeMachine()
        // A record that went the machine's way waits in the key's open batch.
        #expect(machine.append(ByteBuffer(string: "first"), attributes: nil, key: Self.key, now: Self.start, wallSeconds: 7).0 == .accepted(0))
        var lane = AppendLane()
        self.send("second", lane: &lane, machine: &machine)
        self.send("third", lane: &lane, machine: &machine)
        _ = machine.handInLane(&lane, close: false)
        let first = try #require(machine.nextJob(now: Self.start).next?.job)
        let second = try #require(machine.nextJob(now: Self.start).next?.job)
        #expect(self.records(of: first) == ["first"])
        #expect(self.records(of: second) == ["second", "third"])
    }

    @Test func aLeaseIsHadOnlyWhileHalfTheQuotaStaysFree() throws {
        // Leases of a sixty-fourth of 64 KiB: 1 KiB each.
        var machine = self.makeMachine(maxRecords: 1_000, maxBytes: 4_096, quotaBytes: 64 << 10)
        _ = machine.appendRun(ArraySlice((0..<300).map { _ in ByteBuffer(repeating: 1, count: 100) }), key: Self.other, now: Self.start, wallSeconds: 7)
        #expect(machine.accumulator.heldBytes == 300 * 110)
        var lane = AppendLane()
        // 33,000 held and 1,024 more is past half of 65,536: the record goes the machine's way.
        #expect(self.send("a", lane: &lane, machine: &machine) == (300, .appendedHere(.accepted(300))))
        #expect(!lane.isOpen && machine.accumulator.leasedBytes == 0)
        #expect(machine.accumulator.open.batches[Self.key]?.recordCount == 1)
    }

    @Test func aSenderWhoseRoomIsInALeaseIsToldSoAndFindsItOnceTheLanesHandIn() throws {
        // A lease of 1,024 bytes, then 63 records of 1,010 as charged: 882 bytes free besides the lease.
        var machine = self.makeMachine(maxRecords: 1_000, maxBytes: 8_192, quotaBytes: 64 << 10)
        var lane = AppendLane()
        self.send("a", lane: &lane, machine: &machine)
        #expect(machine.accumulator.leasedBytes == 1_024)
        _ = machine.appendRun(ArraySlice((0..<63).map { _ in ByteBuffer(repeating: 1, count: 1_000) }), key: Self.other, now: Self.start, wallSeconds: 7)
        #expect(machine.accumulator.heldBytes == 63 * 1_010)
        let body = ByteBuffer(repeating: 2, count: 982)
        #expect(machine.append(body, attributes: nil, key: Self.other, now: Self.start, wallSeconds: 7).0 == .blocked(.leased))
        let handed = try #require(machine.handInLane(&lane, close: false))
        #expect(handed.wakeDispatcher)
        #expect(machine.accumulator.leasedBytes == 0)
        // The id the refused record took was given back.
        #expect(machine.append(body, attributes: nil, key: Self.other, now: Self.start, wallSeconds: 7).0 == .accepted(64))
    }

    @Test func aClosedLaneTakesNoLeaseAndItsRecordsAreSent() throws {
        var machine = self.makeMachine()
        var lane = AppendLane()
        self.send("a", lane: &lane, machine: &machine)
        _ = machine.handInLane(&lane, close: true)
        #expect(lane.isClosed && !lane.isOpen)
        // The machine still accepts (the client closes it right after its lanes): the record goes its way.
        #expect(self.send("b", lane: &lane, machine: &machine) == (1, .appendedHere(.accepted(1))))
        _ = machine.closeRequested(now: Self.start, deadline: Self.start + .seconds(1))
        #expect(self.send("c", lane: &lane, machine: &machine) == (nil, .appendedHere(.blocked(.closed))))
        let first = try #require(machine.nextJob(now: Self.start).next?.job)
        let second = try #require(machine.nextJob(now: Self.start).next?.job)
        #expect(self.records(of: first) == ["a"])
        #expect(self.records(of: second) == ["b"])
    }

    @Test func aLeaseOutKeepsAClosingMachineFromFinishing() {
        var machine = self.makeMachine()
        var lane = AppendLane()
        self.send("a", lane: &lane, machine: &machine)
        _ = machine.closeRequested(now: Self.start, deadline: Self.start + .seconds(1))
        #expect(!machine.isFinished)
        _ = machine.handInLane(&lane, close: true)
        _ = machine.nextJob(now: Self.start)
        #expect(machine.jobCount == 1)
    }

    @Test func aBatchHandedInAfterEverythingEndedEndsAtOnceAsFailed() throws {
        var machine = self.makeMachine()
        var lane = AppendLane()
        self.send("a", lane: &lane, machine: &machine)
        _ = machine.cancelled(now: Self.start)
        let actions = try #require(machine.handInLane(&lane, close: true))
        #expect(actions.finish.count == 1)
        guard case .failure(let error) = actions.finish.first?.result else {
            Issue.record("the batch did not fail")
            return
        }
        #expect(error.code == .shutDown)
        #expect(machine.accumulator.heldRecords == 0 && machine.accumulator.leasedRecords == 0)
    }

    /// A task's `sendAndWait` after its `send` of the same stream: the lane's batch is sealed before the record
    /// goes the machine's way, so the task's records leave in order (found by review). A client that is not run
    /// holds what it accepts.
    @Test func aTasksSendAndWaitSealsItsLanesBatchOfTheStreamFirst() async throws {
        let client = DataProxyClient(configuration: .init(proxies: [Self.proxy]))
        let sender = Task {
            try await client.send("a", group: "g", stream: "s")
            _ = try await client.sendAndWait(ByteBuffer(string: "b"), group: "g", stream: "s")
        }
        #expect(await eventually { client.statistics().accepted == 2 })
        let lanes = try #require(client.lanes)
        #expect(lanes.slots.reduce(0) { held, slot in held + slot.lane.withLock { $0.records } } == 0)
        let (jobs, open) = client.withMachineState { machine in (machine.jobCount, machine.accumulator.open.batches[Self.key]?.recordCount) }
        #expect(jobs == 1)
        #expect(open == 1)
        sender.cancel()
        _ = await sender.result
    }

    /// A lane's first block is as small as the machine's own (found by review: it took the whole batch limit).
    @Test func aLanesBlockStartsSmallAndGrows() throws {
        var machine = self.makeMachine(maxRecords: 1_000, maxBytes: 1 << 20)
        var lane = AppendLane()
        self.send("a", lane: &lane, machine: &machine)
        let one = lane.take(Self.key)
        #expect((one?.batch?.block.capacity ?? .max) < 4_096)
        for number in 0..<100 { self.send(String(repeating: "x", count: 100) + "\(number)", lane: &lane, machine: &machine) }
        let hundred = lane.take(Self.key)
        #expect(hundred?.batch?.recordCount == 100)
    }

    @Test func aLaneDueAtItsLingerSaysSo() {
        var machine = self.makeMachine()
        var lane = AppendLane()
        #expect(!lane.isDue(at: Self.start + .seconds(1), linger: .milliseconds(10)))
        self.send("a", lane: &lane, machine: &machine)
        #expect(!lane.isDue(at: Self.start + .milliseconds(9), linger: .milliseconds(10)))
        #expect(lane.isDue(at: Self.start + .milliseconds(10), linger: .milliseconds(10)))
    }

    /// Statistics keep every lane locked while they read the machine, so that a batch a lane hands in meanwhile is
    /// not counted twice (in its lane and in the machine). With the machine's lock held here, a `statistics()` on
    /// another thread stops at it: every lane must then be locked.
    @Test func statisticsHoldEveryLaneWhileTheyReadTheMachine() throws {
        let client = DataProxyClient(configuration: .init(proxies: [Self.proxy]))
        let lanes = try #require(client.lanes)
        let done = DispatchSemaphore(value: 0)
        let everyLaneLocked = client.withMachineState { _ -> Bool in
            Thread.detachNewThread {
                _ = client.statistics()
                done.signal()
            }
            // The lanes are locked in order: once the last is, all are (or statistics never lock it). The deadline
            // only guards against a hang, as `eventually`'s: the lock is looked at once more after it.
            let deadline = ContinuousClock.now + .seconds(60)
            while true {
                if lanes.slots.last!.lane.withLockIfAvailable({ _ in true }) == nil {
                    return lanes.slots.allSatisfy { $0.lane.withLockIfAvailable { _ in true } == nil }
                }
                if ContinuousClock.now >= deadline { return false }
                usleep(100)
            }
        }
        done.wait()
        #expect(everyLaneLocked)
    }
}
