import Foundation
@testable import InLongAgent
import InLongWire
import NIOCore
import Synchronization
import Testing

/// A directory in memory: paths name inodes; an inode stays readable through a tail that holds it after its path
/// is gone, and its number is given to a new file once nothing names or holds it (inode reuse).
final class SimulatedDirectory {
    final class Inode {
        let number: UInt64
        let file = ScriptedFile()
        /// The file version it holds (one per created file: a number is reused only after the old file is gone).
        let version: Int

        init(number: UInt64, version: Int) {
            self.number = number
            self.version = version
        }
    }

    private(set) var paths: [String: Inode] = [:]
    private var freed: [UInt64] = []
    private var nextNumber: UInt64 = 1
    private var inodes: [UInt64: Inode] = [:]

    func create(_ path: String, version: Int) -> Inode {
        let number = self.freed.popLast() ?? { defer { self.nextNumber += 1 }; return self.nextNumber }()
        let inode = Inode(number: number, version: version)
        self.inodes[number] = inode
        self.paths[path] = inode
        return inode
    }

    func unlink(_ path: String) {
        self.paths[path] = nil
    }

    /// `rename(2)`: replaces what `to` named.
    func rename(_ from: String, to: String) {
        guard let inode = self.paths.removeValue(forKey: from) else { return }
        self.paths[to] = inode
    }

    /// Frees the numbers of inodes no path names and no open file holds, newest first (so the next file takes one).
    func collect(holding: Set<UInt64>) {
        let named = Set(self.paths.values.map(\.number))
        for number in self.inodes.keys.sorted() where !named.contains(number) && !holding.contains(number) {
            self.inodes[number] = nil
            self.freed.append(number)
        }
    }

    func identity(of inode: Inode) -> Checkpoint.FileIdentity {
        try! Checkpoint.FileIdentity.of(file: inode.file, device: 1, inode: inode.number)
    }
}

/// The agent's file set under seeded random schedules: several logs appended to (with half-written lines),
/// rotated by rename (the rotated name watched or not), deleted and created again (inode numbers reused), a slot
/// limit that makes files wait, acks out of order, checkpoints written at any moment and crashes at any step that
/// restart from the last durable one, and callers waiting for the agent to catch up (`inlong agent --once`).
/// Runs the agent's own rules: ``AgentStateMachine`` and its ``FileRegistry`` (scans, slots, renames, where a file
/// starts, when the agent caught up), ``FileTail`` and ``FileSource`` (when a file is released), on a simulated
/// clock.
final class FileSetSimulation {
    struct Version {
        let log: String
        let inode: SimulatedDirectory.Inode
        var lines: [String] = []
        /// Offset of each line's end (its newline included).
        var ends: [Int64] = []
        var acked: [Bool] = []
        /// Crash count at each line's last delivery.
        var deliveredIn: [Int?] = []
        var partial: [UInt8]?
        /// Lines may be lost: the file became unreachable (renamed away from the paths watched, or deleted) while
        /// no tail held it, or the agent crashed while it was unreachable.
        var mayLose = false

        /// Whether a complete line (not a half-written last one) is not acked yet.
        var hasUnackedLines: Bool {
            self.acked.prefix(self.lines.count - (self.partial == nil ? 0 : 1)).contains(false)
        }

        /// The end of the longest prefix of lines all acked.
        var ackedPrefixEnd: Int64 {
            var end: Int64 = 0
            for (index, acked) in self.acked.enumerated() {
                guard acked else { break }
                end = self.ends[index]
            }
            return end
        }
    }

    struct Open {
        let source: FileSource
        let version: Int
        var waitingAcks: [(ticket: OffsetTracker.Ticket, lines: [Int], bytes: Int)] = []
    }

    static let logs = ["a", "b", "c"]
    private static let filler = Array(String(repeating: "0123456789", count: 20).utf8)

