import Foundation
import InLongDataProxyReceiver
import InLongTestUtils
import InLongWire
import NIOCore
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#else
import Darwin
#endif

/// `inlong agent` as a process that dies: SIGKILLed at random moments while a writer appends and it sends, and
/// sending to a receiver that is SIGKILLed and restarted. Every line written reaches the receiver at least once;
/// a killed agent sends again only lines past the checkpoint it left.
///
/// The tests run the `inlong` executable that `swift build` and `swift test` put next to the test runner
/// (`.build/debug/inlong`), over loopback sockets. Every wait is bounded; nothing is timed.
@Suite(.serialized, .timeLimit(.minutes(2)))
struct AgentCrashTests {
    /// Requests wait for their acks rather than time out on a loaded machine: a resend after a timeout is a
    /// duplicate the checkpoints do not account for, and this test counts duplicates against them.
    static let patientRequests = ["INLONG_CONNECTION_REQUEST_TIMEOUT": "120"]

    /// Five rounds of: start the agent, wait until it delivered something (and, every other round, until it wrote a
    /// checkpoint: the checkpoint is written every second, so a run killed sooner resends everything its
    /// predecessor had not committed), let it run 200–800 ms more while the writer appends, SIGKILL it. Then the
    /// writer stops and `inlong agent --once` catches up.
    ///
    /// Duplicates: run `r` starts at the offsets of the checkpoint the previous run left (`S_r`, 0 for the first)
    /// and can only send lines at or past them and written before it died (`W_r`); the last run sends what is past
    /// the last checkpoint. So line `i` arrives at least once and at most once per run whose window
    /// `[S_r, W_r)` holds it: duplicates come only from what was read past the checkpoint on disk (acked since the
    /// last checkpoint write, or unacked). The test checks that per line, and that every checkpoint lies on a line
    /// boundary and never moves back.
    @Test func aSIGKILLedAgentLosesNoLineAndResendsOnlyPastItsCheckpoint() async throws {
        let inlong = try inlongExecutable()
        try await withTemporaryDirectory { directory in
            var random = SplitMix64(seed: UInt64.random(in: 0...UInt64.max))
            let seed = random.seed
            let logs = directory.appendingPathComponent("logs")
            let state = directory.appendingPathComponent("state")
            try FileManager.default.createDirectory(at: logs, withIntermediateDirectories: true)
            let writer = try LineWriter(directory: logs, files: 2, seed: random.next())
            try await withReceiver { receiver in
                let port = try await receiver.port()
                let arguments = [
                    "agent", "--path", logs.path + "/*.log", "--group", "g", "--stream", "s",
                    "--proxy", "127.0.0.1:\(port)", "--state-dir", state.path,
                ]
                var windows: [(start: [Int: Int64], written: [Int: Int])] = []
                var start: [Int: Int64] = [:]
                var previous: [Int: Int64] = [:]
                let writing = Task { await writer.run() }
                defer { writing.cancel() }
                for round in 0..<5 {
                    // A file appearing while the agent was down is found by the next run.
                    if round == 2 { try writer.addFile() }
                    let before = receiver.memorySink.recordCount
                    let agent = try ChildProcess(inlong, arguments, environment: Self.patientRequests, logs: directory, name: "agent-\(round)")
                    let delivering = await eventually { receiver.memorySink.recordCount > before || !agent.isRunning }
                    try #require(
                        delivering && agent.isRunning,
                        "round \(round): the agent delivered nothing in 60 s (seed \(seed))\n\(agent.output())"
                    )
                    if round.isMultiple(of: 2) {
                        // Killed after it committed something, so that its restart starts past the beginning.
                        let committed = await eventually {
                            let offsets = (try? readCheckpoint(state)) ?? [:]
                            return offsets.contains { $0.value > previous[writer.fileIndex(path: $0.key) ?? -1] ?? 0 }
                                || !agent.isRunning
                        }
                        try #require(
                            committed && agent.isRunning,
                            "round \(round): the agent wrote no checkpoint in 60 s (seed \(seed))\n\(agent.output())"
                        )
                    }
                    try await Task.sleep(for: .milliseconds(Int.random(in: 200...800, using: &random)))
                    agent.signal(SIGKILL)
                    let status = await agent.waitForExit()
                    try #require(
                        status == .signal(SIGKILL),
                        "round \(round): the agent ended with \(String(describing: status)) (seed \(seed))\n\(agent.output())"
                    )
                    // The agent is dead: what it could have read was written before now.
                    let written = writer.linesWritten()
                    windows.append((start, written))
                    let checkpoint = try readCheckpoint(state)
                    for (file, offset) in checkpoint {
                        let index = try #require(
                            writer.fileIndex(path: file),
                            "an unknown file in the checkpoint: \(file)"
                        )
                        #expect(
                            offset == 0 || writer.isLineEnd(file: index, offset: offset),
                            "round \(round): \(file) checkpointed at \(offset), inside a line"
                        )
                        #expect(
                            offset >= previous[index] ?? 0,
                            "round \(round): \(file)'s checkpoint moved back from \(previous[index] ?? 0) to \(offset)"
                        )
                        start[index] = offset
                    }
                    previous = start
                }
                writing.cancel()
                await writing.value

                // Catch up: everything read and acked, then a clean exit.
                let last = try ChildProcess(inlong, arguments + ["--once"], environment: Self.patientRequests, logs: directory, name: "agent-once")
                let status = await last.waitForExit()
                try #require(
                    status == .exit(0),
                    "the --once agent ended with \(String(describing: status)) (seed \(seed))\n\(last.output())"
                )
                let checkpoint = try readCheckpoint(state)
                for file in 0..<writer.fileCount {
                    #expect(
                        checkpoint[writer.path(file)] == writer.size(file),
                        "\(writer.path(file)) is checkpointed at \(String(describing: checkpoint[writer.path(file)])) of \(writer.size(file)) bytes"
                    )
                }
                #expect(!FileManager.default.fileExists(atPath: state.appendingPathComponent("dead-letter.jsonl").path))

                let counts = try countLines(receiver.memorySink.records.map { String(buffer: $0.body) })
                var missing: [LineID] = []
                var excess: [(LineID, Int, Int)] = []
                var allowedDuplicates = 0
                for file in 0..<writer.fileCount {
                    for line in 0..<writer.lineCount(file) {
                        let id = LineID(file: file, line: line)
                        let lineStart = writer.lineStart(file: file, line: line)
                        // Runs whose window holds the line, and the last run when it is past the last checkpoint.
                        var allowed = windows.filter {
                            lineStart >= $0.start[file] ?? 0 && line < $0.written[file] ?? 0
                        }.count
                        if lineStart >= start[file] ?? 0 { allowed += 1 }
                        allowedDuplicates += max(allowed - 1, 0)
                        let count = counts[id] ?? 0
                        if count == 0 { missing.append(id) }
                        if count > max(allowed, 1) { excess.append((id, count, allowed)) }
                    }
                }
                let total = counts.values.reduce(0, +)
                // Follows from the per-line bound; stated for the record.
                #expect(total - counts.count <= allowedDuplicates)
                #expect(
                    missing.isEmpty,
                    "\(missing.count) lines never arrived, the first: \(missing.prefix(5)) (seed \(seed))"
                )
                #expect(
                    excess.isEmpty,
                    "\(excess.count) lines arrived more often than the runs that could send them, the first (line, count, allowed): \(excess.prefix(5)) (seed \(seed))"
                )
                #expect(counts.count == writer.totalLines, "lines that were never written arrived")
                print(
                    "agent crash test: \(writer.totalLines) lines in \(writer.fileCount) files, \(windows.count) SIGKILLs, \((windows.map(\.start) + [start]).filter { $0.values.contains { $0 > 0 } }.count) runs resumed from a checkpoint; received \(total), "
                        + "duplicates \(total - counts.count) (at most \(allowedDuplicates) allowed by the checkpoints left) (seed \(seed))"
                )
            }
        }
    }

    /// The receiver (`inlong receive`, writing each message before acking it) is SIGKILLed three times while the
    /// agent runs and the writer appends, and restarted on the same port after 100–500 ms. The agent survives,
    /// reconnects, and every line written ends in the receivers' outputs.
    @Test func aSIGKILLedReceiverLosesNoLine() async throws {
        let inlong = try inlongExecutable()
        try await withTemporaryDirectory { directory in
            var random = SplitMix64(seed: UInt64.random(in: 0...UInt64.max))
            let seed = random.seed
            let logs = directory.appendingPathComponent("logs")
            let state = directory.appendingPathComponent("state")
            try FileManager.default.createDirectory(at: logs, withIntermediateDirectories: true)
            let writer = try LineWriter(directory: logs, files: 2, seed: random.next())
            var outputs: [URL] = []
            func startReceiver(port: Int) throws -> ChildProcess {
                let out = directory.appendingPathComponent("received-\(outputs.count).jsonl")
                outputs.append(out)
                return try ChildProcess(
                    inlong,
                    ["receive", "--listen", "127.0.0.1:\(port)", "--out", out.path],
                    logs: directory,
                    name: "receiver-\(outputs.count - 1)"
                )
            }
            /// Starts a receiver on `port`, again while the port is still held (a bind that failed).
            func listeningReceiver(port: Int) async throws -> ChildProcess? {
                for _ in 0..<20 {
                    let receiver = try startReceiver(port: port)
                    if await eventually(
                        timeout: .seconds(30),
                        { receiver.error().contains("listening on") || !receiver.isRunning }
                    ), receiver.isRunning {
                        return receiver
                    }
                    receiver.signal(SIGKILL)
                    _ = await receiver.waitForExit()
                    try await Task.sleep(for: .milliseconds(100))
                }
                return nil
            }
            var receiver: ChildProcess? = nil
            var port = 0
            for _ in 0..<10 where receiver == nil {
                port = try unusedPortOutsideEphemeralRange()
                receiver = try await listeningReceiver(port: port)
            }
            var current = try #require(receiver, "no receiver could listen")
            defer { current.signal(SIGKILL) }
            let agent = try ChildProcess(
                inlong,
                [
                    "agent", "--path", logs.path + "/*.log", "--group", "g", "--stream", "s", "--proxy",
                    "127.0.0.1:\(port)", "--state-dir", state.path,
                ],
                logs: directory,
                name: "agent"
            )
            defer { agent.signal(SIGKILL) }
            let writing = Task { await writer.run() }
            defer { writing.cancel() }
            for round in 0..<3 {
                let out = outputs.last!
                let delivering = await eventually { fileSize(out) > 0 || !agent.isRunning }
                try #require(
                    delivering && agent.isRunning,
                    "round \(round): nothing reached the receiver in 60 s (seed \(seed))\n\(agent.output())\n\(current.output())"
                )
                try await Task.sleep(for: .milliseconds(Int.random(in: 200...800, using: &random)))
                current.signal(SIGKILL)
                let status = await current.waitForExit()
                try #require(
                    status == .signal(SIGKILL),
                    "the receiver ended with \(String(describing: status))\n\(current.output())"
                )
                try await Task.sleep(for: .milliseconds(Int.random(in: 100...500, using: &random)))
                let restarted = try await listeningReceiver(port: port)
                current = try #require(restarted, "the receiver could not listen on \(port) again")
            }
            writing.cancel()
            await writing.value

            let expected = writer.totalLines
            var counts: [LineID: Int] = [:]
            let complete = try await eventually {
                counts = try countLines(outputs.flatMap(receivedBodies))
                return counts.count == expected || !agent.isRunning
            }
            let missing = (0..<writer.fileCount).flatMap { file in
                (0..<writer.lineCount(file)).map { LineID(file: file, line: $0) }.filter { counts[$0] == nil }
            }
            #expect(
                complete && missing.isEmpty,
                "\(missing.count) of \(expected) lines never arrived in 60 s, the first: \(missing.prefix(5)) (seed \(seed))\n\(agent.output())"
            )
            #expect(agent.isRunning, "the agent died\n\(agent.output())")

            // A graceful stop commits everything that was acked: every file up to its end.
            agent.signal(SIGTERM)
            let status = await agent.waitForExit()
            #expect(status == .exit(0), "the agent ended with \(String(describing: status))\n\(agent.output())")
            let checkpoint = try readCheckpoint(state)
            for file in 0..<writer.fileCount {
                #expect(
                    checkpoint[writer.path(file)] == writer.size(file),
                    "\(writer.path(file)) is checkpointed at \(String(describing: checkpoint[writer.path(file)])) of \(writer.size(file)) bytes"
                )
            }
            #expect(!FileManager.default.fileExists(atPath: state.appendingPathComponent("dead-letter.jsonl").path))
            current.signal(SIGTERM)
            _ = await current.waitForExit()
            let total = counts.values.reduce(0, +)
            print(
                "receiver crash test: \(expected) lines, 3 receiver SIGKILLs; received \(total), duplicates \(total - counts.count) (seed \(seed))"
            )
        }
    }
}

