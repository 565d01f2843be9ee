import Testing

@testable import InLongAgent

/// The agent's state, event by event, with no files: when it caught up, who is resumed, what the statistics
/// count. Seeded schedules drive it in `FileSetSimulationTests`.
@Suite struct AgentStateMachineTests {
    typealias Machine = AgentStateMachine<Int>

    func identity(_ inode: UInt64) -> Checkpoint.FileIdentity {
        .init(device: 1, inode: inode, fingerprint: 1, fingerprintLength: 1024)
    }

    func found(_ path: String, _ inode: UInt64, size: Int64 = 0) -> FileRegistry.Found {
        .init(path: path, device: 1, inode: inode, source: 0, size: size)
    }

    func progress(size: Int64, scanned: Int64, committed: Int64? = nil, unacked: Int = 0) -> Machine.FileProgress {
        .init(size: size, committed: committed ?? scanned, scanned: scanned, unacked: unacked)
    }

    /// Scans once and opens every file found, each at `progress`.
    func scanAndOpen(_ machine: inout Machine, _ files: [FileRegistry.Found], at progress: Machine.FileProgress) -> [Int] {
        let (actions, caughtUp) = machine.scanned(files)
        var resumed = caughtUp
        for case .open(let file, _) in actions {
            resumed += machine.opened(self.identity(file.inode), path: file.path, progress: progress)
        }
        return resumed
    }

    @Test func notCaughtUpBeforeTheFirstScan() {
        var machine = Machine(maxOpenFiles: 10, stallAfter: .seconds(5))
        #expect(!machine.isCaughtUp)
        #expect(machine.waitUntilCaughtUp(id: 1, 1).isEmpty)
        #expect(machine.waiting == 1)
        // A scan that finds nothing: nothing to read.
        #expect(machine.scanned([]).caughtUp == [1])
        #expect(machine.waiting == 0)
    }

    @Test func aFileOpeningHoldsTheWaitersUntilItIsOpenAndRead() {
        var machine = Machine(maxOpenFiles: 10, stallAfter: .seconds(5))
        #expect(machine.waitUntilCaughtUp(id: 7, 7).isEmpty)
        let (actions, caughtUp) = machine.scanned([self.found("/a", 1, size: 100)])
        #expect(actions == [.open(self.found("/a", 1, size: 100), firstScan: true)])
        #expect(caughtUp.isEmpty)
        #expect(machine.opening == 1)
        // Open with 100 bytes to read.
        #expect(machine.opened(self.identity(1), path: "/a", progress: self.progress(size: 100, scanned: 0)).isEmpty)
        // Read, not acked yet.
        #expect(machine.progress(self.identity(1), self.progress(size: 100, scanned: 100, committed: 0, unacked: 100)).isEmpty)
        // Acked: the waiter returns at this event.
        #expect(machine.progress(self.identity(1), self.progress(size: 100, scanned: 100)) == [7])
        #expect(machine.isCaughtUp)
        // A later waiter returns at once.
        #expect(machine.waitUntilCaughtUp(id: 8, 8) == [8])
    }

    @Test func aFileThatCouldNotBeOpenedDoesNotHoldTheWaiters() {
        var machine = Machine(maxOpenFiles: 10, stallAfter: .seconds(5))
        #expect(machine.waitUntilCaughtUp(id: 1, 1).isEmpty)
        #expect(machine.scanned([self.found("/a", 1, size: 10)]).caughtUp.isEmpty)
        #expect(machine.openFailed() == [1])
    }

    @Test func aScanThatSeesAFileGrowMeansNotCaughtUp() {
        var machine = Machine(maxOpenFiles: 10, stallAfter: .seconds(5))
        #expect(self.scanAndOpen(&machine, [self.found("/a", 1, size: 10)], at: self.progress(size: 10, scanned: 10)).isEmpty)
        #expect(machine.isCaughtUp)
        _ = machine.scanned([self.found("/a", 1, size: 50)])
        #expect(!machine.isCaughtUp)
        var statistics = AgentStatistics()
        machine.fill(&statistics)
        #expect(statistics.unreadBytes == 40)
        #expect(statistics.lagBytes == 40)
        // The instance reads the rest.
        #expect(machine.waitUntilCaughtUp(id: 1, 1).isEmpty)
        #expect(machine.progress(self.identity(1), self.progress(size: 50, scanned: 50)) == [1])
    }

