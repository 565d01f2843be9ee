import InLongTransport
import InLongWire
import NIOCore
import Testing

@testable import InLongDataProxy

/// The delivery rules, event by event, with the time given: no sockets, no clock, no sleeping.
@Suite struct DeliveryStateMachineTests {
    typealias Machine = DeliveryStateMachine<Int>

    static let start = ContinuousClock.now
    static let key = BatchKey(group: "g", stream: "s", perRecordAttributes: false)
    static let proxyA = Endpoint(host: "127.0.0.1", port: 1)
    static let proxyB = Endpoint(host: "127.0.0.1", port: 2)

    func at(_ milliseconds: Int) -> ContinuousClock.Instant { Self.start + .milliseconds(milliseconds) }

    func makeMachine(
        maxRecords: Int = 2,
        quotaRecords: Int = 100,
        backlogLimit: Int = 16,
        deliveryTimeout: Duration = .seconds(10),
        maxAttempts: Int? = nil,
        proxies: [Endpoint] = [proxyA, proxyB]
    ) -> Machine {
        var machine = Machine(
            configuration: .init(
                deliveryTimeout: deliveryTimeout,
                maxAttempts: maxAttempts,
                retryBackoff: ExponentialBackoff(initial: .milliseconds(100), maximum: .seconds(1), multiplier: 2, jitter: 0),
                backlogLimit: backlogLimit
            ),
            limits: .init(maxRecords: maxRecords, maxBytes: 1 << 16, linger: .milliseconds(10), quotaBytes: 1 << 20, quotaRecords: quotaRecords)
        )
        machine.proxiesChanged(proxies)
        return machine
    }

    func records(_ count: Int) -> ArraySlice<ByteBuffer> {
        ArraySlice((0..<count).map { ByteBuffer(string: "r\($0)") })
    }

    /// Appends `count` records at `now` (sealing batches of the machine's record limit).
    @discardableResult
    func append(_ machine: inout Machine, _ count: Int, at now: Int = 0) -> Machine.Sealed? {
        machine.appendRun(self.records(count), key: Self.key, now: self.at(now), wallSeconds: 0).sealed
    }

    /// Pops the next job, encodes it (as the client does, once) and submits it to `proxy`.
    func dispatch(_ machine: inout Machine, to proxy: Endpoint = proxyA, at now: Int = 0) -> DeliveryJob? {
        guard var job = machine.nextJob(now: self.at(now)).next?.job else { return nil }
        if job.frame == nil { job.frame = ByteBuffer(string: "frame") }
        _ = machine.submitted(job, to: proxy, now: self.at(now), spentBlock: nil)
        return job
    }

    func error(_ actions: Machine.Actions) -> DataProxyError? {
        guard case .failure(let error) = actions.finish.first?.result else { return nil }
        return error
    }

    // MARK: Handing over

    /// The close deadline passes while the dispatcher hands a batch to a connection: the batch ends when the
    /// dispatcher reports, as possibly sent when the connection took it (its bytes may be stored), not as not sent.
    @Test func aBatchThatEndsWhileHandedOverIsPossiblySentWhenTheConnectionTookIt() throws {
        var machine = self.makeMachine()
        self.append(&machine, 2)
        var job = try #require(machine.nextJob(now: self.at(0)).next?.job)
        job.frame = ByteBuffer(string: "frame")
        _ = machine.closeRequested(now: self.at(1), deadline: self.at(2))
        let atDeadline = machine.tick(now: self.at(2))
        #expect(atDeadline.finish.isEmpty)
        #expect(!machine.isFinished)
        let submitted = machine.submitted(job, to: Self.proxyA, now: self.at(3), spentBlock: nil)
        let error = try #require(self.error(submitted))
        #expect(error.code == .shutDown)
        #expect(error.persistence == .possiblySent)
        #expect(error.proxy == Self.proxyA)
        #expect(machine.isFinished)
    }

    /// The same at the delivery deadline, and the connection did not take it: not sent, and said once.
    @Test func aBatchThatExpiresWhileHandedOverIsNotSentWhenNoConnectionTookIt() throws {
        var machine = self.makeMachine(deliveryTimeout: .milliseconds(100))
        self.append(&machine, 2)
        var job = try #require(machine.nextJob(now: self.at(0)).next?.job)
        job.frame = ByteBuffer(string: "frame")
        #expect(machine.tick(now: self.at(150)).finish.isEmpty)
        #expect(machine.tick(now: self.at(160)).finish.isEmpty)
        let refused = machine.notSubmitted(job, spentBlock: nil)
        #expect(refused.finish.count == 1)
        let error = try #require(self.error(refused))
        #expect(error.code == .deliveryTimeout || error.code == .noProxies)
        #expect(error.persistence == .notSent)
        #expect(machine.jobCount == 0)
        #expect(machine.tick(now: self.at(200)).finish.isEmpty)
    }