// MARK: - The executable

/// The `inlong` executable built with the tests (see `builtExecutable`); `INLONG_EXECUTABLE` names another.
func inlongExecutable() throws -> URL {
    try builtExecutable("inlong", unlessNamedIn: "INLONG_EXECUTABLE")
}

/// A loopback port that nothing listens on, below the ephemeral range: a client that reconnects while the
/// receiver is down never gets it as its own local port (which would connect the client to itself).
func unusedPortOutsideEphemeralRange() throws -> Int {
    var low = 32768
    if let range = try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_local_port_range", encoding: .utf8),
        let first = range.split(whereSeparator: \.isWhitespace).first.flatMap({ Int($0) })
    {
        low = first
    }
    let candidates = low > 12_000 ? 10_000..<low : 10_000..<32_768
    for _ in 0..<200 {
        let port = Int.random(in: candidates)
        #if canImport(Glibc)
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #else
        let fd = socket(AF_INET, SOCK_STREAM, 0)
        #endif
        guard fd >= 0 else { continue }
        defer { close(fd) }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
            }
        }
        if bound { return port }
    }
    throw ExecutableNotFound(description: "no free loopback port below \(low)")
}

// MARK: - Lines

/// Line `line` of file `file`: written as `f<file> n<line> ` and padding.
private struct LineID: Hashable, CustomStringConvertible {
    var file: Int
    var line: Int
    var description: String { "f\(self.file) n\(self.line)" }
}