    let seed: UInt64
    let steps: Int
    var random: SplitMix64
    /// Draws for open failures and waiters, apart from `random`, so that the writers' and the agent's schedule
    /// of a seed stays what it was before they were simulated (regression seeds replay the same schedule).
    var sideRandom: SplitMix64
    var trace = EventTrace(keep: Int(ProcessInfo.processInfo.environment["INLONG_SIMULATION_TRACE"] ?? "") ?? 30)
    var step = 0
    let start = ContinuousClock.now
    var now: ContinuousClock.Instant
    let directory = SimulatedDirectory()
    /// Whether the rotated name (`x.log.1`) is watched too, by a second source.
    let watchRotated: Bool
    let maxOpenFiles: Int
    var versions: [Version] = []
    /// The agent's state; a waiter is a number.
    var agent: AgentStateMachine<Int>
    var durable = Checkpoint()
    var open: [UInt64: Open] = [:]
    /// Callers waiting for the agent to catch up, and the next one's number.
    var waiters: Set<Int> = []
    var nextWaiter = 0
    /// The size of each open file as the agent last learned it: from its instance, or larger from a scan since.
    var seenSize: [UInt64: Int64] = [:]
    var crashes = 0
    /// The last durable offset of each version, which must never move back.
    var durableOffsets: [Int: Int64] = [:]
    /// The version each identity seen names.
    var versionOf: [Checkpoint.FileIdentity: Int] = [:]

    /// The sources' `closeInactive`, when on: files not grown for this long are closed and opened again once they
    /// grow; drawn from `closeRandom` (apart, so that the schedules of seeds without it stay what they were).
    let closeInactive: Duration?
    var closeRandom: SplitMix64
    /// Versions closed as inactive, with how far they were read and committed then.
    var closedAt: [Int: (read: Int64, committed: Int64)] = [:]
    /// Files closed as inactive, those written to as they were closed, and those opened again after a close.
    var closes = (inactive: 0, writtenAtClose: 0, reopened: 0)

    init(seed: UInt64, steps: Int, closeInactive: Bool = false) {
        self.seed = seed
        self.steps = steps
        self.random = SplitMix64(seed: seed)
        self.closeRandom = SplitMix64(seed: seed ^ 0x5851_F42D_4C95_7F2D)
        self.closeInactive = closeInactive ? .milliseconds(Int.random(in: 100...3000, using: &self.closeRandom)) : nil
        self.sideRandom = SplitMix64(seed: seed ^ 0x9E37_79B9_7F4A_7C15)
        self.now = self.start
        self.watchRotated = Int.random(in: 0..<2, using: &self.random) == 0
        self.maxOpenFiles = Int.random(in: 1...4, using: &self.random)
        self.agent = AgentStateMachine(maxOpenFiles: self.maxOpenFiles, stallAfter: .seconds(5))
    }

    func violation(_ invariant: String, _ detail: String) -> SimulationViolation {
        SimulationViolation(
            simulation: "file set",
            seed: self.seed,
            step: self.step,
            invariant: invariant,
            detail: detail,
            trace: self.trace.events
        )
    }

    // MARK: The writers

    func create(_ log: String) {
        let version = self.versions.count
        let inode = self.directory.create("\(log).log", version: version)
        self.versions.append(Version(log: log, inode: inode))
        self.trace.record("create \(log).log v\(version) inode \(inode.number)")
    }

    func append(_ log: String, lines count: Int) {
        guard let inode = self.directory.paths["\(log).log"] else { return }
        let v = inode.version
        for _ in 0..<count {
            if let rest = self.versions[v].partial {
                inode.file.bytes += rest
                self.versions[v].partial = nil
                continue
            }
            let index = self.versions[v].lines.count
            let line = "v\(v)-\(index)|" + String(decoding: Self.filler.prefix(Int.random(in: 0...200, using: &self.random)), as: UTF8.self)
            var bytes = Array(line.utf8) + [0x0A]
            self.versions[v].lines.append(line)
            self.versions[v].ends.append(Int64(inode.file.bytes.count + bytes.count))
            self.versions[v].acked.append(false)
            self.versions[v].deliveredIn.append(nil)
            if Int.random(in: 0..<4, using: &self.random) == 0 {
                let cut = Int.random(in: 0..<bytes.count, using: &self.random)
                self.versions[v].partial = Array(bytes[cut...])
                bytes = Array(bytes[..<cut])
            }
            inode.file.bytes += bytes
        }
        self.trace.record("append \(count) to \(log).log v\(v) (\(inode.file.bytes.count) bytes)")
    }

