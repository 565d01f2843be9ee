import NIOCore
import Testing

@testable import InLongTransport

@Suite struct ConnectionStateMachineTests {
    typealias Machine = ConnectionStateMachine<Int, String>
    static let t0 = NIODeadline.uptimeNanoseconds(1_000_000_000)

    func makeMachine(maxInFlight: Int = 2, maxQueued: Int = 2, heartbeat: TimeAmount? = .seconds(10), read: TimeAmount? = .seconds(30)) -> Machine {
        Machine(
            configuration: .init(maxInFlight: maxInFlight, maxQueued: maxQueued, heartbeatInterval: heartbeat, readTimeout: read),
            now: Self.t0
        )
    }

    func written(_ action: Machine.Action) -> [String]? {
        switch action {
        case .write(let items): items.map(\.pending)
        case .writeOne(let item): [item.pending]
        default: nil
        }
    }

    @Test func requestsBeyondTheCapQueueAndStartWhenSlotsFree() {
        var machine = self.makeMachine()
        #expect(self.written(machine.requestSubmitted(key: 1, pending: "a", now: Self.t0)) == ["a"])
        #expect(self.written(machine.requestSubmitted(key: 2, pending: "b", now: Self.t0)) == ["b"])
        guard case .none = machine.requestSubmitted(key: 3, pending: "c", now: Self.t0) else { Issue.record(); return }
        #expect(machine.queuedCount == 1)
        let (done, next) = machine.responseReceived(key: 2, now: Self.t0)
        guard case .succeed("b") = done else { Issue.record("\(done)"); return }
        #expect(self.written(next) == ["c"])
        #expect(Set(machine.inFlight.keys) == [1, 3])
    }

    @Test func queueOverflowAndDuplicateKeysAreRejected() {
        var machine = self.makeMachine(maxInFlight: 1, maxQueued: 1)
        _ = machine.requestSubmitted(key: 1, pending: "a", now: Self.t0)
        _ = machine.requestSubmitted(key: 2, pending: "b", now: Self.t0)
        guard case .reject(_, let full) = machine.requestSubmitted(key: 3, pending: "c", now: Self.t0) else { Issue.record(); return }
        #expect(full.code == .tooManyRequests && !full.mayHaveBeenDelivered)
        guard case .reject(_, let duplicate) = machine.requestSubmitted(key: 1, pending: "d", now: Self.t0) else { Issue.record(); return }
        #expect(duplicate.code == .duplicateKey)
    }

    @Test func notWritableHoldsEverythingInOrder() {
        var machine = self.makeMachine(maxInFlight: 10, maxQueued: 10)
        #expect(machine.writabilityChanged(isWritable: false, now: Self.t0).isNone)
        #expect(machine.requestSubmitted(key: 1, pending: "a", now: Self.t0).isNone)
        #expect(machine.sendSubmitted(pending: "s", now: Self.t0).isNone)
        #expect(machine.requestSubmitted(key: 2, pending: "b", now: Self.t0).isNone)
        #expect(self.written(machine.writabilityChanged(isWritable: true, now: Self.t0)) == ["a", "s", "b"])
    }

    @Test func unmatchedResponseIsReported() {
        var machine = self.makeMachine()
        guard case .unmatchedResponse = machine.responseReceived(key: 9, now: Self.t0).0 else { Issue.record(); return }
    }

    @Test func timeoutOfAWrittenRequestMayHaveBeenDelivered() {
        var machine = self.makeMachine()
        _ = machine.requestSubmitted(key: 1, pending: "a", timeout: .seconds(5), now: Self.t0)
        _ = machine.frameWritten(now: Self.t0)
        guard case .fail("a", let error) = machine.requestTimedOut(key: 1, now: Self.t0 + .seconds(5)).0 else { Issue.record(); return }
        #expect(error.code == .requestTimeout && error.mayHaveBeenDelivered)
        // The late response matches nothing.
        guard case .unmatchedResponse = machine.responseReceived(key: 1, now: Self.t0).0 else { Issue.record(); return }
    }

    @Test func cancellationFailsTheRequest() {
        var machine = self.makeMachine()
        _ = machine.requestSubmitted(key: 1, pending: "a", now: Self.t0)
        guard case .fail("a", let error) = machine.requestCancelled(key: 1, now: Self.t0).0 else { Issue.record(); return }
        #expect(error.code == .cancelled)
        #expect(machine.inFlight.isEmpty)
    }

