import Foundation
import InLongDataProxy
import InLongDataProxyReceiver
import InLongTestUtils
import InLongTransport
import NIOCore
import Testing

@testable import InLongCLI

/// `inlong send FILE`: lines as records, every one acked.
@Suite struct SendLinesTests {
    private func withFile<Result>(_ contents: Data, _ body: (String) async throws -> Result) async throws -> Result {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("inlong-lines-\(UUID().uuidString)").path
        #expect(FileManager.default.createFile(atPath: path, contents: contents))
        defer { try? FileManager.default.removeItem(atPath: path) }
        return try await body(path)
    }

    @Test func linesAreSplitAcrossChunksWithoutNewlinesOrEmptyLines() async throws {
        let long = String(repeating: "x", count: (1 << 20) + 12_345)
        let text = "first\r\nsecond\n\n\(long)\nthird\r\n\r\nlast without newline"
        let lines = try await self.withFile(Data(text.utf8)) { path in
            let handle = try #require(FileHandle(forReadingAtPath: path))
            var lines: [String] = []
            try await forEachLineChunk(handle) { chunk in lines += chunk.map { String(buffer: $0) } }
            return lines
        }
        #expect(lines == ["first", "second", long, "third", "last without newline"])
    }

    @Test func anEndlessLineIsAnErrorNotUnboundedMemory() async throws {
        let text = String(repeating: "y", count: 3 << 20)
        try await self.withFile(Data(text.utf8)) { path in
            let handle = try #require(FileHandle(forReadingAtPath: path))
            await #expect(throws: CLIError.self) {
                try await forEachLineChunk(handle, maxLineLength: 1 << 20) { _ in Issue.record("no line should be emitted") }
            }
        }
    }

    @Test func everyLineOfAFileIsAckedAndStored() async throws {
        let expected = (0..<20_000).map { "line \($0) " + String(repeating: "d", count: $0 % 200) }
        try await self.withFile(Data((expected.joined(separator: "\n") + "\n").utf8)) { path in
            try await withReceiver { receiver in
                let configuration = DataProxyClient.Configuration(proxies: [Endpoint(host: "127.0.0.1", port: try await receiver.port())])
                let outcome = try await sendLines(configuration: configuration, group: "g", stream: "s") { emit, _ in
                    try await forEachLineChunk(try #require(FileHandle(forReadingAtPath: path)), emit)
                }
                #expect(outcome.statistics.accepted == expected.count)
                #expect(outcome.statistics.acked == expected.count)
                #expect(outcome.statistics.failed == 0)
                #expect(outcome.bytes == expected.reduce(0) { $0 + $1.utf8.count })
                #expect(receiver.memorySink.records.map { String(buffer: $0.body) } == expected)
            }
        }
    }

    /// SIGINT or SIGTERM while reading a pipe that stays open: reading stops, what was read gets the grace time,
    /// and the acked and failed counts add up to the lines read.
    @Test func anInterruptedSendAccountsForEveryLineRead() async throws {
        try await withReceiver { receiver in
            let pipe = Pipe()
            defer { try? pipe.fileHandleForWriting.close() }
            let configuration = DataProxyClient.Configuration(proxies: [Endpoint(host: "127.0.0.1", port: try await receiver.port())])
            let (interruptions, interrupt) = AsyncStream.makeStream(of: Void.self)
            let sending = Task {
                try await sendLines(configuration: configuration, group: "g", stream: "s", grace: .milliseconds(300), interruptions: interruptions) { emit, stop in
                    try await forEachLineChunk(pipe.fileHandleForReading, stop: stop, emit)
                }
            }
            pipe.fileHandleForWriting.write(Data((0..<1000).map { "acked \($0)\n" }.joined().utf8))
            #expect(await eventually { receiver.memorySink.recordCount == 1000 })
            receiver.updateFaults { $0.dropAcks = true }
            pipe.fileHandleForWriting.write(Data((0..<500).map { "unacked \($0)\n" }.joined().utf8))
            #expect(await eventually { receiver.memorySink.recordCount == 1500 })
            interrupt.yield()
            let outcome = try await sending.value
            #expect(outcome.interrupted)
            #expect(outcome.lines == 1500)
            #expect(outcome.statistics.acked == 1000)
            #expect(outcome.failed == 500)
            #expect(outcome.statistics.acked + outcome.failed == outcome.lines)
            #expect(outcome.summary.contains("failed 500"))
        }
    }
}
