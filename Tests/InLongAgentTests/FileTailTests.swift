import Foundation
@testable import InLongAgent
import NIOCore
import Testing

/// Reading real files in a temporary directory: growth, partial lines, truncation, rotation and deletion.
@Suite struct FileTailTests {
    private final class Directory {
        let path = NSTemporaryDirectory() + "inlong-tail-\(UUID().uuidString)"
        init() throws { try FileManager.default.createDirectory(atPath: self.path, withIntermediateDirectories: true) }
        deinit { try? FileManager.default.removeItem(atPath: self.path) }

        func write(_ name: String, _ text: String) throws {
            try Data(text.utf8).write(to: URL(fileURLWithPath: self.path + "/" + name))
        }

        /// Overwrites the file through the same inode (no new file, unlike an atomic write).
        func rewriteInPlace(_ name: String, _ text: String) throws {
            let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: self.path + "/" + name))
            try handle.truncate(atOffset: 0)
            try handle.write(contentsOf: Data(text.utf8))
            try handle.close()
        }

        func inode(_ name: String) throws -> UInt64 {
            try #require(FileManager.default.attributesOfItem(atPath: self.path + "/" + name)[.systemFileNumber] as? UInt64)
        }

        func append(_ name: String, _ text: String) throws {
            let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: self.path + "/" + name))
            try handle.seekToEnd()
            try handle.write(contentsOf: Data(text.utf8))
            try handle.close()
        }
    }

    private func tail(_ directory: Directory, _ name: String, at offset: FileTail.Offset = .beginning) throws -> FileTail {
        try FileTail(path: directory.path + "/" + name, startingAt: offset, maxLineLength: 64, overlong: .truncate)
    }

    private func lines(_ read: FileTail.Read?) -> [String] {
        read?.lines.map { String(buffer: $0) } ?? []
    }

    /// A rate-limited read is exact: it ends after the record that reaches its count or its bytes, and the next
    /// read goes on from there, without a line lost, read twice or split (the empty line is no record).
    @Test func anExactReadEndsAtItsRecordOrByteLimit() throws {
        let directory = try Directory()
        try directory.write("app.log", "one\ntwo\n\nthree\nfour\nfive\nsix\nseven")
        let tail = try self.tail(directory, "app.log")
        let first = try #require(try tail.readLines(maxBytes: 1 << 20, maxRecords: 2))
        #expect(self.lines(first) == ["one", "two"])
        #expect(first.bytes == 8)
        // 5 bytes: "three\n" (and the empty line before it) is the line that reaches them.
        let second = try #require(try tail.readLines(maxBytes: 5, maxRecords: .max))
        #expect(self.lines(second) == ["three"])
        #expect(second.bytes == 7)
        let third = try #require(try tail.readLines(maxBytes: 6, maxRecords: 5))
        #expect(self.lines(third) == ["four", "five"])
        // The last line has no newline yet: held, as in a plain read.
        #expect(self.lines(try tail.readLines(maxBytes: 1 << 20, maxRecords: 1)) == ["six"])
        #expect(try tail.readLines(maxBytes: 1 << 20, maxRecords: 1) == nil)
        try directory.append("app.log", "\neight\n")
        #expect(self.lines(try tail.readLines(maxBytes: 1, maxRecords: 9)) == ["seven"])
        #expect(self.lines(try tail.readLines(maxBytes: 1 << 20)) == ["eight"])
        #expect(tail.readOffset == 41)
    }

    @Test func linesAppendedOverTimeAreReadOnceAndCommittedWhenAcked() throws {
        let directory = try Directory()
        try directory.write("app.log", "one\ntwo\nthr")
        let tail = try self.tail(directory, "app.log")
        let first = try tail.readLines(maxBytes: 1 << 20)
        #expect(self.lines(first) == ["one", "two"])
        #expect(try tail.readLines(maxBytes: 1 << 20) == nil)
        try directory.append("app.log", "ee\nfour\n")
        let second = try tail.readLines(maxBytes: 1 << 20)
        #expect(self.lines(second) == ["three", "four"])
        #expect(tail.committedOffset == 0)
        tail.ack(try #require(second).ticket)
        #expect(tail.committedOffset == 0)
        tail.ack(try #require(first).ticket)
        #expect(tail.committedOffset == 19)
        #expect(tail.isDrained)
    }

    @Test func readingResumesAtACheckpoint() throws {
        let directory = try Directory()
        try directory.write("app.log", "one\ntwo\nthree\n")
        let tail = try self.tail(directory, "app.log", at: .at(8))
        #expect(self.lines(try tail.readLines(maxBytes: 1 << 20)) == ["three"])
    }

    @Test func aNewFileCanStartAtItsEnd() throws {
        let directory = try Directory()
        try directory.write("app.log", "old\n")
        let tail = try self.tail(directory, "app.log", at: .end)
        #expect(try tail.readLines(maxBytes: 1 << 20) == nil)
        try directory.append("app.log", "new\n")
        #expect(self.lines(try tail.readLines(maxBytes: 1 << 20)) == ["new"])
    }

    @Test func copytruncateIsReadAgainFromTheStartAndCounted() throws {
        let directory = try Directory()
        try directory.write("app.log", "one\ntwo\n")
        let tail = try self.tail(directory, "app.log")
        let before = try #require(try tail.readLines(maxBytes: 1 << 20))
        try directory.rewriteInPlace("app.log", "x\n")
        #expect(self.lines(try tail.readLines(maxBytes: 1 << 20)) == ["x"])
        #expect(tail.truncations == 1)
        // The ack of what was read before the truncation does not move the new generation's offset.
        tail.ack(before.ticket)
        #expect(tail.committedOffset == 0)
    }

    @Test func aCheckpointPastTheEndOfAShorterFileStartsOver() throws {
        let directory = try Directory()
        try directory.write("app.log", "short\n")
        let tail = try self.tail(directory, "app.log", at: .at(4096))
        #expect(self.lines(try tail.readLines(maxBytes: 1 << 20)) == ["short"])
    }

    @Test func aRenamedFileIsStillReadAndThePathShowsItsReplacement() throws {
        let directory = try Directory()
        try directory.write("app.log", "one\n")
        let tail = try self.tail(directory, "app.log")
        #expect(tail.pathState() == .same)
        try directory.append("app.log", "two\n")
        try FileManager.default.moveItem(atPath: directory.path + "/app.log", toPath: directory.path + "/app.log.1")
        #expect(tail.pathState() == .missing)
        try directory.write("app.log", "new file\n")
        #expect(tail.pathState() == .replaced)
        // The open descriptor still reads the old file to its end.
        #expect(self.lines(try tail.readLines(maxBytes: 1 << 20)) == ["one", "two"])
    }

    @Test func aDeletedFileIsDrainedThroughItsDescriptor() throws {
        let directory = try Directory()
        try directory.write("app.log", "kept\n")
        let tail = try self.tail(directory, "app.log")
        try FileManager.default.removeItem(atPath: directory.path + "/app.log")
        #expect(tail.pathState() == .missing)
        #expect(self.lines(try tail.readLines(maxBytes: 1 << 20)) == ["kept"])
    }

    @Test func aReusedInodeWithOtherContentIsAnotherFile() throws {
        let directory = try Directory()
        try directory.write("app.log", "first content\n")
        let tail = try self.tail(directory, "app.log")
        // Rewritten in place (same inode, same length, other bytes): the fingerprint tells them apart.
        let inode = try directory.inode("app.log")
        try directory.rewriteInPlace("app.log", "other content\n")
        #expect(try directory.inode("app.log") == inode)
        #expect(tail.pathState() == .replaced)
    }

    @Test func overlongLinesAreTruncatedAndCounted() throws {
        let directory = try Directory()
        try directory.write("app.log", String(repeating: "x", count: 200) + "\nok\n")
        let tail = try self.tail(directory, "app.log")
        let read = self.lines(try tail.readLines(maxBytes: 1 << 20))
        #expect(read == [String(repeating: "x", count: 64), "ok"])
        #expect(tail.overlongLines == 1)
    }
}

/// A failed read is an error with its cause, never taken for the end of the file.
@Suite struct FileReadFailureTests {
    @Test func aFailedPreadIsAnErrorNotTheEnd() throws {
        var fds: [Int32] = [0, 0]
        #expect(pipe(&fds) == 0)
        defer { close(fds[0]); close(fds[1]) }
        var bytes = [UInt8](repeating: 0, count: 16)
        // A pipe cannot be read at an offset: ESPIPE, which must not look like 0 bytes (the end).
        let failed = bytes.withUnsafeMutableBytes { preadRetrying(fds[0], into: $0, at: 0) }
        #expect(failed == -Int(ESPIPE))

        let path = NSTemporaryDirectory() + "inlong-pread-\(UUID().uuidString)"
        #expect(FileManager.default.createFile(atPath: path, contents: Data("abc".utf8)))
        defer { try? FileManager.default.removeItem(atPath: path) }
        let fd = open(path, O_RDONLY)
        defer { close(fd) }
        #expect(bytes.withUnsafeMutableBytes { preadRetrying(fd, into: $0, at: 0) } == 3)
        #expect(bytes.withUnsafeMutableBytes { preadRetrying(fd, into: $0, at: 3) } == 0)
    }
}