    /// A task's cancellation can arrive after its request ended and another took the same key: it must not cancel
    /// that one, in flight or queued.
    @Test func aLateCancellationSparesTheRequestThatReusedItsKey() {
        var machine = self.makeMachine(maxInFlight: 1, maxQueued: 2)
        _ = machine.requestSubmitted(key: 1, pending: "a", now: Self.t0)
        guard case .succeed("a") = machine.responseReceived(key: 1, now: Self.t0).0 else { Issue.record(); return }
        _ = machine.requestSubmitted(key: 1, pending: "b", now: Self.t0)
        guard case .none = machine.requestCancelled(key: 1, now: Self.t0, isTheRequest: { $0 == "a" }).0 else { Issue.record(); return }
        #expect(machine.inFlight.keys.contains(1))

        _ = machine.requestSubmitted(key: 2, pending: "c", now: Self.t0)
        #expect(machine.queuedCount == 1)
        guard case .none = machine.requestCancelled(key: 2, now: Self.t0, isTheRequest: { $0 == "x" }).0 else { Issue.record(); return }
        #expect(machine.queuedCount == 1)

        let queued = machine.requestCancelled(key: 2, now: Self.t0, isTheRequest: { $0 == "c" }).0
        guard case .fail("c", let queuedError) = queued else { Issue.record("\(queued)"); return }
        #expect(queuedError.code == .cancelled && !queuedError.mayHaveBeenDelivered)
        #expect(machine.queuedCount == 0)
        let inFlight = machine.requestCancelled(key: 1, now: Self.t0, isTheRequest: { $0 == "b" }).0
        guard case .fail("b", let error) = inFlight else { Issue.record("\(inFlight)"); return }
        #expect(error.code == .cancelled && error.mayHaveBeenDelivered)
        #expect(machine.inFlight.isEmpty)
    }