    /// logrotate's rename: the writer finishes its line, `x.log` becomes `x.log.1` (the old `x.log.1` is gone) and
    /// the writer opens a new `x.log` (now or a little later).
    func rotate(_ log: String) {
        guard let inode = self.directory.paths["\(log).log"] else { return }
        self.finishLine(of: inode.version)
        self.directory.rename("\(log).log", to: "\(log).log.1")
        self.trace.record("rotate \(log).log v\(inode.version) to \(log).log.1")
        if Int.random(in: 0..<2, using: &self.random) == 0 { self.create(log) }
    }

    func delete(_ log: String) {
        guard let inode = self.directory.paths["\(log).log"] else { return }
        self.directory.unlink("\(log).log")
        self.trace.record("delete \(log).log v\(inode.version)")
    }

    func finishLine(of v: Int) {
        guard let rest = self.versions[v].partial else { return }
        self.versions[v].inode.file.bytes += rest
        self.versions[v].partial = nil
    }

    // MARK: The agent

    /// The sources: `*.log`, and `*.log.1` when rotated files are watched.
    func found() -> [FileRegistry.Found] {
        self.directory.paths.sorted { $0.key < $1.key }.compactMap { path, inode in
            let source = path.hasSuffix(".log") ? 0 : (self.watchRotated && path.hasSuffix(".log.1") ? 1 : nil)
            guard let source else { return nil }
            return FileRegistry.Found(path: path, device: 1, inode: inode.number, source: source, size: Int64(inode.file.bytes.count))
        }
    }

    func scan() throws {
        let found = self.found()
        for file in found where self.open[file.inode] != nil {
            self.seenSize[file.inode] = max(self.seenSize[file.inode] ?? 0, file.size)
        }
        let (actions, caughtUp) = self.agent.scanned(found)
        self.trace.record("scan: \(actions.count) actions, \(self.agent.registry.waiting) waiting")
        try self.resumed(caughtUp, after: "a scan")
        for action in actions {
            switch action {
            case .moved(let path):
                self.trace.record("  moved to \(path)")
            case .open(let found, let firstScan):
                // Gone since the scan (the agent's open fails): a later scan finds what is there then.
                guard let inode = self.directory.paths[found.path], Int.random(in: 0..<20, using: &self.sideRandom) != 0 else {
                    self.trace.record("  cannot open \(found.path)")
                    try self.resumed(self.agent.openFailed(), after: "an open failed")
                    continue
                }
                let identity = self.directory.identity(of: inode)
                let start = self.agent.startOffset(for: identity, firstScan: firstScan, startAtEnd: false) { entry in
                    entry.matches(identity, file: inode.file)
                }
                let tail = try FileTail(
                    file: inode.file,
                    identity: identity,
                    path: found.path,
                    startingAt: start,
                    maxLineLength: 4096,
                    overlong: .truncate
                )
                let v = inode.version
                guard tail.committedOffset <= self.versions[v].ackedPrefixEnd else {
                    throw self.violation(
                        "a file starts after its lowest unacked line",
                        "v\(v) opened at \(tail.committedOffset), acked to \(self.versions[v].ackedPrefixEnd)"
                    )
                }
                self.versionOf[identity] = v
                let key = FileRegistry.Key(device: 1, inode: inode.number)
                if let closed = self.closedAt.removeValue(forKey: v) {
                    let size = Int64(inode.file.bytes.count)
                    if size <= closed.read, size >= closed.committed {
                        throw self.violation("a file closed as inactive is opened again only once it grew", "v\(v) read to \(closed.read), size \(size)")
                    }
                    self.closes.reopened += 1
                }
                let source = FileSource(
                    tail: tail,
                    releaseAfter: .seconds(1),
                    closeInactive: self.closeInactive,
                    now: self.now,
                    othersWaiting: { [unowned self] in self.agent.othersWaiting },
                    movedPath: { [unowned self] in self.agent.takeMovedPath(key) },
                    lookAtPath: { [unowned self] tail in
                        let found = self.directory.paths[tail.path].map { ($0.file as any TailedFile, self.directory.identity(of: $0)) }
                        return tail.pathState(finding: found)
                    }
                )
                let open = Open(source: source, version: v)
                self.open[inode.number] = open
                self.seenSize[inode.number] = tail.size
                self.trace.record("  open \(found.path) v\(v) inode \(inode.number) at \(tail.committedOffset) (\(start))")
                try self.resumed(self.agent.opened(identity, path: found.path, progress: self.report(open)), after: "an open")
            }
        }
    }

