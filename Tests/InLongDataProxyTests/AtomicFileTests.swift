import Dispatch
import Foundation
import InLongWire
import Synchronization
import Testing

@testable import InLongDataProxy

#if canImport(Glibc)
import Glibc
#endif

@Suite struct AtomicFileTests {
    private func withDirectory<Result>(_ body: (String) throws -> Result) throws -> Result {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("inlong-atomic-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer {
            chmod(directory, 0o755)
            try? FileManager.default.removeItem(atPath: directory)
        }
        return try body(directory)
    }

    private func entries(_ directory: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).sorted()
    }

    @Test func everyWriteLeavesTheWholeFileAndNoTemporaryFile() throws {
        try self.withDirectory { directory in
            let path = directory + "/state.json"
            var random = SplitMix64(seed: 25)
            for round in 0..<50 {
                // Shorter and longer than the file before: a rewrite in place would leave a tail or a hole.
                let bytes = (0..<Int.random(in: 0...5000, using: &random)).map { _ in UInt8.random(in: 0...255, using: &random) }
                try AtomicFile.write(bytes, to: path)
                #expect(FileManager.default.contents(atPath: path) == Data(bytes), "round \(round)")
                #expect(self.entries(directory) == ["state.json"], "round \(round)")
            }
        }
    }

    @Test func aMissingDirectoryIsATypedErrorNamingThePath() throws {
        try self.withDirectory { directory in
            let path = directory + "/missing/state.json"
            #expect(throws: AtomicFileError.self) { try AtomicFile.write(Array("x".utf8), to: path) }
            do {
                try AtomicFile.write(Array("x".utf8), to: path)
            } catch let error as AtomicFileError {
                #expect(error.operation == .createTemporary)
                #expect(error.errno == ENOENT)
                #expect(error.path.hasPrefix(directory + "/missing/.state.json.tmp-"))
                #expect(error.description.hasPrefix("cannot create a temporary file \(directory)/missing/"))
            }
            #expect(self.entries(directory) == [])
        }
    }

    @Test func aFailedRenameLeavesTheOldFileAndNoTemporaryFile() throws {
        try self.withDirectory { directory in
            // A directory where the file should be: the temporary file is written, the rename fails.
            let path = directory + "/state.json"
            try FileManager.default.createDirectory(atPath: path + "/inside", withIntermediateDirectories: true)
            do {
                try AtomicFile.write(Array("new".utf8), to: path)
                Issue.record("the write should fail")
            } catch let error as AtomicFileError {
                #expect(error.operation == .rename)
                #expect(error.path == path)
                #expect(error.errno == EISDIR || error.errno == ENOTEMPTY || error.errno == EEXIST)
            }
            #expect(self.entries(directory) == ["state.json"])
            #expect(self.entries(path) == ["inside"])
        }
    }

    @Test func concurrentWritersEachLeaveAWholeFile() throws {
        try self.withDirectory { directory in
            let path = directory + "/cache.json"
            let contents = (0..<4).map { writer in [UInt8](repeating: UInt8(writer), count: 64 << 10) }
            let failures = Mutex(0)
            // Threads, not tasks: blocking file I/O stays off the cooperative pool.
            DispatchQueue.concurrentPerform(iterations: contents.count) { writer in
                for _ in 0..<25 {
                    do { try AtomicFile.write(contents[writer], to: path) } catch { failures.withLock { $0 += 1 } }
                }
            }
            #expect(failures.withLock { $0 } == 0)
            let final = try #require(FileManager.default.contents(atPath: path))
            #expect(contents.contains([UInt8](final)))
            #expect(self.entries(directory) == ["cache.json"])
        }
    }

    @Test func theDirectoryOfAPath() {
        #expect(AtomicFile.directory(of: "/a/b/c.json") == "/a/b")
        #expect(AtomicFile.directory(of: "/c.json") == "/")
        #expect(AtomicFile.directory(of: "c.json") == ".")
        #expect(AtomicFile.directory(of: "a/c.json") == "a")
    }
}