private struct UnexpectedLine: Error, CustomStringConvertible {
    var line: String
    var description: String { "an unexpected line arrived: \(self.line.prefix(80))" }
}

/// How often each line arrived.
private func countLines(_ bodies: [String]) throws -> [LineID: Int] {
    var counts: [LineID: Int] = [:]
    for body in bodies {
        let fields = body.split(separator: " ", maxSplits: 2)
        guard fields.count >= 2, fields[0].first == "f", fields[1].first == "n",
            let file = Int(fields[0].dropFirst()), let line = Int(fields[1].dropFirst())
        else { throw UnexpectedLine(line: body) }
        counts[LineID(file: file, line: line), default: 0] += 1
    }
    return counts
}

/// The bodies in an `inlong receive --out` file (complete lines only: a receiver may have been killed mid-line).
func receivedBodies(_ url: URL) throws -> [String] {
    struct Record: Decodable {
        var body: String
    }
    guard let data = FileManager.default.contents(atPath: url.path) else { return [] }
    let decoder = JSONDecoder()
    var bodies: [String] = []
    var start = data.startIndex
    while let newline = data[start...].firstIndex(of: UInt8(ascii: "\n")) {
        bodies.append(try decoder.decode(Record.self, from: data[start..<newline]).body)
        start = newline + 1
    }
    return bodies
}