    /// What an instance reports of its file.
    func report(_ open: Open) -> AgentStateMachine<Int>.FileProgress {
        let tail = open.source.tail
        return .init(
            size: tail.size,
            committed: tail.committedOffset,
            scanned: tail.scannedOffset,
            unacked: open.waitingAcks.reduce(0) { $0 + $1.bytes },
            emptyLines: tail.emptyLines,
            overlongLines: tail.overlongLines,
            truncations: tail.truncations
        )
    }

    /// Records a tail's committed offset and identity, as the agent does after every read and ack.
    func progress(_ open: Open) throws {
        let tail = open.source.tail
        self.versionOf[tail.identity] = open.version
        self.seenSize[tail.identity.inode] = tail.size
        try self.resumed(self.agent.progress(tail.identity, self.report(open)), after: "a progress report")
        guard tail.committedOffset <= self.versions[open.version].ackedPrefixEnd else {
            throw self.violation(
                "the committed offset never passes an unacked line",
                "v\(open.version) committed \(tail.committedOffset), acked to \(self.versions[open.version].ackedPrefixEnd)"
            )
        }
    }

    /// Reads what a tail has: returns false when it had nothing.
    @discardableResult
    func read(_ number: UInt64, maxBytes: Int) throws -> Bool {
        guard var open = self.open[number] else { return false }
        guard let read = try open.source.tail.readLines(maxBytes: maxBytes, chunkSize: 512) else {
            // The agent's instance reports after every look, one that found nothing included.
            try self.progress(open)
            return false
        }
        var indices: [Int] = []
        for line in read.lines {
            let text = String(buffer: line)
            guard let bar = text.firstIndex(of: "|"), text.hasPrefix("v"),
                case let parts = text[text.index(after: text.startIndex)..<bar].split(separator: "-"), parts.count == 2,
                let v = Int(parts[0]), let index = Int(parts[1]), v < self.versions.count,
                index < self.versions[v].lines.count, self.versions[v].lines[index] == text
            else {
                throw self.violation("only lines written are read", "\(text.prefix(60).debugDescription)")
            }
            guard v == open.version else {
                throw self.violation("a file's lines come from that file", "v\(v)-\(index) read from v\(open.version)")
            }
            if self.versions[v].deliveredIn[index] == self.crashes {
                throw self.violation("no line is read twice without a crash between", "v\(v)-\(index)")
            }
            self.versions[v].deliveredIn[index] = self.crashes
            indices.append(index)
        }
        open.waitingAcks.append((read.ticket, indices, read.bytes))
        self.open[number] = open
        self.trace.record("read inode \(number) v\(open.version): \(indices.first.map { "\($0)" } ?? "-")...\(indices.last.map { "\($0)" } ?? "-") (\(read.bytes) bytes)")
        try self.progress(open)
        return true
    }

    func ack(_ number: UInt64, at position: Int) throws {
        guard var open = self.open[number], position < open.waitingAcks.count else { return }
        let (ticket, indices, _) = open.waitingAcks.remove(at: position)
        for index in indices { self.versions[open.version].acked[index] = true }
        open.source.tail.ack(ticket)
        self.open[number] = open
        self.trace.record("ack inode \(number) v\(open.version): \(indices.count) lines")
        try self.progress(open)
    }