    /// Over HTTP a job is submitted only once its request head is written. One whose connection was still being
    /// made at its deadline, and then failed, wrote nothing: not sent.
    @Test func aRequestThatNeverGotAConnectionBeforeItsDeadlineIsNotSent() throws {
        var machine = self.makeMachine(deliveryTimeout: .milliseconds(100))
        self.append(&machine, 2)
        var job = try #require(machine.nextJob(now: self.at(0)).next?.job)
        job.frame = ByteBuffer(string: "frame")
        // Still connecting at the deadline: it ends when the transport reports.
        let atDeadline = machine.tick(now: self.at(150))
        #expect(atDeadline.finish.isEmpty)
        let failed = machine.failedBeforeWriting(
            job, to: Self.proxyA, outcome: .transportFailed(TransportError(.requestTimeout, endpoint: Self.proxyA)), now: self.at(160)
        )
        #expect(failed.finish.count == 1)
        let error = try #require(self.error(failed))
        #expect(error.code == .deliveryTimeout)
        #expect(error.persistence == .notSent)
        #expect(machine.jobCount == 0)
    }

    /// A connection refused before the deadline: an attempt that failed as not sent, retried; at the deadline the
    /// records are still not sent.
    @Test func aRefusedConnectionIsRetriedAndStaysNotSent() throws {
        var machine = self.makeMachine(deliveryTimeout: .milliseconds(500))
        self.append(&machine, 2)
        var job = try #require(machine.nextJob(now: self.at(0)).next?.job)
        job.frame = ByteBuffer(string: "frame")
        let refused = machine.failedBeforeWriting(
            job, to: Self.proxyA, outcome: .transportFailed(TransportError(.connectFailed, endpoint: Self.proxyA)), now: self.at(1)
        )
        #expect(refused.finish.isEmpty)
        let retried = try #require(refused.retried.last)
        #expect(retried.error.persistence == .notSent)
        let expired = machine.tick(now: self.at(600))
        let error = try #require(self.error(expired))
        #expect(error.persistence == .notSent)
    }

    // MARK: Append

    @Test func aFullBatchIsSealedAndWakesTheDispatcher() {
        var machine = self.makeMachine()
        let first = machine.appendRun(self.records(1), key: Self.key, now: self.at(0), wallSeconds: 0)
        #expect(first.ids.count == 1)
        #expect(first.blocked == nil)
        #expect(first.sealed == nil)
        let second = machine.appendRun(self.records(1), key: Self.key, now: self.at(0), wallSeconds: 0)
        #expect(second.sealed?.batches.map(\.records) == [2])
        #expect(second.sealed?.heldBytes == 2 * (2 + BatchAccumulator.recordOverhead))
        #expect(machine.jobCount == 1)
        #expect(machine.accumulator.heldRecords == 2)
    }

    @Test func aSingleRecordIsAcceptedOrRefused() {
        var machine = self.makeMachine(maxRecords: 1)
        let (accepted, actions) = machine.append(ByteBuffer(string: "x"), attributes: nil, key: Self.key, now: self.at(0), wallSeconds: 0)
        #expect(accepted == .accepted(0))
        #expect(actions?.batches.map(\.records) == [1])
        let huge = ByteBuffer(repeating: 0, count: 1 << 17)
        #expect(machine.append(huge, attributes: nil, key: Self.key, now: self.at(0), wallSeconds: 0).0 == .tooLarge(limit: 1 << 16))
    }

    /// A record the key's open batch cannot take (by bytes) seals it and starts the next one when the dispatcher's
    /// backlog has room; without room it waits, and goes in once the dispatcher took a batch.
    @Test func aRecordTheOpenBatchCannotTakeSealsItOnlyWithRoomInTheBacklog() {
        var machine = self.makeMachine(maxRecords: 5, backlogLimit: 1)
        let large = ByteBuffer(repeating: 0x61, count: 40_000)
        let first = machine.append(large, attributes: nil, key: Self.key, now: self.at(0), wallSeconds: 0)
        #expect(first.0 == .accepted(0))
        #expect(first.1 == nil)
        let second = machine.append(large, attributes: nil, key: Self.key, now: self.at(0), wallSeconds: 0)
        #expect(second.0 == .accepted(1))
        #expect(second.1?.batches.map(\.records) == [1])
        let third = machine.append(large, attributes: nil, key: Self.key, now: self.at(0), wallSeconds: 0)
        #expect(third.0 == .blocked(.backlogged))
        #expect(machine.nextJob(now: self.at(0)).next?.job.batch.ids == DataProxyRecordIDs(0..<1))
        let retried = machine.append(large, attributes: nil, key: Self.key, now: self.at(0), wallSeconds: 0)
        #expect(retried.0 == .accepted(2))
        #expect(retried.1?.batches.map(\.records) == [1])
        #expect(machine.nextJob(now: self.at(0)).next?.job.batch.ids == DataProxyRecordIDs(1..<2))
    }

