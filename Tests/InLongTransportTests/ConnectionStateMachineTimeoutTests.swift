import NIOCore
import Testing

@testable import InLongTransport

/// Request timeouts run from the write, waiting is bounded by the queue timeout, and consecutive timeouts recycle
/// the connection.
@Suite struct ConnectionStateMachineTimeoutTests {
    typealias Machine = ConnectionStateMachine<Int, String>
    static let t0 = NIODeadline.uptimeNanoseconds(1_000_000_000)

    func makeMachine(
        maxInFlight: Int = 4,
        maxQueued: Int = 4,
        queueTimeout: TimeAmount? = nil,
        recycleAfterTimeouts: Int? = nil
    ) -> Machine {
        Machine(
            configuration: .init(
                maxInFlight: maxInFlight,
                maxQueued: maxQueued,
                heartbeatInterval: nil,
                readTimeout: nil,
                queueTimeout: queueTimeout,
                recycleAfterTimeouts: recycleAfterTimeouts
            ),
            now: Self.t0
        )
    }

    func at(_ seconds: Int64) -> NIODeadline { Self.t0 + .seconds(seconds) }

    // MARK: The timeout starts at the write

    @Test func aRequestTimeoutStartsWhenItsFrameIsWrittenNotWhenSubmitted() {
        var machine = self.makeMachine()
        _ = machine.requestSubmitted(key: 1, pending: "a", timeout: .seconds(5), now: self.at(0))
        // The socket took the frame 3 s later (a slow link): 5 s from then.
        let timer = machine.frameWritten(now: self.at(3))
        #expect(timer.requestTimeout.map { $0 == 1 && $1 == self.at(8) } == true)
    }

    @Test func aRequestQueuedForASlotStartsItsTimeoutOnlyOnceWritten() {
        var machine = self.makeMachine(maxInFlight: 1)
        _ = machine.requestSubmitted(key: 1, pending: "a", timeout: .seconds(5), now: self.at(0))
        _ = machine.requestSubmitted(key: 2, pending: "b", timeout: .seconds(5), now: self.at(0))
        _ = machine.frameWritten(now: self.at(0))
        // Request 2 waits 4 s for the slot, then for the socket; no timer runs meanwhile.
        _ = machine.responseReceived(key: 1, now: self.at(4))
        let timer = machine.frameWritten(now: self.at(6))
        #expect(timer.requestTimeout.map { $0 == 2 && $1 == self.at(11) } == true)
    }

    // MARK: The deadlines the driver's one timer watches

    @Test func theMachineListsRequestsPastTheirDeadlinesEarliestFirst() {
        var machine = self.makeMachine()
        _ = machine.requestSubmitted(key: 1, pending: "a", timeout: .seconds(9), now: self.at(0))
        _ = machine.requestSubmitted(key: 2, pending: "b", timeout: .seconds(3), now: self.at(0))
        _ = machine.requestSubmitted(key: 3, pending: "c", timeout: .seconds(5), now: self.at(0))
        _ = machine.requestSubmitted(key: 4, pending: "d", timeout: nil, now: self.at(0))
        // Not written yet: no deadline runs.
        #expect(machine.earliestRequestDeadline == nil)
        for _ in 1...4 { _ = machine.frameWritten(now: self.at(1)) }
        #expect(machine.earliestRequestDeadline == self.at(4))
        #expect(machine.requestsPastDeadline(now: self.at(3)) == [])
        #expect(machine.requestsPastDeadline(now: self.at(6)) == [2, 3])
        #expect(machine.requestsPastDeadline(now: self.at(100)) == [2, 3, 1])
    }

    @Test func aCompletedOrTimedOutRequestLeavesTheDeadlines() {
        var machine = self.makeMachine()
        _ = machine.requestSubmitted(key: 1, pending: "a", timeout: .seconds(2), now: self.at(0))
        _ = machine.requestSubmitted(key: 2, pending: "b", timeout: .seconds(4), now: self.at(0))
        _ = machine.frameWritten(now: self.at(0))
        _ = machine.frameWritten(now: self.at(0))
        _ = machine.responseReceived(key: 1, now: self.at(1))
        #expect(machine.earliestRequestDeadline == self.at(4))
        #expect(machine.requestsPastDeadline(now: self.at(5)) == [2])
        _ = machine.requestTimedOut(key: 2, now: self.at(5))
        #expect(machine.earliestRequestDeadline == nil)
        #expect(machine.requestsPastDeadline(now: self.at(5)) == [])
        // A later request with a used key has its own deadline.
        _ = machine.requestSubmitted(key: 2, pending: "c", timeout: .seconds(1), now: self.at(6))
        _ = machine.frameWritten(now: self.at(6))
        #expect(machine.earliestRequestDeadline == self.at(7))
    }