    /// An instance with nothing on its way whose source has nothing more: released once the source says so.
    func idle(_ number: UInt64) throws {
        guard let open = self.open[number], open.waitingAcks.isEmpty else { return }
        if try self.read(number, maxBytes: 4096) { return }
        guard open.source.isExhausted(now: self.now) else { return }
        let tail = open.source.tail
        self.open[number] = nil
        self.seenSize[number] = nil
        var inactiveAt: Int64?
        if open.source.closedInactive {
            inactiveAt = tail.scannedOffset
            guard tail.committedOffset == self.versions[open.version].ackedPrefixEnd else {
                throw self.violation(
                    "a file is closed as inactive at its acked prefix",
                    "v\(open.version) committed \(tail.committedOffset), acked to \(self.versions[open.version].ackedPrefixEnd)"
                )
            }
            // The writer appends right as the file is closed: after its last read, before the agent records the close.
            let log = self.versions[open.version].log
            if self.directory.paths["\(log).log"] === self.versions[open.version].inode, Int.random(in: 0..<2, using: &self.closeRandom) == 0 {
                self.append(log, lines: Int.random(in: 1...3, using: &self.closeRandom))
                self.closes.writtenAtClose += 1
            }
            self.closes.inactive += 1
            self.closedAt[open.version] = (tail.scannedOffset, tail.committedOffset)
        }
        try self.resumed(self.agent.instanceEnded(tail.identity, released: true, inactiveAt: inactiveAt), after: "a release")
        self.trace.record("\(inactiveAt == nil ? "release" : "close inactive") \(tail.path) v\(open.version) at \(tail.committedOffset)")
        let version = self.versions[open.version]
        if !self.isReachable(open.version), version.hasUnackedLines {
            throw self.violation("a file is released only when every line it had was acked", "v\(open.version) acked to \(version.ackedPrefixEnd)")
        }
    }

    func writeCheckpoint() throws {
        guard let checkpoint = self.agent.checkpoint(force: false) else { return }
        let data = try JSONEncoder().encode(checkpoint)
        self.durable = try JSONDecoder().decode(Checkpoint.self, from: data)
        for entry in self.durable.files {
            guard let v = self.versionOf[entry.identity] else {
                if entry.offset == 0 { continue }
                throw self.violation("the checkpoint names only files read", "\(entry.path) at \(entry.offset)")
            }
            guard entry.offset <= self.versions[v].ackedPrefixEnd else {
                throw self.violation(
                    "the checkpoint never passes an unacked line",
                    "v\(v) at \(entry.offset), acked to \(self.versions[v].ackedPrefixEnd)"
                )
            }
            guard entry.offset >= self.durableOffsets[v, default: 0] else {
                throw self.violation("a checkpoint never moves back", "v\(v) from \(self.durableOffsets[v]!) to \(entry.offset)")
            }
            self.durableOffsets[v] = entry.offset
        }
        self.trace.record("checkpoint: \(self.durable.files.count) files")
    }

    func crash() throws {
        self.crashes += 1
        self.open = [:]
        self.closedAt = [:]
        self.seenSize = [:]
        // The run ended: whoever waits returns (the command that waited ends with it).
        try self.resumed(self.agent.runEnded(), after: "the run ended", caughtUp: false)
        self.agent = AgentStateMachine(maxOpenFiles: self.maxOpenFiles, stallAfter: .seconds(5))
        self.agent.started(checkpoint: self.durable)
        self.trace.record("crash \(self.crashes): restart from \(self.durable.files.map { "\($0.path)@\($0.offset)" })")
    }

    // MARK: Invariants

    /// Whether the agent can still read a version: a watched path names it, or a tail holds it.
    func isReachable(_ v: Int) -> Bool {
        let inode = self.versions[v].inode
        if self.open[inode.number]?.version == v { return true }
        return self.found().contains { self.directory.paths[$0.path] === inode }
    }

    /// After a rename, deletion or crash: versions with unacked lines the agent can no longer reach may lose them.
    func markUnreachable() {
        for v in self.versions.indices where !self.versions[v].mayLose && self.versions[v].hasUnackedLines {
            if !self.isReachable(v) {
                self.versions[v].mayLose = true
                self.trace.record("v\(v) unreachable with unacked lines: they may be lost")
            }
        }
    }