    /// A record that fills its batch while the backlog has no room leaves the batch open; the next record seals it
    /// once the dispatcher took a batch.
    @Test func aBatchFilledWithoutRoomIsSealedByTheNextRecordOnceThereIsRoom() {
        var machine = self.makeMachine(maxRecords: 2, backlogLimit: 1)
        let record = ByteBuffer(string: "r")
        for id in 0..<2 { _ = machine.append(record, attributes: nil, key: Self.key, now: self.at(0), wallSeconds: 0) }
        #expect(machine.jobCount == 1)
        let filled = machine.append(record, attributes: nil, key: Self.key, now: self.at(0), wallSeconds: 0)
        #expect(filled.0 == .accepted(2))
        let full = machine.append(record, attributes: nil, key: Self.key, now: self.at(0), wallSeconds: 0)
        #expect(full.0 == .accepted(3))
        #expect(full.1 == nil, "no room: the full batch stays open")
        #expect(machine.append(record, attributes: nil, key: Self.key, now: self.at(0), wallSeconds: 0).0 == .blocked(.backlogged))
        #expect(machine.nextJob(now: self.at(0)).next?.job.batch.ids == DataProxyRecordIDs(0..<2))
        let next = machine.append(record, attributes: nil, key: Self.key, now: self.at(0), wallSeconds: 0)
        #expect(next.0 == .accepted(4))
        #expect(next.1?.batches.map(\.records) == [2])
        #expect(machine.nextJob(now: self.at(0)).next?.job.batch.ids == DataProxyRecordIDs(2..<4))
    }

    @Test func aFullQuotaParksTheSenderUntilABatchEnds() throws {
        var machine = self.makeMachine(quotaRecords: 2)
        let run = machine.appendRun(self.records(3), key: Self.key, now: self.at(0), wallSeconds: 0)
        #expect(run.ids.count == 2)
        #expect(run.blocked == .full)
        #expect(machine.wait(for: .full, bytes: 2, waiter: 7) == .parked(id: 0))
        let job = try #require(self.dispatch(&machine))
        let actions = machine.completed(jobID: job.id, outcome: .acked(proxyIP: nil), now: self.at(5))
        #expect(actions.resumeSenders == [7])
        #expect(machine.wait(for: .full, bytes: 2, waiter: 8) == .retryNow)
    }

    @Test func aBackloggedDispatcherParksSendersUntilHalfIsTaken() {
        var machine = self.makeMachine(backlogLimit: 4)
        let run = machine.appendRun(self.records(10), key: Self.key, now: self.at(0), wallSeconds: 0)
        #expect(run.ids.count == 8)
        #expect(run.blocked == .backlogged)
        #expect(machine.appendRun(self.records(1), key: Self.key, now: self.at(0), wallSeconds: 0).blocked == .backlogged)
        #expect(machine.wait(for: .backlogged, bytes: 2, waiter: 1) == .parked(id: 0))
        #expect(machine.nextJob(now: self.at(0)).actions.resumeSenders == [])
        #expect(machine.nextJob(now: self.at(0)).actions.resumeSenders == [1])
    }

    @Test func sendersWaitingForTheDispatcherGoOnWhenExpiredJobsEmptyTheQueue() {
        var machine = self.makeMachine(backlogLimit: 2, deliveryTimeout: .seconds(1))
        self.append(&machine, 4)
        #expect(machine.appendRun(self.records(1), key: Self.key, now: self.at(0), wallSeconds: 0).blocked == .backlogged)
        #expect(machine.wait(for: .backlogged, bytes: 2, waiter: 1) == .parked(id: 0))
        let (next, actions) = machine.nextJob(now: self.at(1000))
        #expect(next == nil)
        #expect(actions.finish.count == 2)
        #expect(actions.resumeSenders == [1])
    }

    @Test func aCancelledSenderIsTakenOutOnce() {
        var machine = self.makeMachine(quotaRecords: 1)
        self.append(&machine, 1)
        #expect(machine.wait(for: .full, bytes: 2, waiter: 3) == .parked(id: 0))
        #expect(machine.cancelWait(0) == 3)
        #expect(machine.cancelWait(0) == nil)
    }

    // MARK: Dispatch

    @Test func jobsGoOutInOrderWithFreshUniqs() throws {
        var machine = self.makeMachine()
        self.append(&machine, 4)
        let first = try #require(machine.nextJob(now: self.at(0)).next)
        let second = try #require(machine.nextJob(now: self.at(0)).next)
        #expect(first.job.id == 0)
        #expect(second.job.id == 1)
        #expect(first.job.uniq == 1)
        #expect(second.job.uniq == 2)
        #expect(first.avoiding.isEmpty)
        #expect(machine.nextJob(now: self.at(0)).next == nil)
    }

    @Test func aJobNoConnectionTookGoesBackFirstWithoutAnAttempt() throws {
        var machine = self.makeMachine(backlogLimit: 2)
        self.append(&machine, 4)
        let next = try #require(machine.nextJob(now: self.at(0)).next)
        let actions = machine.notSubmitted(next.job, spentBlock: nil)
        #expect(actions.resumeSenders == [])
        let again = try #require(machine.nextJob(now: self.at(0)).next)
        #expect(again.job.id == next.job.id)
        #expect(again.job.attempts == 0)
        // Stalled: senders buffer up to the quota rather than wait for the dispatcher.
        #expect(machine.appendRun(self.records(6), key: Self.key, now: self.at(0), wallSeconds: 0).ids.count == 6)
    }

