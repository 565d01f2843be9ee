import Foundation
import InLongDataProxyReceiver
import InLongTestUtils
import NIOCore
import Testing

/// `inlong agent --once`, run as the built executable (see ``AgentCrashTests``).
@Suite(.timeLimit(.minutes(3)))
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

    /// A quiet file's last multiline record is complete only at its timeout (no next record starts it off):
    /// `--once` waits for that timeout, sends it whole and commits the file's end, every run.
    @Test func onceWaitsForTheMultilineTimeoutOfAQuietFilesLastRecord() async throws {
        let inlong = try inlongExecutable()
        try await withTemporaryDirectory { directory in
            let logs = directory.appendingPathComponent("logs")
            try FileManager.default.createDirectory(at: logs, withIntermediateDirectories: true)
            let records = (0..<3).map { index in
                "2026-12-06 06:00:0\(index) ERROR failed \(index)\njava.lang.IllegalStateException: \(index)\n\tat a.B.c(B.java:\(index))\n\tat a.B.main(B.java:1)"
            }
            let path = logs.appendingPathComponent("app.log").path
            let text = records.joined(separator: "\n") + "\n"
            #expect(FileManager.default.createFile(atPath: path, contents: Data(text.utf8)))
            try await withReceiver { receiver in
                // Twice, each from no checkpoint: the last record arrives whole both times, never cut or missing.
                for run in 0..<2 {
                    let state = directory.appendingPathComponent("state-\(run)")
                    let agent = try ChildProcess(
                        inlong,
                        [
                            "agent", "--path", logs.path + "/*.log", "--group", "g", "--stream", "s\(run)",
                            "--proxy", "127.0.0.1:\(try await receiver.port())", "--state-dir", state.path, "--once",
                            "--multiline-pattern", "^[0-9]{4}-", "--multiline-negate", "--multiline-timeout", "0.5",
                        ],
                        environment: ["INLONG_CONNECTION_REQUEST_TIMEOUT": "120"],
                        logs: directory,
                        name: "agent-\(run)"
                    )
                    let status = await agent.waitForExit(timeout: .seconds(50))
                    #expect(status == .exit(0), "run \(run): \(String(describing: status))\n\(agent.output())")
                    let stored = receiver.memorySink.messages.filter { $0.stream == "s\(run)" }.flatMap(\.records).map { String(buffer: $0.body) }
                    #expect(stored.sorted() == records, "run \(run)")
                    #expect(try readCheckpoint(state)[path] == Int64(text.utf8.count), "run \(run)")
                }
            }
        }
    }
}
