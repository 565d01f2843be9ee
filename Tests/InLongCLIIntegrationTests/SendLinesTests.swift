import Foundation
import InLongAgent
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

    private func readLines(_ path: String, _ reader: inout SendLineReader) async throws -> [String] {
        let handle = try #require(FileHandle(forReadingAtPath: path))
        var lines: [String] = []
        try await reader.read(handle, name: "file") { chunk in lines += chunk.map { String(buffer: $0) } }
        return lines
    }

    @Test func linesAreSplitAcrossChunksWithoutNewlinesOrEmptyLines() async throws {
        let long = String(repeating: "x", count: (1 << 20) + 12_345)
        let text = "first\r\nsecond\n\n\(long)\nthird\r\n\r\nlast without newline"
        var reader = SendLineReader()
        let lines = try await self.withFile(Data(text.utf8)) { try await self.readLines($0, &reader) }
        #expect(lines == ["first", "second", long, "third", "last without newline"])
        #expect(reader.emptyLines == 2)
        #expect(reader.overlongLines == 0)
    }

    /// The agent's rule: an overlong line is truncated by default, and counted; memory stays bounded even for a
    /// line that never ends.
    @Test func anEndlessLineIsTruncatedAndCountedNotReadIntoMemory() async throws {
        let text = "before\n" + String(repeating: "y", count: 3 << 20) + "\nafter\n" + String(repeating: "z", count: 3 << 20)
        var reader = SendLineReader(maxLineLength: 1 << 20)
        let lines = try await self.withFile(Data(text.utf8)) { try await self.readLines($0, &reader) }
        #expect(lines == ["before", String(repeating: "y", count: 1 << 20), "after", String(repeating: "z", count: 1 << 20)])
        #expect(reader.overlongLines == 2)
        #expect(reader.failure == nil)
    }

    @Test func overlongLinesCanBeSkippedOrStopTheRead() async throws {
        let text = "before\n" + String(repeating: "y", count: 3 << 20) + "\nafter\n"
        var skipping = SendLineReader(maxLineLength: 1 << 20, overlong: .skip)
        #expect(try await self.withFile(Data(text.utf8)) { try await self.readLines($0, &skipping) } == ["before", "after"])
        #expect(skipping.overlongLines == 1)
        var failing = SendLineReader(maxLineLength: 1 << 20, overlong: .fail)
        #expect(try await self.withFile(Data(text.utf8)) { try await self.readLines($0, &failing) } == ["before"])
        #expect(failing.overlongLines == 1)
        #expect(failing.failure?.contains("the line at byte 7 is longer than 1048576 bytes") == true)
    }

    /// Reads with an emitter that takes whole lines as delimited runs (the client walks them in place), turning the
    /// runs into lines as the client does.
    private func readFast(_ path: String, _ reader: inout SendLineReader) async throws -> (lines: [String], runs: Int) {
        let handle = try #require(FileHandle(forReadingAtPath: path))
        var lines: [String] = []
        var runs = 0
        let emitter = LineEmitter(
            lines: { chunk in lines += chunk.map { String(buffer: $0) } },
            delimited: { run in
                runs += 1
                let (bodies, empty) = DelimitedRecords.slices(run)
                lines += bodies.map { String(buffer: $0) }
                return empty
            }
        )
        try await reader.read(handle, name: "file", emitter)
        return (lines, runs)
    }

    /// Whole lines handed as runs are the lines read one by one: the same records and empty lines, across chunk
    /// boundaries, CRLF ends, a line longer than a chunk and a last line without its newline.
    @Test func wholeLinesHandedAsRunsAreTheLinesReadOneByOne() async throws {
        var text = "first\r\nsecond\n\n"
        for index in 0..<40_000 {
            text += index % 7 == 0 ? "line \(index)\r\n" : index % 11 == 0 ? "\n" : "line \(index) ü\n"
        }
        text += String(repeating: "x", count: (1 << 20) + 12_345) + "\nthird\r\n\r\n"
        for index in 0..<200_000 {
            text += index % 5 == 0 ? "after \(index)\r\n" : index % 13 == 0 ? "\n" : "after \(index) ü\n"
        }
        text += "last without newline"
        let data = Data(text.utf8)
        var plain = SendLineReader()
        let expected = try await self.withFile(data) { try await self.readLines($0, &plain) }
        var fast = SendLineReader()
        let (lines, runs) = try await self.withFile(data) { try await self.readFast($0, &fast) }
        #expect(runs > 2)
        #expect(lines.count == expected.count)
        #expect(lines == expected)
        #expect(fast.emptyLines == plain.emptyLines)
        #expect(fast.emptyLines > 3_000)
    }

    /// On the fast path, an overlong line that stops the read is still named by where it starts in the file.
    @Test func anOverlongLineAfterWholeLinesIsNamedByItsOffset() async throws {
        let text = "before\n" + String(repeating: "y", count: 3 << 20) + "\nafter\n"
        var failing = SendLineReader(maxLineLength: 1 << 20, overlong: .fail)
        let (lines, runs) = try await self.withFile(Data(text.utf8)) { try await self.readFast($0, &failing) }
        #expect(runs == 1)
        #expect(lines == ["before"])
        #expect(failing.failure?.contains("the line at byte 7 is longer than 1048576 bytes") == true)
    }

    @Test func theSummaryTellsOfOverlongAndEmptyLines() async throws {
        var reader = SendLineReader(maxLineLength: 8)
        let outcome = { (reader: SendLineReader) in
            var outcome = SendOutcome(statistics: DataProxyClientStatistics(), seconds: 1, bytes: 0)
            outcome.reading = reader
            return outcome.summary
        }
        #expect(!outcome(reader).contains("over 8 bytes"))
        reader = SendLineReader(maxLineLength: 8)
        try await self.count(&reader, "0123456789\n\n\nabc\n")
        #expect(outcome(reader).contains("; 1 line over 8 bytes truncated to 8 bytes; 2 empty lines left out"))
        reader = SendLineReader(maxLineLength: 8, overlong: .skip)
        try await self.count(&reader, "0123456789\n0123456789\n")
        #expect(outcome(reader).contains("; 2 lines over 8 bytes skipped"))
    }

    private func count(_ reader: inout SendLineReader, _ text: String) async throws {
        _ = try await self.withFile(Data(text.utf8)) { try await self.readLines($0, &reader) }
    }

    @Test func everyLineOfAFileIsAckedAndStored() async throws {
        let expected = (0..<20_000).map { "line \($0) " + String(repeating: "d", count: $0 % 200) }
        try await self.withFile(Data((expected.joined(separator: "\n") + "\n").utf8)) { path in
            try await withReceiver { receiver in
                let configuration = DataProxyClient.Configuration(proxies: [Endpoint(host: "127.0.0.1", port: try await receiver.port())])
                let outcome = try await sendLines(configuration: configuration, group: "g", stream: "s") { emit, _ in
                    var reader = SendLineReader()
                    try await reader.read(try #require(FileHandle(forReadingAtPath: path)), emit)
                }
                #expect(outcome.statistics.accepted == expected.count)
                #expect(outcome.statistics.acked == expected.count)
                #expect(outcome.statistics.failed == 0)
                #expect(outcome.bytes == expected.reduce(0) { $0 + $1.utf8.count })
                #expect(receiver.memorySink.records.map { String(buffer: $0.body) } == expected)
            }
        }
    }

    /// CRLF ends and empty lines on the fast path: each line arrives without its line end, empty ones not at all.
    @Test func linesWithCRLFEndsAndEmptyLinesArriveAsTheirBytes() async throws {
        let expected = (0..<30_000).map { "line \($0) ü " + String(repeating: "d", count: $0 % 150) }
        var text = ""
        for (index, line) in expected.enumerated() {
            text += line + (index % 3 == 0 ? "\r\n" : "\n")
            if index % 100 == 0 { text += "\r\n\n" }
        }
        try await self.withFile(Data(text.utf8)) { path in
            try await withReceiver { receiver in
                let configuration = DataProxyClient.Configuration(proxies: [Endpoint(host: "127.0.0.1", port: try await receiver.port())])
                var reader = SendLineReader()
                var outcome = try await sendLines(configuration: configuration, group: "g", stream: "s") { emit, _ in
                    try await reader.read(try #require(FileHandle(forReadingAtPath: path)), emit)
                }
                outcome.reading = reader
                #expect(outcome.lines == expected.count)
                #expect(outcome.statistics.acked == expected.count)
                #expect(outcome.bytes == expected.reduce(0) { $0 + $1.utf8.count })
                #expect(reader.emptyLines == 600)
                #expect(outcome.summary.contains("600 empty lines left out"))
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
                    var reader = SendLineReader()
                    try await reader.read(pipe.fileHandleForReading, stop: stop, emit)
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