    @Test func anAckFinishesTheJobWithItsLatencyAndAttempts() throws {
        var machine = self.makeMachine()
        self.append(&machine, 2)
        let job = try #require(self.dispatch(&machine, at: 3))
        let actions = machine.completed(jobID: job.id, outcome: .acked(proxyIP: "10.0.0.1"), now: self.at(10))
        guard case .success(let ack) = actions.finish.first?.result else {
            Issue.record("not acked")
            return
        }
        #expect(ack.proxy == Self.proxyA)
        #expect(ack.proxyIP == "10.0.0.1")
        #expect(ack.latency == .milliseconds(7))
        #expect(ack.attempts == 1)
        #expect(machine.accumulator.heldRecords == 0)
        #expect(machine.jobCount == 0)
    }

    /// Every change of the quota in use is reported, with its new value (told to the gauge under the lock).
    @Test func everyChangeOfTheQuotaInUseIsReported() throws {
        var machine = self.makeMachine()
        let sealed = machine.appendRun(self.records(2), key: Self.key, now: self.at(0), wallSeconds: 0)
        let held = try #require(sealed.sealed?.heldBytes)
        #expect(held == machine.accumulator.heldBytes)
        #expect(held > 0)
        let job = try #require(self.dispatch(&machine, at: 1))
        let released = try #require(machine.completed(jobID: job.id, outcome: .acked(proxyIP: "10.0.0.1"), now: self.at(2)).heldBytes)
        #expect(released == 0)
    }

    @Test func anUnencodableJobFails() throws {
        var machine = self.makeMachine()
        self.append(&machine, 2)
        let next = try #require(machine.nextJob(now: self.at(0)).next)
        let actions = machine.encodingFailed(next.job, "bad")
        #expect(self.error(actions)?.code == .invalidArgument)
        #expect(machine.jobCount == 0)
    }

    // MARK: Outcomes

    @Test func aRetriableRejectionIsRetriedAfterTheBackoffAvoidingTheProxy() throws {
        var machine = self.makeMachine()
        self.append(&machine, 2)
        let job = try #require(self.dispatch(&machine))
        let actions = machine.completed(jobID: job.id, outcome: .rejected(.sinkServiceUnready, message: nil), now: self.at(10))
        #expect(actions.finish.isEmpty)
        #expect(actions.retried.last?.delay == .milliseconds(100))
        #expect(actions.retried.last?.error.code == .serverRejected)
        #expect(machine.tick(now: self.at(50)).wakeDispatcher == false)
        #expect(machine.nextJob(now: self.at(50)).next == nil)
        #expect(machine.tick(now: self.at(110)).wakeDispatcher)
        let retry = try #require(machine.nextJob(now: self.at(110)).next)
        #expect(retry.job.id == job.id)
        #expect(retry.job.uniq == job.uniq)
        #expect(retry.avoiding == [Self.proxyA])
    }

    /// Answers taken together (the client tells the machine every answer that came meanwhile under one lock): each
    /// retry is counted, not only the last.
    @Test func retriesOfAnswersTakenTogetherAreEachReported() throws {
        var machine = self.makeMachine()
        self.append(&machine, 2)
        let first = try #require(self.dispatch(&machine))
        self.append(&machine, 2)
        let second = try #require(self.dispatch(&machine))
        var actions = Machine.Actions()
        actions.merge(machine.completed(jobID: first.id, outcome: .rejected(.sinkServiceUnready, message: nil), now: self.at(10)))
        actions.merge(machine.completed(jobID: second.id, outcome: .transportFailed(TransportError(.requestTimeout, mayHaveBeenDelivered: true)), now: self.at(10)))
        #expect(actions.retried.map(\.error.code) == [.serverRejected, .requestTimeout])
    }

