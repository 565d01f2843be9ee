import Foundation
import InLongDataProxyReceiver
import InLongTestUtils
import NIOCore
import Testing

/// The built `inlong agent --path` with `--close-inactive`, `--max-lines-per-second` and `--max-bytes-per-second`:
/// shown in its start line, applied (every line arrives once, within the limit), and refused by name when wrong.
@Suite(.timeLimit(.minutes(3)))
struct AgentLimitFlagsBinaryTests {
    @Test func aLimitedSourceShowsItsLimitsAndDeliversEveryLineOnce() async throws {
        let inlong = try inlongExecutable()
        try await withTemporaryDirectory { directory in
            let logs = directory.appendingPathComponent("logs")
            try FileManager.default.createDirectory(at: logs, withIntermediateDirectories: true)
            let lines = (0..<400).map { String(format: "limited %04d", $0) }
            #expect(FileManager.default.createFile(atPath: logs.appendingPathComponent("a.log").path, contents: Data(lines.map { $0 + "\n" }.joined().utf8)))
            try await withReceiver { receiver in
                let agent = try ChildProcess(
                    inlong,
                    [
                        "agent", "--path", logs.path + "/*.log", "--group", "g", "--stream", "s",
                        "--proxy", "127.0.0.1:\(try await receiver.port())", "--state-dir", directory.appendingPathComponent("state").path,
                        "--close-inactive", "30", "--max-lines-per-second", "200", "--max-bytes-per-second", "100000", "--once",
                    ],
                    environment: ["INLONG_CONNECTION_REQUEST_TIMEOUT": "120"],
                    logs: directory,
                    name: "agent"
                )
                #expect(await agent.waitForExit(timeout: .seconds(120)) == .exit(0), "\(agent.output())")
                #expect(
                    agent.error().contains("/*.log (g/s; close inactive 30.0 s; at most 200 lines/s and 100000 bytes/s)"),
                    "\(agent.output())"
                )
                #expect(receiver.memorySink.records.map { String(buffer: $0.body) }.sorted() == lines)
            }
        }
    }

    @Test func wrongValuesAreRefusedNamingTheFlag() async throws {
        let inlong = try inlongExecutable()
        try await withTemporaryDirectory { directory in
            let base = ["agent", "--group", "g", "--stream", "s", "--proxy", "127.0.0.1:1", "--state-dir", directory.path]
            for (arguments, message) in [
                (["--path", "/tmp/none-*.log", "--close-inactive", "0"], "--close-inactive takes a positive number of seconds"),
                (["--path", "/tmp/none-*.log", "--close-inactive=-3"], "--close-inactive takes a positive number of seconds"),
                (["--path", "/tmp/none-*.log", "--max-lines-per-second", "0"], "--max-lines-per-second must be a positive number, not 0"),
                (["--path", "/tmp/none-*.log", "--max-bytes-per-second=-1"], "--max-bytes-per-second must be a positive number, not -1"),
                (["--stdin", "--close-inactive", "5"], "--close-inactive applies to files (--path), not to --stdin"),
            ] {
                let agent = try ChildProcess(inlong, base + arguments, logs: directory, name: "refused")
                #expect(await agent.waitForExit(timeout: .seconds(60)) == .exit(64), "\(arguments): \(agent.output())")
                #expect(agent.error().contains(message), "\(arguments): \(agent.output())")
            }
        }
    }
}
