import Testing

@testable import InLongTransport

/// The pure admission logic of inbound requests: connections are strings, requests numbers, workers numbers.
@Suite struct HandlerPoolStateMachineTests {
    typealias Machine = HandlerPoolStateMachine<String, Int, Int>

    /// The effects in a comparable form.
    struct Outcome: Equatable {
        var start: [String] = []
        var exit: [Int] = []
        var resume: [String] = []
        var close: [String] = []
    }

    private func outcome(_ effects: Machine.Effects) -> Outcome {
        Outcome(
            start: ([effects.own].compactMap { $0 } + effects.start).map { "w\($0.worker):\($0.job.connection):\($0.job.request)" },
            exit: effects.exit,
            resume: effects.resumeReading,
            close: effects.close.sorted()
        )
    }

    private func received(_ outcome: Machine.Received) -> String {
        switch outcome {
        case .start(let worker, let job): "start w\(worker):\(job.connection):\(job.request)"
        case .queued: "queued"
        case .pauseReading: "pause"
        case .refused: "refused"
        }
    }

    private func machine(queue: Int, perConnection: Int, workers: Int, connections: [String]) -> Machine {
        var machine = Machine(configuration: .init(queueLimit: queue, perConnectionLimit: perConnection))
        for connection in connections {
            let opened = machine.connectionOpened(connection)
            #expect(opened)
        }
        for worker in 0..<workers { #expect(self.outcome(machine.workerReady(worker, finished: nil)) == Outcome()) }
        return machine
    }

    @Test func requestsGoToIdleWorkersThenTheQueueThenPauseTheConnection() {
        var machine = self.machine(queue: 1, perConnection: 8, workers: 1, connections: ["a"])
        #expect(self.received(machine.requestReceived(1, on: "a")) == "start w0:a:1")
        #expect(self.received(machine.requestReceived(2, on: "a")) == "queued")
        #expect(self.received(machine.requestReceived(3, on: "a")) == "pause")
        #expect(machine.pausedCount == 1)
        // The worker ends request 1 and takes 2 at once; 3 moves into the queue and the connection reads again.
        #expect(self.outcome(machine.workerReady(0, finished: "a")) == Outcome(start: ["w0:a:2"], resume: ["a"]))
        #expect(machine.pausedCount == 0)
        #expect(machine.queuedCount == 1)
        #expect(self.outcome(machine.workerReady(0, finished: "a")) == Outcome(start: ["w0:a:3"]))
        #expect(self.outcome(machine.workerReady(0, finished: "a")) == Outcome())
        #expect(machine.idleWorkerCount == 1)
    }

    /// A draining connection's waiting and parked requests are dropped (it reads again), it takes no new one,
    /// and it is named to close once its last handler ends; other connections are untouched.
    @Test func aDrainingConnectionFinishesWhatRunsAndTakesNothingNew() {
        var machine = self.machine(queue: 1, perConnection: 8, workers: 1, connections: ["a", "b"])
        #expect(self.received(machine.requestReceived(1, on: "a")) == "start w0:a:1")
        #expect(self.received(machine.requestReceived(2, on: "a")) == "queued")
        #expect(self.received(machine.requestReceived(3, on: "a")) == "pause")
        #expect(self.outcome(machine.connectionDraining("a")) == Outcome(resume: ["a"]))
        #expect(machine.queuedCount == 0)
        #expect(machine.pausedCount == 0)
        #expect(self.received(machine.requestReceived(4, on: "a")) == "refused")
        #expect(self.received(machine.requestReceived(5, on: "b")) == "queued")
        #expect(self.outcome(machine.workerReady(0, finished: "a")) == Outcome(start: ["w0:b:5"], close: ["a"]))
    }

    @Test func aDrainingConnectionWithNothingUnderWayClosesAtOnce() {
        var machine = self.machine(queue: 1, perConnection: 8, workers: 1, connections: ["a"])
        #expect(self.outcome(machine.connectionDraining("a")) == Outcome(close: ["a"]))
        #expect(self.outcome(machine.connectionDraining("unknown")) == Outcome())
    }

    @Test func withoutAQueueAParkedRequestStartsStraightFromItsConnection() {
        var machine = self.machine(queue: 0, perConnection: 8, workers: 1, connections: ["a"])
        #expect(self.received(machine.requestReceived(1, on: "a")) == "start w0:a:1")
        #expect(self.received(machine.requestReceived(2, on: "a")) == "pause")
        #expect(self.outcome(machine.workerReady(0, finished: "a")) == Outcome(start: ["w0:a:2"], resume: ["a"]))
    }

    @Test func aConnectionRunsNoMoreThanItsLimitAndOthersGoFirst() {
        var machine = self.machine(queue: 10, perConnection: 1, workers: 2, connections: ["a", "b"])
        #expect(self.received(machine.requestReceived(1, on: "a")) == "start w1:a:1")
        // "a" is at its limit: its next request waits although a worker is idle.
        #expect(self.received(machine.requestReceived(2, on: "a")) == "queued")
        #expect(machine.idleWorkerCount == 1)
        #expect(self.received(machine.requestReceived(10, on: "b")) == "start w0:b:10")
        #expect(self.received(machine.requestReceived(11, on: "b")) == "queued")
        // Ending a's request lets a's next one start on the same worker.
        #expect(self.outcome(machine.workerReady(1, finished: "a")) == Outcome(start: ["w1:a:2"]))
        #expect(self.outcome(machine.workerReady(0, finished: "b")) == Outcome(start: ["w0:b:11"]))
    }

    @Test func waitingConnectionsAreServedInTurn() {
        var machine = self.machine(queue: 10, perConnection: 8, workers: 1, connections: ["a", "b"])
        #expect(self.received(machine.requestReceived(1, on: "a")) == "start w0:a:1")
        for request in 2...4 { #expect(self.received(machine.requestReceived(request, on: "a")) == "queued") }
        #expect(self.received(machine.requestReceived(10, on: "b")) == "queued")
        #expect(self.outcome(machine.workerReady(0, finished: "a")) == Outcome(start: ["w0:a:2"]))
        #expect(self.outcome(machine.workerReady(0, finished: "a")) == Outcome(start: ["w0:b:10"]))
        #expect(self.outcome(machine.workerReady(0, finished: "b")) == Outcome(start: ["w0:a:3"]))
    }

    @Test func pausedConnectionsResumeInTheOrderTheyPaused() {
        var machine = self.machine(queue: 1, perConnection: 8, workers: 1, connections: ["a", "b", "c"])
        #expect(self.received(machine.requestReceived(1, on: "a")) == "start w0:a:1")
        #expect(self.received(machine.requestReceived(2, on: "a")) == "queued")
        #expect(self.received(machine.requestReceived(20, on: "b")) == "pause")
        #expect(self.received(machine.requestReceived(30, on: "c")) == "pause")
        #expect(self.outcome(machine.workerReady(0, finished: "a")) == Outcome(start: ["w0:a:2"], resume: ["b"]))
        #expect(self.outcome(machine.workerReady(0, finished: "a")) == Outcome(start: ["w0:b:20"], resume: ["c"]))
    }

    @Test func aClosedConnectionsWaitingRequestsAreDroppedAndMakeRoom() {
        var machine = self.machine(queue: 1, perConnection: 8, workers: 1, connections: ["a", "b"])
        #expect(self.received(machine.requestReceived(1, on: "a")) == "start w0:a:1")
        #expect(self.received(machine.requestReceived(2, on: "a")) == "queued")
        #expect(self.received(machine.requestReceived(20, on: "b")) == "pause")
        #expect(self.outcome(machine.connectionClosed("a")) == Outcome(resume: ["b"]))
        #expect(self.received(machine.requestReceived(3, on: "a")) == "refused")
        // The request under way on "a" ends; the worker takes b's.
        #expect(self.outcome(machine.workerReady(0, finished: "a")) == Outcome(start: ["w0:b:20"]))
    }

    @Test func stopDropsWhatHasNotStartedAndClosesConnectionsAsTheyFinish() {
        var machine = self.machine(queue: 1, perConnection: 8, workers: 2, connections: ["a", "b", "c"])
        #expect(self.received(machine.requestReceived(1, on: "a")) == "start w1:a:1")
        #expect(self.received(machine.requestReceived(2, on: "b")) == "start w0:b:2")
        #expect(self.received(machine.requestReceived(3, on: "b")) == "queued")
        #expect(self.received(machine.requestReceived(4, on: "a")) == "pause")
        // "c" has nothing under way and closes now; "a" and "b" when their handlers end.
        #expect(self.outcome(machine.stop()) == Outcome(close: ["c"]))
        #expect(self.received(machine.requestReceived(5, on: "c")) == "refused")
        #expect(self.outcome(machine.workerReady(1, finished: "a")) == Outcome(exit: [1], close: ["a"]))
        #expect(self.outcome(machine.workerReady(0, finished: "b")) == Outcome(exit: [0], close: ["b"]))
        let opened = machine.connectionOpened("d")
        #expect(!opened)
    }

    @Test func stopReleasesIdleWorkers() {
        var machine = self.machine(queue: 1, perConnection: 8, workers: 2, connections: [])
        #expect(self.outcome(machine.stop()) == Outcome(exit: [0, 1]))
    }
}