/// Appends numbered lines of random length (20 to 300 bytes) in bursts of 1 to 40 lines to its files, and
/// remembers where every line ends. A burst is written with one `write` while the state is locked, so what the
/// writer reports as written includes everything a reader could have seen.
private final class LineWriter: Sendable {
    private struct File {
        var path: String
        var descriptor: Int32
        /// Where each line ends, newline included.
        var ends: [Int64] = []
    }

    private struct State {
        var files: [File] = []
        var random: SplitMix64
    }

    private let directory: URL
    private let state: Mutex<State>

    init(directory: URL, files: Int, seed: UInt64) throws {
        self.directory = directory
        self.state = Mutex(State(random: SplitMix64(seed: seed)))
        for _ in 0..<files { try self.addFile() }
    }

    deinit {
        self.state.withLock { state in
            for file in state.files { close(file.descriptor) }
        }
    }

    func addFile() throws {
        try self.state.withLock { state in
            let path = self.directory.appendingPathComponent("app-\(state.files.count).log").path
            let descriptor = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
            guard descriptor >= 0 else { throw ExecutableNotFound(description: "cannot create \(path)") }
            state.files.append(File(path: path, descriptor: descriptor))
        }
    }

    /// Appends until cancelled, a burst every 2 to 10 ms.
    func run() async {
        while !Task.isCancelled {
            let pause = self.state.withLock { state -> Int in
                let file = Int.random(in: 0..<state.files.count, using: &state.random)
                var bytes: [UInt8] = []
                var end = state.files[file].ends.last ?? 0
                for _ in 0..<Int.random(in: 1...40, using: &state.random) {
                    let number = state.files[file].ends.count
                    var line = Array("f\(file) n\(number) ".utf8)
                    line += repeatElement(
                        UInt8(ascii: "a") + UInt8(number % 26),
                        count: max(0, Int.random(in: 20...300, using: &state.random) - line.count)
                    )
                    line.append(UInt8(ascii: "\n"))
                    bytes += line
                    end += Int64(line.count)
                    state.files[file].ends.append(end)
                }
                var written = 0
                while written < bytes.count {
                    let count = bytes.withUnsafeBytes {
                        write(state.files[file].descriptor, $0.baseAddress! + written, $0.count - written)
                    }
                    precondition(count > 0 || errno == EINTR, "cannot append to \(state.files[file].path)")
                    written += max(count, 0)
                }
                return Int.random(in: 2...10, using: &state.random)
            }
            try? await Task.sleep(for: .milliseconds(pause))
        }
    }

