import Foundation
import InLongDataProxyReceiver
import InLongTestUtils
import NIOCore
import Testing

/// `inlong agent --once`, run as the built executable (see ``AgentCrashTests``).
@Suite(.timeLimit(.minutes(1)))
struct AgentOnceTests {
    /// A file may end with a line that has no newline yet (its writer may finish it later): `--once` stops once
    /// every complete line is acked, without sending or committing that one.
    @Test func onceStopsWhenAFileEndsWithAnUnfinishedLine() async throws {
        let inlong = try inlongExecutable()
        try await withTemporaryDirectory { directory in
            let logs = directory.appendingPathComponent("logs")
            let state = directory.appendingPathComponent("state")
            try FileManager.default.createDirectory(at: logs, withIntermediateDirectories: true)
            let unfinished = logs.appendingPathComponent("a.log").path
            let complete = logs.appendingPathComponent("b.log").path
            #expect(
                FileManager.default.createFile(atPath: unfinished, contents: Data("one\ntwo\nthree, unfinished".utf8))
            )
            #expect(FileManager.default.createFile(atPath: complete, contents: Data("four\n".utf8)))
            // Read without a line coming out of it.
            let onlyUnfinished = logs.appendingPathComponent("c.log").path
            #expect(FileManager.default.createFile(atPath: onlyUnfinished, contents: Data("five, unfinished".utf8)))
            try await withReceiver { receiver in
                let agent = try ChildProcess(
                    inlong,
                    [
                        "agent", "--path", logs.path + "/*.log", "--group", "g", "--stream", "s",
                        "--proxy", "127.0.0.1:\(try await receiver.port())", "--state-dir", state.path, "--once",
                    ],
                    // Exactly once is asserted: no request may time out and be sent again on a loaded machine.
                    environment: ["INLONG_CONNECTION_REQUEST_TIMEOUT": "120"],
                    logs: directory,
                    name: "agent"
                )
                let status = await agent.waitForExit(timeout: .seconds(30))
                #expect(
                    status == .exit(0),
                    "the --once agent ended with \(String(describing: status)) (nil: it ran 30 s)\n\(agent.output())"
                )
                #expect(receiver.memorySink.records.map { String(buffer: $0.body) }.sorted() == ["four", "one", "two"])
                let checkpoint = try readCheckpoint(state)
                #expect(checkpoint[unfinished] == 8)
                #expect(checkpoint[complete] == 5)
                #expect(checkpoint[onlyUnfinished] == 0)
            }
        }
    }
}