    @Test func oneCoalescedWriteStartsTheTimerOfEveryRequestInIt() {
        var machine = self.makeMachine()
        for key in 1...3 { _ = machine.requestSubmitted(key: key, pending: "r\(key)", timeout: .seconds(5), now: self.at(0)) }
        let timers = (1...3).compactMap { _ in machine.frameWritten(now: self.at(1)).requestTimeout }
        #expect(timers.map(\.0) == [1, 2, 3] && timers.allSatisfy { $0.1 == self.at(6) })
    }

    @Test func sendsAndRequestsWithoutATimeoutStartNoTimer() {
        var machine = self.makeMachine()
        _ = machine.sendSubmitted(pending: "s", now: self.at(0))
        _ = machine.requestSubmitted(key: 1, pending: "a", timeout: nil, now: self.at(0))
        #expect(machine.frameWritten(now: self.at(1)).isNone && machine.frameWritten(now: self.at(1)).isNone)
    }

    /// A request cancelled before its frame was written, and a new one with the same key: the old frame's write
    /// does not start the new request's timer.
    @Test func theWriteOfACancelledRequestDoesNotStartTheTimerOfOneReusingItsKey() {
        var machine = self.makeMachine()
        _ = machine.requestSubmitted(key: 1, pending: "old", timeout: .seconds(5), now: self.at(0))
        _ = machine.requestCancelled(key: 1, now: self.at(0))
        _ = machine.requestSubmitted(key: 1, pending: "new", timeout: .seconds(5), now: self.at(0))
        #expect(machine.frameWritten(now: self.at(1)).isNone)
    }

    @Test func aQueuedRequestCannotTimeOut() {
        var machine = self.makeMachine(maxInFlight: 1)
        _ = machine.requestSubmitted(key: 1, pending: "a", timeout: .seconds(5), now: self.at(0))
        _ = machine.requestSubmitted(key: 2, pending: "b", timeout: .seconds(5), now: self.at(0))
        #expect(machine.requestTimedOut(key: 2, now: self.at(5)).0.isNone)
    }

    // MARK: The queue timeout

    @Test func queuedItemsExpireUnwrittenAfterTheQueueTimeout() {
        var machine = self.makeMachine(maxInFlight: 1, queueTimeout: .seconds(10))
        _ = machine.requestSubmitted(key: 1, pending: "a", timeout: .seconds(60), now: self.at(0))
        _ = machine.frameWritten(now: self.at(0))
        _ = machine.requestSubmitted(key: 2, pending: "b", now: self.at(1))
        _ = machine.sendSubmitted(pending: "s", now: self.at(2))
        _ = machine.requestSubmitted(key: 3, pending: "c", now: self.at(4))
        // The next check is due when the oldest queued item expires.
        guard case .expire(let expired, let next) = machine.idleCheck(now: self.at(12)) else { Issue.record(); return }
        #expect(expired.map(\.pending) == ["b", "s"] && next == self.at(14))
    }

    @Test func theIdleCheckIsDueWhenTheOldestQueuedItemExpires() {
        var machine = self.makeMachine(maxInFlight: 1, queueTimeout: .seconds(10))
        _ = machine.requestSubmitted(key: 1, pending: "a", now: self.at(0))
        _ = machine.frameWritten(now: self.at(0))
        _ = machine.requestSubmitted(key: 2, pending: "b", now: self.at(1))
        guard case .scheduleIdleCheck(let deadline) = machine.nextIdleCheck(now: self.at(2)) else { Issue.record(); return }
        #expect(deadline == self.at(11))
    }

    /// With nothing waiting the check still comes once a period, so an item that starts waiting later is seen in time.
    @Test func theIdleCheckComesOnceAQueueTimeoutEvenWhenNothingWaits() {
        let machine = self.makeMachine(queueTimeout: .seconds(10))
        guard case .scheduleIdleCheck(let deadline) = machine.nextIdleCheck(now: self.at(0)) else { Issue.record(); return }
        #expect(deadline == self.at(10))
    }

    @Test func aSocketThatTakesNoFrameForTheQueueTimeoutIsClosedAsUnresponsive() {
        var machine = self.makeMachine(queueTimeout: .seconds(10))
        _ = machine.requestSubmitted(key: 1, pending: "a", timeout: .seconds(5), now: self.at(0))
        #expect(machine.idleCheck(now: self.at(10)).closeCode == .unresponsive)
    }