    func checkSlots() throws {
        guard self.open.count <= self.maxOpenFiles, self.agent.registry.openFiles == self.open.count else {
            throw self.violation("at most maxOpenFiles are open", "\(self.open.count) tails, registry \(self.agent.registry.openFiles), limit \(self.maxOpenFiles)")
        }
    }

    // MARK: Catching up

    /// Whether the agent caught up, by the simulation's own account: scanned since the (re)start, no file waiting for
    /// a slot with bytes past its checkpoint (the registry's count), every open file read as far as the agent last saw it reach, with no read waiting for its ack.
    var caughtUp: Bool {
        self.agent.registry.scans > 0 && self.agent.registry.waitingBytes == 0
            && self.open.allSatisfy { $0.value.waitingAcks.isEmpty && $0.value.source.tail.scannedOffset >= self.seenSize[$0.key] ?? 0 }
    }

    /// Waiters an event resumed: each one waited, and only once the agent caught up (or its run ended).
    func resumed(_ waiters: [Int], after event: String, caughtUp: Bool = true) throws {
        for waiter in waiters {
            guard self.waiters.remove(waiter) != nil else {
                throw self.violation("a waiter is resumed once", "waiter \(waiter) after \(event)")
            }
            guard !caughtUp || self.caughtUp else {
                throw self.violation("a waiter is resumed only once the agent caught up", "waiter \(waiter) after \(event)")
            }
            self.trace.record("  waiter \(waiter) resumed after \(event)")
        }
    }

    func wait() throws {
        let id = self.nextWaiter
        self.nextWaiter += 1
        self.waiters.insert(id)
        self.trace.record("waiter \(id) waits")
        try self.resumed(self.agent.waitUntilCaughtUp(id: id, id), after: "it came")
    }

    func cancelWait() throws {
        guard let id = self.waiters.sorted().randomElement(using: &self.sideRandom) else { return }
        let removed = self.agent.cancelWait(id: id)
        guard removed == [id] else { throw self.violation("a cancelled waiter leaves", "waiter \(id): \(removed)") }
        self.waiters.remove(id)
        self.trace.record("waiter \(id) cancelled")
    }

    /// No waiter is left waiting while the agent is caught up: every event that could catch it up looked.
    func checkWaiters() throws {
        guard self.agent.waiting == self.waiters.count else {
            throw self.violation("the agent knows every waiter", "\(self.agent.waiting) waiting, \(self.waiters.count) expected")
        }
        if self.agent.isCaughtUp, !self.waiters.isEmpty {
            throw self.violation("no waiter is left waiting once the agent caught up", "\(self.waiters.sorted())")
        }
        if self.agent.isCaughtUp != self.caughtUp {
            throw self.violation("the agent is caught up exactly when every file is read and acked", "agent \(self.agent.isCaughtUp), simulation \(self.caughtUp)")
        }
    }

    // MARK: Running

    func run() throws {
        for log in Self.logs { self.create(log) }
        while self.step < self.steps {
            self.step += 1
            let log = Self.logs[Int.random(in: 0..<Self.logs.count, using: &self.random)]
            let openNumbers = self.open.keys.sorted()
            let number = openNumbers.isEmpty ? nil : openNumbers[Int.random(in: 0..<openNumbers.count, using: &self.random)]
            switch Int.random(in: 0..<100, using: &self.random) {
            case 0..<25:
                self.append(log, lines: Int.random(in: 1...8, using: &self.random))
            case 25..<29:
                self.rotate(log)
                self.markUnreachable()
            case 29..<31:
                self.delete(log)
                self.markUnreachable()
            case 31..<35:
                if self.directory.paths["\(log).log"] == nil { self.create(log) }
            case 35..<45:
                try self.scan()
            case 45..<62:
                if let number { try self.read(number, maxBytes: Int.random(in: 1...2048, using: &self.random)) }
            case 62..<80:
                if let number, let open = self.open[number], !open.waitingAcks.isEmpty {
                    try self.ack(number, at: Int.random(in: 0..<open.waitingAcks.count, using: &self.random))
                }
            case 80..<88:
                self.now += .milliseconds(Int.random(in: 1...600, using: &self.random))
                if let number { try self.idle(number) }
            case 88..<95:
                try self.writeCheckpoint()
            case 95..<97:
                try self.crash()
                self.markUnreachable()
            default:
                if let inode = self.directory.paths["\(log).log"] { self.finishLine(of: inode.version) }
            }
            self.directory.collect(holding: Set(self.open.keys))
            switch Int.random(in: 0..<30, using: &self.sideRandom) {
            case 0: try self.cancelWait()
            case 1, 2: try self.wait()
            default: break
            }
            try self.checkSlots()
            try self.checkWaiters()
        }
        try self.drain()
    }

