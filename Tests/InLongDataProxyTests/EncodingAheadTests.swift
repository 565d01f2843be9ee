import InLongTransport
import InLongWire
import NIOCore
import Testing

@testable import InLongDataProxy

/// The machine with encoders beside the dispatcher: sealed batches reach the dispatcher encoded and in seal order,
/// count against the backlog while encoding, and end once whatever happens meanwhile.
@Suite struct EncodingAheadTests {
    typealias Machine = DeliveryStateMachine<Int>

    static let start = ContinuousClock.now
    static let key = BatchKey(group: "g", stream: "s", perRecordAttributes: false)
    static let proxy = Endpoint(host: "127.0.0.1", port: 1)

    func at(_ milliseconds: Int) -> ContinuousClock.Instant { Self.start + .milliseconds(milliseconds) }

    func makeMachine(encoders: Int = 2, backlogLimit: Int = 16) -> Machine {
        var machine = Machine(
            configuration: .init(
                deliveryTimeout: .seconds(10),
                maxAttempts: nil,
                retryBackoff: ExponentialBackoff(initial: .milliseconds(100), maximum: .seconds(1), multiplier: 2, jitter: 0),
                backlogLimit: backlogLimit,
                encoders: encoders
            ),
            limits: .init(maxRecords: 2, maxBytes: 1 << 16, linger: .milliseconds(10), quotaBytes: 1 << 20, quotaRecords: 100)
        )
        machine.proxiesChanged([Self.proxy])
        return machine
    }

    func append(_ machine: inout Machine, _ count: Int) -> (ids: Range<UInt64>, blocked: Machine.Blocked?) {
        let bodies = ArraySlice((0..<count).map { ByteBuffer(string: "r\($0)") })
        let (ids, blocked, _) = machine.appendRun(bodies, key: Self.key, now: self.at(0), wallSeconds: 0)
        return (ids, blocked)
    }

    @Test func sealedBatchesReachTheDispatcherOnlyEncodedAndInSealOrder() throws {
        var machine = self.makeMachine()
        _ = self.append(&machine, 6)  // three batches of two
        let value12 = machine.nextJob(now: self.at(0))
        #expect(value12.next == nil, "nothing is ready before it is encoded")
        let firstResult = machine.nextEncoding()
        let first = try #require(firstResult)
        let secondResult = machine.nextEncoding()
        let second = try #require(secondResult)
        let value13 = machine.nextEncoding()
        #expect(value13 == nil, "two encoders")
        #expect([first.id, second.id] == [0, 1])
        #expect(first.uniq != second.uniq)
        let early = machine.encoded(jobID: second.id, frame: ByteBuffer(string: "frame 1"))
        #expect(early.wakeDispatcher)
        let value14 = machine.nextJob(now: self.at(0))
        #expect(value14.next == nil, "the second waits for the first")
        _ = machine.encoded(jobID: first.id, frame: ByteBuffer(string: "frame 0"))
        let takenResult = machine.nextJob(now: self.at(0)).next?.job
        let taken = try #require(takenResult)
        #expect(taken.id == 0)
        #expect(taken.frame == ByteBuffer(string: "frame 0"))
        #expect(taken.uniq == first.uniq, "the frame's uniq is the job's")
        let value15 = machine.nextJob(now: self.at(0))
        #expect(value15.next?.job.id == 1)
        let value16 = machine.nextEncoding()
        #expect(value16?.id == 2)
    }

    /// Senders wait for the dispatcher once the batches not yet taken (ready or being encoded) reach the limit.
    @Test func batchesBeingEncodedCountAgainstTheBacklog() {
        var machine = self.makeMachine(backlogLimit: 2)
        let appended = self.append(&machine, 8)
        #expect(appended.ids.count == 4)
        #expect(appended.blocked == .backlogged)
        #expect(machine.waitingJobs == 2)
    }

    @Test func aBatchThatCannotBeEncodedFailsAndTheNextGoOn() throws {
        var machine = self.makeMachine()
        _ = self.append(&machine, 4)
        let firstResult = machine.nextEncoding()
        let first = try #require(firstResult)
        let secondResult = machine.nextEncoding()
        let second = try #require(secondResult)
        _ = machine.encoded(jobID: second.id, frame: ByteBuffer(string: "frame"))
        let failed = machine.encodingFailed(jobID: first.id, "too large")
        guard case .failure(let error)? = failed.finish.first?.result else {
            Issue.record("the batch did not fail")
            return
        }
        #expect(error.code == .invalidArgument)
        #expect(error.persistence == .notSent)
        let value17 = machine.nextJob(now: self.at(0))
        #expect(value17.next?.job.id == second.id)
    }

    /// The close deadline passes while a batch is being encoded: it fails at once as not sent, and the encoder's
    /// late report changes nothing.
    @Test func aBatchBeingEncodedWhenEverythingFailsEndsOnceAsNotSent() throws {
        var machine = self.makeMachine()
        _ = self.append(&machine, 2)
        let jobResult = machine.nextEncoding()
        let job = try #require(jobResult)
        _ = machine.closeRequested(now: self.at(1), deadline: self.at(2))
        let atDeadline = machine.tick(now: self.at(2))
        #expect(atDeadline.finish.count == 1)
        guard case .failure(let error)? = atDeadline.finish.first?.result else {
            Issue.record("the batch did not fail")
            return
        }
        #expect(error.code == .shutDown)
        #expect(error.persistence == .notSent)
        #expect(machine.isFinished)
        let late = machine.encoded(jobID: job.id, frame: ByteBuffer(string: "frame"))
        #expect(late.finish.isEmpty)
        #expect(machine.accumulator.heldBytes == 0)
    }

    /// A flush waits for batches being encoded, and a close sends them before it finishes.
    @Test func aCloseSendsTheBatchesBeingEncoded() throws {
        var machine = self.makeMachine()
        _ = self.append(&machine, 1)
        _ = machine.closeRequested(now: self.at(0), deadline: self.at(1_000))
        #expect(!machine.isFinished)
        let jobResult = machine.nextEncoding()
        let job = try #require(jobResult)
        _ = machine.encoded(jobID: job.id, frame: ByteBuffer(string: "frame"))
        let takenResult = machine.nextJob(now: self.at(1)).next?.job
        var taken = try #require(takenResult)
        taken.attempts = 0
        _ = machine.submitted(taken, to: Self.proxy, now: self.at(1), spentBlock: nil)
        let acked = machine.completed(jobID: taken.id, outcome: .acked(proxyIP: nil), now: self.at(2))
        #expect(acked.finish.count == 1)
        #expect(machine.isFinished)
    }
}