    var fileCount: Int { self.state.withLock { $0.files.count } }
    var totalLines: Int { self.state.withLock { $0.files.reduce(0) { $0 + $1.ends.count } } }
    func path(_ file: Int) -> String { self.state.withLock { $0.files[file].path } }
    func size(_ file: Int) -> Int64 { self.state.withLock { $0.files[file].ends.last ?? 0 } }
    func lineCount(_ file: Int) -> Int { self.state.withLock { $0.files[file].ends.count } }
    func fileIndex(path: String) -> Int? { self.state.withLock { $0.files.firstIndex { $0.path == path } } }

    /// Lines written to each file so far.
    func linesWritten() -> [Int: Int] {
        self.state.withLock { state in
            Dictionary(uniqueKeysWithValues: state.files.enumerated().map { ($0.offset, $0.element.ends.count) })
        }
    }

    func lineStart(file: Int, line: Int) -> Int64 {
        self.state.withLock { line == 0 ? 0 : $0.files[file].ends[line - 1] }
    }

    func isLineEnd(file: Int, offset: Int64) -> Bool {
        self.state.withLock { state in
            let ends = state.files[file].ends
            var low = 0
            var high = ends.count
            while low < high {
                let middle = (low + high) / 2
                if ends[middle] < offset { low = middle + 1 } else { high = middle }
            }
            return low < ends.count && ends[low] == offset
        }
    }
}

// MARK: - Files

/// The checkpoint's committed offset per path.
func readCheckpoint(_ state: URL) throws -> [String: Int64] {
    struct Checkpoint: Decodable {
        struct Entry: Decodable {
            var path: String
            var offset: Int64
        }
        var files: [Entry]
    }
    guard let data = FileManager.default.contents(atPath: state.appendingPathComponent("checkpoint.json").path) else {
        return [:]
    }
    let checkpoint = try JSONDecoder().decode(Checkpoint.self, from: data)
    return Dictionary(checkpoint.files.map { ($0.path, $0.offset) }, uniquingKeysWith: { first, _ in first })
}

private func fileSize(_ url: URL) -> Int64 {
    ((try? FileManager.default.attributesOfItem(atPath: url.path))?[.size] as? NSNumber)?.int64Value ?? 0
}