    /// No more writes and no crash: every line of every file the agent can still reach ends acked.
    func drain() throws {
        // Writers finish their last lines (a writer writes to its log's path only).
        for log in Self.logs { if let inode = self.directory.paths["\(log).log"] { self.finishLine(of: inode.version) } }
        self.trace.record("drain")
        try self.wait()
        for _ in 0..<400 {
            self.step += 1
            self.now += .milliseconds(300)
            try self.scan()
            for number in self.open.keys.sorted() {
                while try self.read(number, maxBytes: 4096) {}
                while let open = self.open[number], !open.waitingAcks.isEmpty { try self.ack(number, at: 0) }
                try self.idle(number)
            }
            self.directory.collect(holding: Set(self.open.keys))
            try self.checkSlots()
            try self.checkWaiters()
            try self.writeCheckpoint()
            // Files with nothing new may keep waiting for a slot: more files than slots take turns for ever.
            if self.versions.allSatisfy({ $0.mayLose || !$0.hasUnackedLines }) { return }
        }
        let missing = self.versions.indices.filter { !self.versions[$0].mayLose && self.versions[$0].hasUnackedLines }
        throw self.violation(
            "every line of every file the agent can reach is acked once the writers stop",
            missing.map { "v\($0) (\(self.versions[$0].log), acked to \(self.versions[$0].ackedPrefixEnd) of \(self.versions[$0].ends.last ?? 0))" }
                .joined(separator: ", ")
        )
    }
}

@Suite struct FileSetSimulationTests {
    @Test func filesRotatedDeletedAndReusedWithCrashesLoseNoReachableLine() async throws {
        try await SimulationRuns.explore("file set", seeds: 40, offset: 3_000, steps: 600) { seed, steps in
            let simulation = FileSetSimulation(seed: seed, steps: steps)
            try simulation.run()
            return simulation.step
        }
    }

    /// `closeInactive` on: files closed when they do not grow, some written to right as they are closed, and opened
    /// again by a scan once they grew; with the same invariants (no line read twice without a crash between, every
    /// reachable line acked in the end), and a closed file is not opened again before it grew.
    @Test func filesClosedAsInactiveAndOpenedAgainLoseNoLineAndReadNoneTwice() async throws {
        final class Counts: Sendable {
            let closes = Mutex((inactive: 0, writtenAtClose: 0, reopened: 0))
        }
        let counts = Counts()
        try await SimulationRuns.explore("file set, close inactive", seeds: 40, offset: 7_000, steps: 600) { seed, steps in
            let simulation = FileSetSimulation(seed: seed, steps: steps, closeInactive: true)
            try simulation.run()
            counts.closes.withLock {
                $0.inactive += simulation.closes.inactive
                $0.writtenAtClose += simulation.closes.writtenAtClose
                $0.reopened += simulation.closes.reopened
            }
            return simulation.step
        }
        // The schedules did what they are for.
        let counted = counts.closes.withLock { $0 }
        #expect(counted.inactive > 0 && counted.writtenAtClose > 0 && counted.reopened > 0, "\(counted)")
    }

    /// Schedules that failed once. 3000: more files than slots; the files released and found again took their
    /// turns in path order and a file with unread lines after them waited for ever.
    @Test(arguments: [(UInt64(3000), 600)])
    func regressionSeeds(seed: UInt64, steps: Int) throws {
        try FileSetSimulation(seed: seed, steps: steps).run()
    }
}