    /// What the channel handler tells a task's request by: the ticket its cancellation names.
    @Test func aCancellationTicketNamesOneAwaitedRequestOnly() async throws {
        var matches: [Bool] = []
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            let awaited = ConnectionOperation<Void>(bytes: ByteBuffer(), completion: .awaitingResponse(continuation, ticket: 7))
            let written = ConnectionOperation<Void>(bytes: ByteBuffer(), completion: .written(nil))
            matches = [awaited.isCancelled(by: 7), awaited.isCancelled(by: 8), written.isCancelled(by: 7)]
            continuation.resume()
        }
        #expect(matches == [true, false, false])
    }

    @Test func heartbeatAfterWriteIdleThenDeadPeer() {
        var machine = self.makeMachine(heartbeat: .seconds(10), read: .seconds(30))
        guard case .scheduleIdleCheck(let first) = machine.nextIdleCheck(now: Self.t0) else { Issue.record(); return }
        #expect(first == Self.t0 + .seconds(10))
        // Written at t0+5: at t0+10 nothing to do yet, next check at t0+15.
        _ = machine.sendSubmitted(pending: "s", now: Self.t0 + .seconds(5))
        guard case .scheduleIdleCheck(let next) = machine.idleCheck(now: Self.t0 + .seconds(10)) else { Issue.record(); return }
        #expect(next == Self.t0 + .seconds(15))
        guard case .sendHeartbeat(let afterHeartbeat) = machine.idleCheck(now: Self.t0 + .seconds(15)) else { Issue.record(); return }
        #expect(afterHeartbeat == Self.t0 + .seconds(25))
        machine.heartbeatWritten(now: Self.t0 + .seconds(15))
        guard case .heartbeatReplied(let rtt) = machine.heartbeatReplyReceived(now: Self.t0 + .seconds(16)) else { Issue.record(); return }
        #expect(rtt == .seconds(1))
        machine.bytesRead(now: Self.t0 + .seconds(16))
        // Nothing read for 30 s after t0+16: dead.
        guard case .close(let error) = machine.idleCheck(now: Self.t0 + .seconds(46)) else { Issue.record(); return }
        #expect(error.code == .heartbeatTimeout)
    }

    @Test func idleConnectionIsClosedOnlyWhenNothingIsPending() {
        var machine = ConnectionStateMachine<Int, String>(
            configuration: .init(maxInFlight: 4, maxQueued: 4, heartbeatInterval: .seconds(10), readTimeout: nil, maxIdleTime: .seconds(60)),
            now: Self.t0
        )
        _ = machine.requestSubmitted(key: 1, pending: "a", now: Self.t0 + .seconds(5))
        // Heartbeats are not use: the one at t0+15 does not postpone the idle close.
        guard case .sendHeartbeat = machine.idleCheck(now: Self.t0 + .seconds(15)) else { Issue.record(); return }
        machine.heartbeatWritten(now: Self.t0 + .seconds(15))
        // Idle for 60 s but a request is pending: kept, and looked at again later, not at once.
        guard case .sendHeartbeat(let next) = machine.idleCheck(now: Self.t0 + .seconds(65)) else { Issue.record(); return }
        #expect(next > Self.t0 + .seconds(65))
        machine.heartbeatWritten(now: Self.t0 + .seconds(65))
        _ = machine.responseReceived(key: 1, now: Self.t0 + .seconds(66))
        guard case .close(let error) = machine.idleCheck(now: Self.t0 + .seconds(70)) else { Issue.record(); return }
        #expect(error.code == .idleTimeout)
    }

    @Test func noTimersWithoutHeartbeatOrReadTimeout() {
        let machine = self.makeMachine(heartbeat: nil, read: nil)
        #expect(machine.nextIdleCheck(now: Self.t0).isNone)
    }

    @Test func drainClosesWhenTheLastRequestCompletes() {
        var machine = self.makeMachine(maxInFlight: 1, maxQueued: 4)
        _ = machine.requestSubmitted(key: 1, pending: "a", now: Self.t0)
        _ = machine.requestSubmitted(key: 2, pending: "b", now: Self.t0)
        let (unstarted, action) = machine.drainRequested()
        #expect(unstarted.map(\.pending) == ["b"])
        #expect(action.isNone)
        guard case .reject(_, let error) = machine.requestSubmitted(key: 3, pending: "c", now: Self.t0) else { Issue.record(); return }
        #expect(error.code == .notConnected)
        guard case .close(let reason) = machine.responseReceived(key: 1, now: Self.t0).1 else { Issue.record(); return }
        #expect(reason.code == .shutDown)
    }

    @Test func drainWithNothingInFlightClosesAtOnce() {
        var machine = self.makeMachine()
        guard case .close = machine.drainRequested().1 else { Issue.record(); return }
    }

    @Test func drainAwaitingInboundHandlersClosesOnceTheyFinish() {
        var machine = self.makeMachine(maxInFlight: 1)
        _ = machine.requestSubmitted(key: 1, pending: "a", now: Self.t0)
        #expect(machine.drainRequested(awaitingInboundHandlers: true).1.isNone)
        // The last response leaves the handlers to wait for.
        #expect(machine.responseReceived(key: 1, now: Self.t0).1.isNone)
        guard case .close(let reason) = machine.inboundHandlersFinished() else { Issue.record(); return }
        #expect(reason.code == .shutDown)
        #expect(machine.inboundHandlersFinished().isNone)
    }

    @Test func inboundHandlersFinishingBeforeADrainCloseNothing() {
        var machine = self.makeMachine()
        #expect(machine.inboundHandlersFinished().isNone)
        #expect(machine.drainRequested(awaitingInboundHandlers: true).1.isNone)
        guard case .close = machine.inboundHandlersFinished() else { Issue.record(); return }
    }

    @Test func closeHandsBackEverythingPending() {
        var machine = self.makeMachine(maxInFlight: 1)
        _ = machine.requestSubmitted(key: 1, pending: "a", now: Self.t0)
        _ = machine.requestSubmitted(key: 2, pending: "b", now: Self.t0)
        let (inFlight, queued) = machine.closed()
        #expect(inFlight == ["a"])
        #expect(queued.map(\.pending) == ["b"])
        guard case .reject = machine.requestSubmitted(key: 3, pending: "c", now: Self.t0) else { Issue.record(); return }
    }
}

extension ConnectionStateMachine.Action {
    var isNone: Bool { if case .none = self { true } else { false } }

    /// The request and deadline of a `.scheduleRequestTimeout`.
    var requestTimeout: (Key, NIODeadline)? {
        if case .scheduleRequestTimeout(let key, let deadline) = self { (key, deadline) } else { nil }
    }

    /// The error of a `.close`.
    var closeCode: TransportError.Code? {
        if case .close(let error) = self { error.code } else { nil }
    }
}
