import Foundation
import InLongWire
import NIOCore
import Testing

@testable import InLongAgent

/// A file read into records: multiline records committed only whole, filters after multiline, offsets, the
/// flush timeout on a simulated clock, and seeded random writes, reads and acks.
@Suite struct FileTailRecordTests {
    /// A file in memory that a test appends to.
    final class MemoryFile: TailedFile {
        var bytes: [UInt8] = []
        /// How long ago it was last written (`nil`: unknown).
        var quietFor: Duration?

        func size() throws -> Int64 { Int64(self.bytes.count) }

        func timeSinceLastWrite() -> Duration? { self.quietFor }

        func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int64) -> Int {
            guard offset < self.bytes.count else { return 0 }
            let count = min(buffer.count, self.bytes.count - Int(offset))
            self.bytes.withUnsafeBytes { buffer.baseAddress!.copyMemory(from: $0.baseAddress! + Int(offset), byteCount: count) }
            return count
        }

        func append(_ text: String) { self.bytes += Array(text.utf8) }
    }

    private func tail(_ file: MemoryFile, _ rules: RecordAssembler.Rules, maxLineLength: Int = 1 << 20) throws -> FileTail {
        try FileTail(
            file: file,
            identity: Checkpoint.FileIdentity(device: 1, inode: 1, fingerprint: 0, fingerprintLength: 0),
            path: "/var/log/app.log",
            startingAt: .beginning,
            maxLineLength: maxLineLength,
            overlong: .truncate,
            records: rules
        )
    }

    private func startPattern(_ pattern: String = "^\\d{4}-", timeout: Duration = .seconds(5)) throws -> RecordAssembler.Rules {
        var rules = RecordAssembler.Rules()
        rules.multiline = (try LineMatcher(pattern), .init(negate: true, match: .after, timeout: timeout))
        return rules
    }

    private func bodies(_ read: FileTail.Read?) -> [String] {
        read?.lines.map { String(buffer: $0) } ?? []
    }

    @Test func aStackTraceIsCommittedOnlyOnceItIsWhole() throws {
        let file = MemoryFile()
        let tail = try self.tail(file, try self.startPattern())
        let now = ContinuousClock.now
        file.append("2026-01-01 ERROR a\n\tat x\n")
        // The record may go on: nothing is sent, nothing may be committed, the agent has not caught up.
        #expect(try tail.readLines(maxBytes: 1 << 20, now: now) == nil)
        #expect(tail.scannedOffset == 0)
        #expect(tail.hasPendingRecord)
        file.append("\tat y\n2026-01-01 INFO b\n")
        let first = try #require(try tail.readLines(maxBytes: 1 << 20, now: now))
        #expect(self.bodies(first) == ["2026-01-01 ERROR a\n\tat x\n\tat y"])
        #expect(first.ticket.end == 31)
        tail.ack(first.ticket)
        #expect(tail.committedOffset == 31)
        // The last record of a quiet file goes at its timeout, on the clock it is given.
        #expect(try tail.readLines(maxBytes: 1 << 20, now: now + .seconds(4)) == nil)
        let last = try #require(try tail.readLines(maxBytes: 1 << 20, now: now + .seconds(5)))
        #expect(self.bodies(last) == ["2026-01-01 INFO b"])
        tail.ack(last.ticket)
        #expect(tail.committedOffset == Int64(file.bytes.count))
        #expect(!tail.hasPendingRecord)
    }

    /// A file not written for the timeout already holds its last record whole: it goes with the read that reaches
    /// the end, not a timeout later; a file written just now still waits.
    @Test func theLastRecordOfAFileQuietForTheTimeoutGoesAtOnce() throws {
        let now = ContinuousClock.now
        for (quietFor, sentAtOnce) in [(Duration.seconds(30), true), (.seconds(8), true), (.seconds(1), false), (.zero, false)] {
            let file = MemoryFile()
            let tail = try self.tail(file, try self.startPattern(timeout: .seconds(5)))
            file.append("2026-01-01 ERROR a\n\tat x\n2026-01-01 INFO b\n\tat y\n")
            file.quietFor = quietFor
            let read = try #require(try tail.readLines(maxBytes: 1 << 20, now: now))
            let expected = sentAtOnce ? ["2026-01-01 ERROR a\n\tat x", "2026-01-01 INFO b\n\tat y"] : ["2026-01-01 ERROR a\n\tat x"]
            #expect(self.bodies(read) == expected, "quiet for \(quietFor)")
            #expect(tail.hasPendingRecord == !sentAtOnce, "quiet for \(quietFor)")
            if !sentAtOnce {
                // Then at its timeout from when the file was written.
                #expect(try tail.readLines(maxBytes: 1 << 20, now: now + .seconds(5) - quietFor - .seconds(3)) == nil)
                let last = try #require(try tail.readLines(maxBytes: 1 << 20, now: now + .seconds(5)))
                #expect(self.bodies(last) == ["2026-01-01 INFO b\n\tat y"])
            }
        }
    }

    @Test func filtersApplyToWholeRecordsAfterMultiline() throws {
        let file = MemoryFile()
        var rules = try self.startPattern("^\\d{4} ")
        rules.include = [try LineMatcher("ERROR|Exception")]
        rules.exclude = [try LineMatcher("healthcheck")]
        let tail = try self.tail(file, rules)
        file.append("2026 INFO ok\n2026 WARN x\njava.lang.Exception\n\tat y\n2026 ERROR healthcheck\n2026 ERROR real\n2026 INFO z\n")
        let read = try #require(try tail.readLines(maxBytes: 1 << 20, now: .now))
        #expect(self.bodies(read) == ["2026 WARN x\njava.lang.Exception\n\tat y", "2026 ERROR real"])
        #expect(tail.filteredRecords == 2)
        // Dropped records are committed past, like sent ones.
        tail.ack(read.ticket)
        #expect(tail.committedOffset == Int64(file.bytes.count - "2026 INFO z\n".utf8.count))
    }

    @Test func filtersWithoutMultilineSelectLines() throws {
        let file = MemoryFile()
        var rules = RecordAssembler.Rules()
        rules.exclude = [try LineMatcher("^DEBUG")]
        let tail = try self.tail(file, rules)
        file.append("DEBUG a\nINFO b\n\nDEBUG c\nWARN d\n")
        let read = try #require(try tail.readLines(maxBytes: 1 << 20, now: .now))
        #expect(self.bodies(read) == ["INFO b", "WARN d"])
        #expect(read.ticket.end == Int64(file.bytes.count))
        #expect(!tail.hasPendingRecord)
    }

    @Test func recordsCarryWhereTheyStart() throws {
        let file = MemoryFile()
        var rules = try self.startPattern("^[A-Z]")
        rules.offsets = true
        let tail = try self.tail(file, rules)
        file.append("A\n b\n\nC\r\nD\n")
        let read = try #require(try tail.readLines(maxBytes: 1 << 20, now: .now))
        #expect(self.bodies(read) == ["A\n b", "C"])
        #expect(read.offsets == [0, 6])
    }

    @Test func aLineLongerThanTheRecordLimitIsOverlong() throws {
        let file = MemoryFile()
        var rules = RecordAssembler.Rules()
        rules.multiline = (try LineMatcher("^ "), .init(maxBytes: 8))
        let tail = try self.tail(file, rules)
        file.append("0123456789\n 1\nnext\n")
        let read = try #require(try tail.readLines(maxBytes: 1 << 20, now: .now))
        #expect(self.bodies(read) == ["01234567", " 1"])
        #expect(tail.overlongLines == 1)
        #expect(tail.cutRecords == 1)
    }

    @Test func aTruncatedFileForgetsTheRecordUnderWay() throws {
        let file = MemoryFile()
        let tail = try self.tail(file, try self.startPattern("^\\d{4} "))
        file.append("2026 a\n\tat x\n")
        #expect(try tail.readLines(maxBytes: 1 << 20, now: .now) == nil)
        file.bytes = Array("2026 b\n".utf8)
        #expect(try tail.readLines(maxBytes: 1 << 20, now: .now) == nil)
        let read = try #require(try tail.readLines(maxBytes: 1 << 20, now: .now + .seconds(6)))
        #expect(self.bodies(read) == ["2026 b"])
        #expect(tail.truncations == 1)
    }

    // MARK: Seeded random writes, reads and acks

    struct Violation: Error, CustomStringConvertible {
        var description: String
    }

    /// Writes stack-trace-like records in random pieces (partial lines included), reads with random sizes at
    /// random times, acks reads in random order. After every step: the committed offset is 0 or the end of a
    /// record (never inside one), and the records read so far are the records written, byte for byte, in order.
    static func run(seed: UInt64, steps: Int) throws {
        var random = SplitMix64(seed: seed)
        let file = MemoryFile()
        var rules = RecordAssembler.Rules()
        let maxLines = Int.random(in: 2...8, using: &random)
        rules.multiline = (try LineMatcher("^T"), .init(negate: true, match: .after, maxLines: maxLines, timeout: .milliseconds(200)))
        let tail = try FileTail(
            file: file, identity: .init(device: 1, inode: 1, fingerprint: 0, fingerprintLength: 0), path: "f", startingAt: .beginning,
            maxLineLength: 1 << 20, overlong: .truncate, records: rules
        )
        var now = ContinuousClock.now
        var written: [String] = []  // whole records, as they must arrive
        var recordEnds: Set<Int64> = [0]
        var unwritten: [UInt8] = []  // bytes of the record being written, not in the file yet
        var received: [String] = []
        var reads: [FileTail.Read] = []
        func fail(_ what: String) -> Violation { Violation(description: "seed \(seed): \(what)") }

        for step in 0..<steps {
            switch Int.random(in: 0..<10, using: &random) {
            case 0..<3:
                // A record of 1...maxLines lines: "T<n>" then indented frames; queued, then written in pieces.
                let frames = Int.random(in: 0..<maxLines, using: &random)
                let lines = ["T\(step) boom"] + (0..<frames).map { "\tat f\($0)(\(step))" }
                written.append(lines.joined(separator: "\n"))
                unwritten += Array((lines.joined(separator: "\n") + "\n").utf8)
                recordEnds.insert(Int64(file.bytes.count + unwritten.count))
            case 3..<5:
                let count = Int.random(in: 0...unwritten.count, using: &random)
                file.bytes += unwritten.prefix(count)
                unwritten.removeFirst(count)
            case 5..<7:
                // Half the reads exact (rate-limited): no more records than asked, bytes to within one line.
                let maxBytes = Int.random(in: 1...256, using: &random)
                let maxRecords = Bool.random(using: &random) ? Int.random(in: 1...4, using: &random) : nil
                if let read = try tail.readLines(maxBytes: maxBytes, maxRecords: maxRecords, chunkSize: Int.random(in: 1...64, using: &random), now: now) {
                    received += read.lines.map { String(buffer: $0) }
                    reads.append(read)
                    guard recordEnds.contains(read.ticket.end) else { throw fail("a read ends at \(read.ticket.end), inside a record") }
                    if let maxRecords {
                        guard read.lines.count <= maxRecords else { throw fail("\(read.lines.count) records read, \(maxRecords) allowed") }
                        // A record's lines are short ("\tat f7(399)"), but a record under way when the last read
                        // ended is counted by the read that completes it.
                        guard read.bytes < maxBytes + maxLines * 16 else { throw fail("\(read.bytes) bytes read, \(maxBytes) allowed") }
                    }
                }
            case 7..<9:
                if !reads.isEmpty { tail.ack(reads.remove(at: Int.random(in: 0..<reads.count, using: &random)).ticket) }
            default:
                // Only between records: a timeout inside one that is half written would cut it, as it should.
                if unwritten.isEmpty { now += .milliseconds(Int.random(in: 0...150, using: &random)) }
            }
            guard recordEnds.contains(tail.committedOffset) else { throw fail("committed \(tail.committedOffset), inside a record") }
            guard received.count <= written.count, Array(written.prefix(received.count)) == received else {
                throw fail("received \(received.suffix(2)) where \(written.prefix(received.count).suffix(2)) was written")
            }
        }
        // Everything written, the clock past the timeout: every record arrives and everything is committed.
        file.bytes += unwritten
        for _ in 0..<2 {
            // Read to the end, then again past the last record's timeout.
            now += .seconds(1)
            while let read = try tail.readLines(maxBytes: 1 << 20, now: now) {
                received += read.lines.map { String(buffer: $0) }
                reads.append(read)
            }
        }
        for read in reads { tail.ack(read.ticket) }
        guard received == written else { throw fail("\(received.count) records received of \(written.count)") }
        guard tail.committedOffset == Int64(file.bytes.count) else { throw fail("committed \(tail.committedOffset) of \(file.bytes.count)") }
    }

    @Test(arguments: 0..<40) func randomWritesReadsAndAcksNeverCommitHalfARecord(seed: UInt64) throws {
        try Self.run(seed: seed, steps: 400)
    }
}