    @Test func filesWaitingForASlotMeanNotCaughtUp() {
        var machine = Machine(maxOpenFiles: 1, stallAfter: .seconds(5))
        let files = [self.found("/a", 1, size: 10), self.found("/b", 2, size: 20)]
        _ = self.scanAndOpen(&machine, files, at: self.progress(size: 10, scanned: 10))
        #expect(machine.registry.waiting == 1)
        #expect(machine.othersWaiting)
        #expect(!machine.isCaughtUp)
        var statistics = AgentStatistics()
        machine.fill(&statistics)
        #expect(statistics.filesWaiting == 1)
        #expect(statistics.unreadBytes == 20)
        // The first file is released; the next scan opens the second, and the first, read to its end, waits.
        #expect(machine.waitUntilCaughtUp(id: 1, 1).isEmpty)
        #expect(machine.instanceEnded(self.identity(1), released: true).isEmpty)
        #expect(self.scanAndOpen(&machine, files, at: self.progress(size: 20, scanned: 0)).isEmpty)
        #expect(machine.registry.waiting == 1)
        // A file with nothing new waiting for its turn does not hold the waiters.
        #expect(machine.progress(self.identity(2), self.progress(size: 20, scanned: 20)) == [1])
        // It grows while it waits: the agent is behind again.
        _ = machine.scanned([self.found("/a", 1, size: 15), self.found("/b", 2, size: 20)])
        #expect(!machine.isCaughtUp)
    }

    @Test func aStoppedFileKeepsItsUnackedReadsInTheLag() {
        var machine = Machine(maxOpenFiles: 10, stallAfter: .seconds(5))
        _ = self.scanAndOpen(&machine, [self.found("/a", 1, size: 100)], at: self.progress(size: 100, scanned: 0))
        _ = machine.progress(self.identity(1), self.progress(size: 100, scanned: 100, committed: 40, unacked: 60))
        #expect(machine.instanceEnded(self.identity(1), released: false).isEmpty)
        var statistics = AgentStatistics()
        machine.fill(&statistics)
        #expect(statistics.openFiles == 0)
        #expect(statistics.lagBytes == 60)
        #expect(!machine.isCaughtUp)
    }

    @Test func theEndOfTheRunAndACancellationResumeWaiters() {
        var machine = Machine(maxOpenFiles: 10, stallAfter: .seconds(5))
        #expect(machine.waitUntilCaughtUp(id: 1, 1).isEmpty)
        #expect(machine.waitUntilCaughtUp(id: 2, 2).isEmpty)
        // Cancelled before it queued: back at once.
        #expect(machine.waitUntilCaughtUp(id: 3, 3, cancelled: true) == [3])
        #expect(machine.cancelWait(id: 1) == [1])
        #expect(machine.cancelWait(id: 1).isEmpty)
        #expect(machine.runEnded() == [2])
        #expect(machine.waitUntilCaughtUp(id: 4, 4) == [4])
        #expect(machine.waiting == 0)
    }

    @Test func aRenamedFilesNewPathIsHandedToItsInstanceOnce() {
        var machine = Machine(maxOpenFiles: 10, stallAfter: .seconds(5))
        _ = self.scanAndOpen(&machine, [self.found("/a", 1)], at: self.progress(size: 0, scanned: 0))
        #expect(machine.scanned([self.found("/a.1", 1)]).actions == [.moved(path: "/a.1")])
        let key = FileRegistry.Key(device: 1, inode: 1)
        #expect(machine.takeMovedPath(key) == "/a.1")
        #expect(machine.takeMovedPath(key) == nil)
        #expect(machine.checkpoint(force: false)?.files.map(\.path) == ["/a.1"])
    }

    @Test func theCheckpointErrorIsKeptUntilAWriteSucceeds() {
        var machine = Machine(maxOpenFiles: 10, stallAfter: .seconds(5))
        machine.checkpointWritten(error: "disk full")
        var statistics = AgentStatistics()
        machine.fill(&statistics)
        #expect(statistics.checkpointError == "disk full")
        machine.checkpointWritten(error: nil)
        statistics = AgentStatistics()
        machine.fill(&statistics)
        #expect(statistics.checkpointError == nil)
    }

    @Test func aGroupWhoseLinesWaitAndNoneEndsStalls() {
        var machine = Machine(maxOpenFiles: 10, stallAfter: .seconds(5))
        let start = ContinuousClock.now
        var group = AgentGroupStatistics(group: "g")
        group.linesRead = 10
        #expect(machine.observe(groups: [group], now: start).isEmpty)
        #expect(machine.observe(groups: [group], now: start + .seconds(5)) == [.stalled(group: "g", since: start)])
        #expect(machine.stalled == ["g": start])
        group.linesEnded = 10
        #expect(machine.observe(groups: [group], now: start + .seconds(6)) == [.moving(group: "g")])
        #expect(machine.stalled.isEmpty)
    }
}