    @Test func eachRetryWaitsTheNextDelayOfTheJobsOwnBackoff() throws {
        var machine = self.makeMachine()
        self.append(&machine, 2)
        var delays: [Duration] = []
        var now = 0
        for _ in 0..<5 {
            let job = try #require(self.dispatch(&machine, at: now))
            let actions = machine.completed(jobID: job.id, outcome: .transportFailed(TransportError(.requestTimeout, mayHaveBeenDelivered: true)), now: self.at(now))
            delays.append(try #require(actions.retried.last?.delay))
            now += 1000
            _ = machine.tick(now: self.at(now))
        }
        #expect(delays == [100, 200, 400, 800, 1000].map { .milliseconds($0) })
    }

    @Test func aFatalRejectionFailsAtOnceAsNotSent() throws {
        var machine = self.makeMachine()
        self.append(&machine, 2)
        let job = try #require(self.dispatch(&machine))
        let actions = machine.completed(jobID: job.id, outcome: .rejected(.topicIsBlank, message: "no such group"), now: self.at(1))
        let error = try #require(self.error(actions))
        #expect(error.code == .serverRejected)
        #expect(error.serverResultCode == .topicIsBlank)
        #expect(error.serverErrorMessage == "no such group")
        #expect(error.isRetriable == false)
        #expect(error.persistence == .notSent)
        #expect(error.attempts == 1)
    }

    @Test func aWrittenRequestStaysPossiblySentWhateverComesLater() throws {
        var machine = self.makeMachine()
        self.append(&machine, 2)
        let job = try #require(self.dispatch(&machine))
        _ = machine.completed(jobID: job.id, outcome: .transportFailed(TransportError(.requestTimeout, mayHaveBeenDelivered: true)), now: self.at(0))
        _ = machine.tick(now: self.at(200))
        let retry = try #require(self.dispatch(&machine, to: Self.proxyB, at: 200))
        let actions = machine.completed(jobID: retry.id, outcome: .rejected(.topicIsBlank, message: nil), now: self.at(201))
        let error = try #require(self.error(actions))
        #expect(error.persistence == .possiblySent)
        #expect(error.attempts == 2)
        #expect(error.proxy == Self.proxyB)
    }

    @Test func aRefusalBeforeWritingIsNotAnAttempt() throws {
        var machine = self.makeMachine(maxAttempts: 1)
        self.append(&machine, 2)
        let job = try #require(self.dispatch(&machine))
        let actions = machine.completed(jobID: job.id, outcome: .transportFailed(TransportError(.notConnected)), now: self.at(1))
        #expect(actions.finish.isEmpty)
        #expect(actions.retried.last?.attempts == 0)
        #expect(actions.retried.last?.error.code == .notConnected)
        #expect(actions.retried.last?.error.persistence == .notSent)
    }

    @Test func failuresAreLabelledWithWhatHappened() {
        #expect(Machine.code(of: TransportError(.requestTimeout)) == .requestTimeout)
        #expect(Machine.code(of: TransportError(.notConnected)) == .notConnected)
        #expect(Machine.code(of: TransportError(.tooManyRequests)) == .notConnected)
        #expect(Machine.code(of: TransportError(.connectionClosed)) == .connectionLost)
        #expect(Machine.code(of: TransportError(.heartbeatTimeout)) == .connectionLost)
        #expect(Machine.code(of: TransportError(.unresponsive)) == .connectionLost)
        #expect(Machine.code(of: TransportError(.protocolViolation)) == .connectionFailed)
    }

    @Test func retriesGoOnUntilTheDeliveryDeadlineThenFailWithTheLastReason() throws {
        var machine = self.makeMachine(deliveryTimeout: .seconds(3))
        self.append(&machine, 2)
        var now = 0
        var attempts = 0
        var last = Machine.Actions()
        while last.finish.isEmpty, attempts < 100 {
            let job = try #require(self.dispatch(&machine, at: now))
            attempts += 1
            now += 10
            last = machine.completed(jobID: job.id, outcome: .transportFailed(TransportError(.connectionClosed, mayHaveBeenDelivered: true)), now: self.at(now))
            guard let delay = last.retried.last?.delay else { break }
            now += Int(delay.components.seconds * 1000 + delay.components.attoseconds / 1_000_000_000_000_000)
            last = machine.tick(now: self.at(now))
        }
        let error = try #require(self.error(last))
        #expect(error.code == .deliveryTimeout)
        #expect(error.detail.contains("connectionLost"))
        #expect(error.persistence == .possiblySent)
        #expect(attempts == 6)
    }

    @Test func aCapOnAttemptsStillApplies() throws {
        var machine = self.makeMachine(maxAttempts: 2)
        self.append(&machine, 2)
        let first = try #require(self.dispatch(&machine))
        _ = machine.completed(jobID: first.id, outcome: .transportFailed(TransportError(.requestTimeout, mayHaveBeenDelivered: true)), now: self.at(0))
        _ = machine.tick(now: self.at(200))
        let second = try #require(self.dispatch(&machine, at: 200))
        let actions = machine.completed(jobID: second.id, outcome: .transportFailed(TransportError(.requestTimeout, mayHaveBeenDelivered: true)), now: self.at(300))
        #expect(self.error(actions)?.code == .requestTimeout)
        #expect(self.error(actions)?.attempts == 2)
    }

    @Test func outcomesSayWhatTheyMeanForTheProxy() {
        #expect(DeliveryOutcome.acked(proxyIP: nil).proxySucceeded == true)
        #expect(DeliveryOutcome.rejected(.sinkServiceUnready, message: nil).proxySucceeded == false)
        #expect(DeliveryOutcome.rejected(.missRequiredBody, message: nil).proxySucceeded == nil)
        #expect(DeliveryOutcome.transportFailed(TransportError(.connectionClosed)).proxySucceeded == false)
        #expect(DeliveryOutcome.unexpectedReply("x").proxySucceeded == false)
    }

    @Test func aLateOutcomeOfAnEndedJobIsIgnored() throws {
        var machine = self.makeMachine()
        self.append(&machine, 2)
        let job = try #require(self.dispatch(&machine))
        _ = machine.cancelled(now: self.at(1))
        #expect(machine.completed(jobID: job.id, outcome: .acked(proxyIP: nil), now: self.at(2)).isEmpty)
    }

    // MARK: Time

    @Test func theTickSealsBatchesPastTheirLinger() {
        var machine = self.makeMachine(maxRecords: 10)
        self.append(&machine, 3)
        #expect(machine.tick(now: self.at(5)).wakeDispatcher == false)
        let actions = machine.tick(now: self.at(10))
        #expect(actions.wakeDispatcher)
        #expect(actions.sealed.map(\.records) == [3])
    }

    @Test func recordsNobodyCouldSendFailAtTheirDeadlineAsNoProxies() {
        var machine = self.makeMachine(deliveryTimeout: .seconds(1), proxies: [])
        self.append(&machine, 2)
        #expect(machine.tick(now: self.at(999)).finish.isEmpty)
        let actions = machine.tick(now: self.at(1000))
        #expect(self.error(actions)?.code == .noProxies)
        #expect(self.error(actions)?.persistence == .notSent)
        #expect(machine.accumulator.heldRecords == 0)
    }

    @Test func aStalledJobFailsAtItsDeadlineAsADeliveryTimeout() throws {
        var machine = self.makeMachine(deliveryTimeout: .seconds(1))
        self.append(&machine, 2)
        let next = try #require(machine.nextJob(now: self.at(0)).next)
        _ = machine.notSubmitted(next.job, spentBlock: nil)
        let actions = machine.tick(now: self.at(1000))
        #expect(self.error(actions)?.code == .deliveryTimeout)
    }

    @Test func aRequestInFlightPastItsDeadlineFailsAsPossiblySentAndItsLateAckIsIgnored() throws {
        var machine = self.makeMachine(deliveryTimeout: .seconds(1))
        self.append(&machine, 2)
        let job = try #require(self.dispatch(&machine))
        #expect(machine.tick(now: self.at(999)).finish.isEmpty)
        let actions = machine.tick(now: self.at(1000))
        #expect(self.error(actions)?.code == .deliveryTimeout)
        #expect(self.error(actions)?.persistence == .possiblySent)
        #expect(machine.completed(jobID: job.id, outcome: .acked(proxyIP: nil), now: self.at(1001)).isEmpty)
    }

    @Test func aJobPastItsDeadlineIsNotSent() {
        var machine = self.makeMachine(deliveryTimeout: .seconds(1))
        self.append(&machine, 2)
        let (next, actions) = machine.nextJob(now: self.at(1000))
        #expect(next == nil)
        #expect(self.error(actions)?.code == .deliveryTimeout)
    }

    // MARK: Flush, close, cancel

    @Test func flushWaitsForEveryEarlierJob() throws {
        var machine = self.makeMachine(maxRecords: 10)
        self.append(&machine, 3)
        let (result, actions) = machine.flush(waiter: 9, now: self.at(0))
        #expect(actions.sealed.map(\.records) == [3])
        guard case .parked(let id) = result else {
            Issue.record("the flush ended with a job pending")
            return
        }
        let job = try #require(self.dispatch(&machine))
        let ended = machine.completed(jobID: job.id, outcome: .acked(proxyIP: nil), now: self.at(1))
        #expect(ended.resumeFlushes.map(\.waiter) == [9])
        #expect(ended.resumeFlushes.map(\.allEnded) == [true])
        #expect(machine.cancelFlush(id) == nil)
        guard case .ended = machine.flush(waiter: 10, now: self.at(2)).0 else {
            Issue.record("a flush with nothing held waited")
            return
        }
    }

    @Test func aFlushPastItsDeadlineIsTakenOut() {
        var machine = self.makeMachine()
        self.append(&machine, 2)
        guard case .parked(let id) = machine.flush(waiter: 4, now: self.at(0)).0 else {
            Issue.record("the flush ended with a job pending")
            return
        }
        #expect(machine.cancelFlush(id) == 4)
    }

    @Test func closeSealsEverythingRefusesRecordsAndResumesSenders() {
        var machine = self.makeMachine(maxRecords: 10, quotaRecords: 3)
        self.append(&machine, 3)
        #expect(machine.wait(for: .full, bytes: 2, waiter: 5) == .parked(id: 0))
        let actions = machine.closeRequested(now: self.at(0), deadline: self.at(1000))
        #expect(actions.sealed.map(\.records) == [3])
        #expect(actions.resumeSenders == [5])
        #expect(actions.wakeDispatcher)
        #expect(machine.appendRun(self.records(1), key: Self.key, now: self.at(1), wallSeconds: 0).blocked == .closed)
        #expect(machine.wait(for: .full, bytes: 2, waiter: 6) == .retryNow)
        #expect(machine.isFinished == false)
    }

    @Test func closeEndsOnceEverythingIsAcked() throws {
        var machine = self.makeMachine()
        self.append(&machine, 2)
        let job = try #require(self.dispatch(&machine))
        _ = machine.closeRequested(now: self.at(0), deadline: self.at(1000))
        let actions = machine.completed(jobID: job.id, outcome: .acked(proxyIP: nil), now: self.at(1))
        #expect(actions.wakeDispatcher)
        #expect(machine.isFinished)
    }

    @Test func theCloseDeadlineFailsWrittenJobsAsPossiblySentAndOthersAsNotSent() throws {
        var machine = self.makeMachine(maxRecords: 1)
        self.append(&machine, 2)
        _ = try #require(self.dispatch(&machine))
        _ = machine.closeRequested(now: self.at(0), deadline: self.at(1000))
        #expect(machine.tick(now: self.at(999)).finish.isEmpty)
        let actions = machine.tick(now: self.at(1000))
        #expect(actions.finish.map(\.job.id) == [0, 1])
        let persistence = actions.finish.map { finished -> DataProxyError.Persistence? in
            guard case .failure(let error) = finished.result else { return nil }
            return error.persistence
        }
        #expect(persistence == [.possiblySent, .notSent])
        #expect(self.error(actions)?.code == .shutDown)
        #expect(machine.isFinished)
    }

    @Test func aRetryDueAfterTheCloseDeadlineFailsAsShutDown() throws {
        var machine = self.makeMachine()
        self.append(&machine, 2)
        let job = try #require(self.dispatch(&machine))
        _ = machine.closeRequested(now: self.at(0), deadline: self.at(50))
        let actions = machine.completed(jobID: job.id, outcome: .transportFailed(TransportError(.requestTimeout, mayHaveBeenDelivered: true)), now: self.at(60))
        #expect(self.error(actions)?.code == .shutDown)
        #expect(self.error(actions)?.detail.contains("requestTimeout") == true)
        #expect(self.error(actions)?.lastFailure == .requestTimeout)
    }

    /// What a close names as the reason records were not acked before it: the last attempt's failure; for a
    /// batch that never got a connection, `notConnected` when no connection could take the jobs ahead of it, and
    /// nothing when it was only waiting its turn; in flight with no failure, nothing; after a cancelled run,
    /// nothing (the cancellation failed the connections too).
    @Test func theCloseNamesWhyRecordsWereNotAckedBeforeIt() throws {
        func reasons(stalled: Bool) throws -> (failed: Int, inFlight: Int, reasons: [Int: DataProxyError.Code?]) {
            var machine = self.makeMachine(maxRecords: 2)
            self.append(&machine, 8)
            let failed = try #require(self.dispatch(&machine))
            _ = machine.completed(jobID: failed.id, outcome: .transportFailed(TransportError(.connectionClosed, mayHaveBeenDelivered: true)), now: self.at(0))
            let inFlight = try #require(self.dispatch(&machine))
            if stalled, let refused = machine.nextJob(now: self.at(0)).next?.job {
                _ = machine.notSubmitted(refused, spentBlock: nil)
            }
            _ = machine.closeRequested(now: self.at(0), deadline: self.at(50))
            var reasons: [Int: DataProxyError.Code?] = [:]
            for (job, result, _) in machine.tick(now: self.at(50)).finish {
                guard case .failure(let error) = result else { continue }
                #expect(error.code == .shutDown)
                reasons[job.id] = error.lastFailure
            }
            return (failed.id, inFlight.id, reasons)
        }
        for stalled in [false, true] {
            let (failed, inFlight, reasons) = try reasons(stalled: stalled)
            #expect(reasons.count == 4)
            #expect(reasons[failed] == .some(.connectionLost))
            #expect(reasons[inFlight] == .some(nil))
            let waiting = reasons.filter { $0.key != failed && $0.key != inFlight }.values
            #expect(waiting.allSatisfy { $0 == (stalled ? .notConnected : nil) }, "stalled: \(stalled)")
        }

        var cancelled = self.makeMachine(maxRecords: 2)
        self.append(&cancelled, 4)
        let lost = try #require(self.dispatch(&cancelled))
        _ = cancelled.completed(jobID: lost.id, outcome: .transportFailed(TransportError(.connectionClosed, mayHaveBeenDelivered: true)), now: self.at(0))
        let ended = cancelled.cancelled(now: self.at(1)).finish
        #expect(ended.count == 2)
        for (_, result, _) in ended {
            guard case .failure(let error) = result else { continue }
            #expect(error.code == .shutDown && error.lastFailure == nil)
        }
    }

    @Test func cancellationEndsEveryRecordAndResumesEveryWaiter() throws {
        var machine = self.makeMachine(maxRecords: 2, quotaRecords: 5)
        self.append(&machine, 5)
        _ = try #require(self.dispatch(&machine))
        let retried = try #require(self.dispatch(&machine))
        _ = machine.completed(jobID: retried.id, outcome: .transportFailed(TransportError(.requestTimeout, mayHaveBeenDelivered: true)), now: self.at(0))
        #expect(machine.wait(for: .full, bytes: 2, waiter: 1) == .parked(id: 0))
        guard case .parked = machine.flush(waiter: 2, now: self.at(0)).0 else {
            Issue.record("the flush ended with jobs pending")
            return
        }
        let actions = machine.cancelled(now: self.at(1))
        #expect(actions.finish.map(\.job.id) == [0, 1, 2])
        #expect(actions.finish.reduce(0) { $0 + $1.job.batch.recordCount } == 5)
        #expect(actions.resumeSenders == [1])
        #expect(actions.resumeFlushes.map(\.waiter) == [2])
        #expect(machine.accumulator.heldRecords == 0)
        #expect(machine.isFinished)
        #expect(machine.phase == .closed)
        #expect(machine.cancelled(now: self.at(2)).finish.isEmpty)
    }

    // MARK: Record ids and report holds

    @Test func recordsTakeIncreasingIDsAndBatchesNameThem() throws {
        var machine = self.makeMachine(maxRecords: 3)
        let run = machine.appendRun(self.records(4), key: Self.key, now: self.at(0), wallSeconds: 0)
        #expect(run.ids == 0..<4)
        let (single, _) = machine.append(ByteBuffer(string: "x"), attributes: nil, key: Self.key, now: self.at(0), wallSeconds: 0)
        #expect(single == .accepted(4))
        let other = BatchKey(group: "g", stream: "other", perRecordAttributes: false)
        let (elsewhere, _) = machine.append(ByteBuffer(string: "y"), attributes: nil, key: other, now: self.at(0), wallSeconds: 0)
        #expect(elsewhere == .accepted(5))
        let first = try #require(self.dispatch(&machine))
        #expect(first.batch.ids == DataProxyRecordIDs(0..<3))
        _ = machine.flush(waiter: 0, now: self.at(1))
        let rest = [self.dispatch(&machine), self.dispatch(&machine)].compactMap { $0?.batch.ids }
        #expect(Set(rest) == [DataProxyRecordIDs(3..<5), DataProxyRecordIDs(5..<6)])
    }

    @Test func aRefusedAppendTakesNoID() {
        var machine = self.makeMachine(quotaRecords: 2)
        #expect(machine.appendRun(self.records(3), key: Self.key, now: self.at(0), wallSeconds: 0).ids == 0..<2)
        #expect(machine.appendRun(self.records(1), key: Self.key, now: self.at(0), wallSeconds: 0).ids == 2..<2)
        #expect(machine.nextRecordID == 2)
    }

    @Test func withoutReportReadersAnEndedJobReleasesItsQuota() throws {
        var machine = self.makeMachine()
        self.append(&machine, 2)
        let job = try #require(self.dispatch(&machine))
        let actions = machine.completed(jobID: job.id, outcome: .acked(proxyIP: nil), now: self.at(1))
        #expect(actions.finish.map(\.reportHolds) == [false])
        #expect(machine.accumulator.heldRecords == 0)
    }

    @Test func withReportReadersAnEndedJobHoldsItsQuotaUntilTheReportIsTaken() throws {
        var machine = self.makeMachine(quotaRecords: 2)
        machine.reportReadersChanged(1)
        self.append(&machine, 2)
        let job = try #require(self.dispatch(&machine))
        #expect(machine.appendRun(self.records(1), key: Self.key, now: self.at(0), wallSeconds: 0).blocked == .full)
        #expect(machine.wait(for: .full, bytes: 2, waiter: 7) == .parked(id: 0))
        let ended = machine.completed(jobID: job.id, outcome: .acked(proxyIP: nil), now: self.at(1))
        #expect(ended.finish.map(\.reportHolds) == [true])
        #expect(ended.resumeSenders.isEmpty)
        #expect(machine.accumulator.heldRecords == 2)
        #expect(machine.reports.heldRecords == 2)
        let taken = machine.reportsTaken(bytes: job.batch.chargedBytes, records: 2)
        #expect(taken.resumeSenders == [7])
        #expect(machine.accumulator.heldRecords == 0)
        #expect(machine.reports.heldRecords == 0)
        #expect(machine.reports.heldBytes == 0)
    }

    @Test func aClosingClientIsFinishedWhileReportsAreStillHeld() throws {
        var machine = self.makeMachine()
        machine.reportReadersChanged(1)
        self.append(&machine, 2)
        let job = try #require(self.dispatch(&machine))
        _ = machine.closeRequested(now: self.at(1), deadline: self.at(1000))
        #expect(!machine.isFinished)
        let actions = machine.completed(jobID: job.id, outcome: .acked(proxyIP: nil), now: self.at(2))
        #expect(actions.wakeDispatcher)
        #expect(machine.isFinished)
    }

    // MARK: Routes

    @Test func aJobWithoutProxiesWaitsApartUntilItsGroupIsRouted() throws {
        var machine = self.makeMachine()
        self.append(&machine, 2)
        let job = try #require(machine.nextJob(now: self.at(0)).next?.job)
        #expect(machine.awaitRoute(job).wakeDispatcher == false)
        #expect(machine.groupsAwaitingRoute == ["g"])
        #expect(machine.nextJob(now: self.at(0)).next == nil)
        #expect(machine.jobCount == 1)
        let ready = machine.routeReady("g")
        #expect(ready.wakeDispatcher)
        #expect(machine.nextJob(now: self.at(1)).next?.job.id == job.id)
    }

    @Test func aRouteThatCameBeforeTheParkIsNotMissed() throws {
        var machine = self.makeMachine()
        self.append(&machine, 2)
        let job = try #require(machine.nextJob(now: self.at(0)).next?.job)
        _ = machine.routeReady("g")
        #expect(machine.awaitRoute(job).wakeDispatcher)
        #expect(machine.groupsAwaitingRoute.isEmpty)
        #expect(machine.nextJob(now: self.at(1)).next?.job.id == job.id)
    }

    @Test func aJobWaitingForARouteFailsAsNoProxiesAtItsDeadline() throws {
        var machine = self.makeMachine(deliveryTimeout: .seconds(1))
        self.append(&machine, 2)
        let job = try #require(machine.nextJob(now: self.at(0)).next?.job)
        _ = machine.awaitRoute(job)
        let actions = machine.tick(now: self.at(1000))
        #expect(self.error(actions)?.code == .noProxies)
        #expect(machine.jobCount == 0)
    }
}
