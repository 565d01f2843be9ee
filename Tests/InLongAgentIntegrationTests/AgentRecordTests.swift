import Foundation
import InLongDataProxy
import InLongDataProxyReceiver
import InLongTestUtils
import NIOCore
import Testing

@testable import InLongAgent

/// Records that are more than a line, chosen lines, and where records come from, through the agent to the
/// in-process receiver.
@Suite(.timeLimit(.minutes(3))) struct AgentRecordTests {
    /// A Java stack trace of `frames` frames, starting with a timestamp.
    private func stackTrace(_ index: Int, frames: Int) -> String {
        var lines = ["2026-12-06 01:00:\(String(format: "%02d", index % 60)).000 ERROR [worker-\(index % 8)] request \(index) failed"]
        lines.append("java.lang.IllegalStateException: record \(index) is broken")
        for frame in 0..<frames { lines.append("\tat com.example.Service\(frame).handle(Service\(frame).java:\(index % 997 + frame))") }
        if index % 3 == 0 {
            lines.append("Caused by: java.io.IOException: closed")
            lines.append("\t... \(frames) more")
        }
        return lines.joined(separator: "\n")
    }

    @Test func tenThousandJavaStackTracesArriveAsTenThousandRecordsByteExact() async throws {
        let workspace = try AgentWorkspace()
        let traces = (0..<10_000).map { self.stackTrace($0, frames: 1 + $0 % 12) }
        try await withReceiver { receiver in
            var configuration = workspace.configuration(port: try await receiver.port())
            var multiline = AgentConfiguration.FileSource.Multiline(pattern: "^\\d{4}-\\d{2}-\\d{2} ")
            multiline.negate = true
            // Longer than any pause between two writes, even on a loaded machine: a trace is never timed out half
            // written.
            multiline.timeout = .seconds(2)
            configuration.sources[0].multiline = multiline
            try await withAgent(configuration) { agent in
                // Written in bursts that cut traces anywhere, even inside a line.
                let text = traces.joined(separator: "\n") + "\n"
                var rest = Substring(text)
                var random = SystemRandomNumberGenerator()
                while !rest.isEmpty {
                    let piece = rest.prefix(Int.random(in: 1...300_000, using: &random))
                    try workspace.write(String(piece), to: "app.log")
                    rest = rest.dropFirst(piece.count)
                }
                #expect(await eventually { storedLines(receiver).count >= traces.count })
                #expect(await eventually { agent.statistics().lagBytes == 0 })
                #expect(storedLines(receiver) == traces)
                #expect(agent.statistics().cutRecords == 0)
            }
            let checkpoint = try String(contentsOfFile: configuration.checkpointPath, encoding: .utf8)
            #expect(checkpoint.contains("\"offset\":\(traces.joined(separator: "\n").utf8.count + 1)"))
        }
    }

    @Test func aStackTraceHalfWrittenAtAStopIsSentWholeAfterTheRestart() async throws {
        let workspace = try AgentWorkspace()
        try await withReceiver { receiver in
            var configuration = workspace.configuration(port: try await receiver.port())
            var multiline = AgentConfiguration.FileSource.Multiline(pattern: "^\\d{4}-")
            multiline.negate = true
            multiline.timeout = .seconds(60)
            configuration.sources[0].multiline = multiline
            let first = self.stackTrace(1, frames: 3)
            let second = self.stackTrace(2, frames: 4).split(separator: "\n").map(String.init)
            try await withAgent(configuration) { agent in
                try workspace.write(first + "\n" + second[0...2].joined(separator: "\n") + "\n", to: "app.log")
                #expect(await eventually { storedLines(receiver) == [first] })
                #expect(await eventually { agent.statistics().lagBytes == Int64(second[0...2].joined(separator: "\n").utf8.count + 1) })
            }
            // Stopped with half a trace read: the checkpoint is at its start.
            let checkpoint = try String(contentsOfFile: configuration.checkpointPath, encoding: .utf8)
            #expect(checkpoint.contains("\"offset\":\(first.utf8.count + 1)"))
            try workspace.write(second[3...].joined(separator: "\n") + "\n2026-12-06 last\n", to: "app.log")
            configuration.sources[0].multiline?.timeout = .milliseconds(100)
            try await withAgent(configuration) { _ in
                #expect(await eventually { storedLines(receiver).count == 3 })
            }
            #expect(storedLines(receiver) == [first, second.joined(separator: "\n"), "2026-12-06 last"])
        }
    }

    @Test func includeAndExcludeSelectExactlyTheExpectedLines() async throws {
        let workspace = try AgentWorkspace()
        let levels = ["INFO", "WARN", "ERROR", "DEBUG"]
        let lines = (0..<4_000).map { "2026-12-06 \(levels[$0 % 4]) line \($0)" + ($0 % 10 == 0 ? " healthcheck" : "") }
        try workspace.append(lines, to: "app.log")
        try await withReceiver { receiver in
            var configuration = workspace.configuration(port: try await receiver.port())
            configuration.sources[0].include = [" (WARN|ERROR) "]
            configuration.sources[0].exclude = ["healthcheck$"]
            try await withAgent(configuration) { agent in
                await agent.waitUntilCaughtUp()
                let expected = lines.filter { ($0.contains(" WARN ") || $0.contains(" ERROR ")) && !$0.hasSuffix("healthcheck") }
                #expect(storedLines(receiver) == expected)
                #expect(agent.statistics().filteredRecords == lines.count - expected.count)
                #expect(agent.statistics().lagBytes == 0)
            }
        }
    }

    @Test func ignoreOlderReadsOldFilesFromTheirEndAndExcludeFilesSkipsFiles() async throws {
        let workspace = try AgentWorkspace()
        try workspace.append(numbered("old", 0..<100), to: "old.log")
        try workspace.append(numbered("new", 0..<100), to: "new.log")
        try workspace.append(numbered("secret", 0..<100), to: "secret.log")
        let twoHoursAgo = Date().addingTimeInterval(-7_200)
        try FileManager.default.setAttributes([.modificationDate: twoHoursAgo], ofItemAtPath: workspace.path("old.log"))
        try await withReceiver { receiver in
            var configuration = workspace.configuration(port: try await receiver.port())
            configuration.sources[0].ignoreOlder = .seconds(3_600)
            configuration.sources[0].excludeFiles = ["*/secret.log"]
            try await withAgent(configuration) { agent in
                await agent.waitUntilCaughtUp()
                #expect(storedLines(receiver).sorted() == numbered("new", 0..<100).sorted())
                // Lines written to the old file from now on are sent.
                try workspace.append(numbered("later", 0..<10), to: "old.log")
                #expect(await eventually { storedLines(receiver).count == 110 })
                #expect(Set(storedLines(receiver)) == Set(numbered("new", 0..<100) + numbered("later", 0..<10)))
                #expect(agent.statistics().filesOpened == 2)
            }
        }
    }

    @Test func recordsSayWhereTheyComeFrom() async throws {
        let workspace = try AgentWorkspace()
        try FileManager.default.createDirectory(atPath: workspace.logs + "/payments", withIntermediateDirectories: true)
        try workspace.append(["first", "second", "third"], to: "payments/app.log")
        try await withReceiver { receiver in
            var configuration = workspace.configuration(port: try await receiver.port(), glob: "*/app.log")
            configuration.sources[0].attributes = ["env": "test"]
            configuration.sources[0].origin.fileName = "file"
            configuration.sources[0].origin.host = "host"
            configuration.sources[0].origin.offset = "offset"
            configuration.sources[0].origin.pathPattern = "/logs/(?<service>[^/]+)/"
            try await withAgent(configuration) { agent in
                await agent.waitUntilCaughtUp()
                let messages = receiver.memorySink.messages
                let records = messages.flatMap(\.records)
                #expect(records.map { String(buffer: $0.body) } == ["first", "second", "third"])
                #expect(records.map(\.attributes) == ["offset=0", "offset=6", "offset=13"])
                let attributes = try #require(messages.first?.attributes)
                #expect(attributes.contains("env=test&file=app.log&service=payments&host=\(hostName())"))
            }
        }
    }
}