    /// The socket takes frames slowly but steadily: the frames behind wait longer than the queue timeout in all,
    /// yet the connection is kept.
    @Test func writeProgressKeepsASlowSocketOpen() {
        var machine = self.makeMachine(queueTimeout: .seconds(10))
        _ = machine.requestSubmitted(key: 1, pending: "a", now: self.at(0))
        _ = machine.requestSubmitted(key: 2, pending: "b", now: self.at(0))
        _ = machine.frameWritten(now: self.at(8))
        guard case .scheduleIdleCheck(let deadline) = machine.idleCheck(now: self.at(12)) else { Issue.record(); return }
        #expect(deadline == self.at(18))
    }

    @Test func aConnectionClosingAsUnresponsiveRefusesNewRequestsUnwritten() {
        var machine = self.makeMachine(queueTimeout: .seconds(10))
        _ = machine.requestSubmitted(key: 1, pending: "a", now: self.at(0))
        _ = machine.idleCheck(now: self.at(10))
        guard case .reject(_, let error) = machine.requestSubmitted(key: 2, pending: "b", now: self.at(10)) else { Issue.record(); return }
        #expect(error.code == .notConnected && !error.mayHaveBeenDelivered)
    }

    // MARK: Consecutive timeouts

    /// `inFlight` requests written, then the first `count` timed out in a row, none answered; with the last
    /// timeout's second action.
    func machineAfterTimeouts(_ count: Int, recycleAfter limit: Int? = 3, inFlight: Int = 4) -> (Machine, Machine.Action) {
        var machine = self.makeMachine(maxInFlight: inFlight, recycleAfterTimeouts: limit)
        for key in 1...inFlight {
            _ = machine.requestSubmitted(key: key, pending: "r\(key)", timeout: .seconds(1), now: self.at(0))
            _ = machine.frameWritten(now: self.at(0))
        }
        var last = Machine.Action.none
        for key in 1...count { last = machine.requestTimedOut(key: key, now: self.at(1)).1 }
        return (machine, last)
    }

    @Test func timeoutsBelowTheLimitKeepTheConnection() {
        let (_, second) = self.machineAfterTimeouts(2)
        #expect(second.closeCode == nil)
    }

    @Test func theLimitOfConsecutiveTimeoutsClosesTheConnectionAsUnresponsive() {
        let (_, third) = self.machineAfterTimeouts(3)
        #expect(third.closeCode == .unresponsive)
    }

    @Test func requestsInFlightWhenRecycledAreHandedBackAsWritten() {
        var (machine, _) = self.machineAfterTimeouts(3)
        #expect(machine.closed().inFlight == ["r4"])
    }

    @Test func withoutALimitTimeoutsNeverCloseTheConnection() {
        let (_, last) = self.machineAfterTimeouts(4, recycleAfter: nil)
        #expect(last.closeCode == nil)
    }

    @Test func aResponseResetsTheTimeoutCount() {
        var (machine, _) = self.machineAfterTimeouts(2)
        _ = machine.responseReceived(key: 3, now: self.at(1))
        #expect(machine.consecutiveTimeouts == 0)
    }

    /// A late response shows the peer answers, only slowly: a new connection would not help.
    @Test func aLateResponseToATimedOutRequestAlsoResetsTheCount() {
        var (machine, _) = self.machineAfterTimeouts(2)
        _ = machine.responseReceived(key: 1, now: self.at(2))
        #expect(machine.consecutiveTimeouts == 0)
    }

    /// Heartbeats answered while requests are not: the request path is black-holed behind a live socket.
    @Test func heartbeatRepliesDoNotResetTheTimeoutCount() {
        var (machine, _) = self.machineAfterTimeouts(2)
        _ = machine.heartbeatReplyReceived(now: self.at(1))
        #expect(machine.requestTimedOut(key: 3, now: self.at(1)).1.closeCode == .unresponsive)
    }

    @Test func requestsExpiredUnwrittenDoNotCount() {
        var machine = self.makeMachine(maxInFlight: 1, queueTimeout: .seconds(10), recycleAfterTimeouts: 1)
        _ = machine.requestSubmitted(key: 1, pending: "a", now: self.at(0))
        _ = machine.frameWritten(now: self.at(0))
        _ = machine.requestSubmitted(key: 2, pending: "b", now: self.at(0))
        _ = machine.idleCheck(now: self.at(10))
        #expect(machine.consecutiveTimeouts == 0)
    }

    @Test func cancellationsDoNotCount() {
        var machine = self.makeMachine(recycleAfterTimeouts: 1)
        _ = machine.requestSubmitted(key: 1, pending: "a", timeout: .seconds(1), now: self.at(0))
        _ = machine.frameWritten(now: self.at(0))
        _ = machine.requestCancelled(key: 1, now: self.at(0))
        #expect(machine.consecutiveTimeouts == 0)
    }
}
