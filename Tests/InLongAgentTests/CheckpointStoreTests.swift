import Foundation
import InLongDataProxy
import Testing

@testable import InLongAgent

@Suite struct CheckpointStoreTests {
    private func temporaryDirectory() throws -> String {
        let path = NSTemporaryDirectory() + "inlong-agent-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    private let identity = Checkpoint.FileIdentity(device: 2049, inode: 77, fingerprint: 0xfeed, fingerprintLength: 1024)

    @Test func savedCheckpointLoadsBack() throws {
        let directory = try self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let store = CheckpointStore(path: directory + "/checkpoint.json")
        let checkpoint = Checkpoint(files: [.init(identity: self.identity, path: "/var/log/app.log", offset: 12_345)])
        try store.save(checkpoint)
        let (loaded, recovery) = try store.load()
        #expect(recovery == nil)
        #expect(loaded == checkpoint)
        #expect(loaded.entry(for: self.identity)?.offset == 12_345)
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory) == ["checkpoint.json"])
    }

    /// A save killed before its rename leaves a temporary file: the next start removes those of processes that are
    /// gone, and keeps a live process's (it may be writing) and files that only look alike.
    @Test func aStartRemovesTheTemporaryFilesOfKilledSaves() throws {
        let directory = try self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let store = CheckpointStore(path: directory + "/checkpoint.json")
        try store.save(Checkpoint(files: [.init(identity: self.identity, path: "/var/log/app.log", offset: 7)]))
        // No process has a pid above the kernel's maximum (2^22).
        let dead = [".checkpoint.json.tmp-2147483647-12345", ".checkpoint.json.tmp-2147483646-1"]
        let kept = [".checkpoint.json.tmp-\(getpid())-99", ".checkpoint.json.tmp-2147483647-notanumber", ".other.json.tmp-2147483647-1", "notes.txt"]
        for name in dead + kept {
            #expect(FileManager.default.createFile(atPath: directory + "/" + name, contents: Data("{".utf8)))
        }
        let (loaded, recovery) = try store.load()
        #expect(recovery == nil)
        #expect(loaded.entry(for: self.identity)?.offset == 7)
        #expect(try Set(FileManager.default.contentsOfDirectory(atPath: directory)) == Set(kept + ["checkpoint.json"]))
    }

    @Test func aCheckpointThatCannotBeWrittenSaysWhereAndWhy() throws {
        let directory = try self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let store = CheckpointStore(path: directory + "/gone/checkpoint.json")
        #expect {
            try store.save(Checkpoint(files: [.init(identity: self.identity, path: "/var/log/app.log", offset: 1)]))
        } throws: { error in
            guard let error = error as? AtomicFileError else { return false }
            return error.operation == .createTemporary && error.path.hasPrefix(directory + "/gone/") && error.errno == ENOENT
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory) == [])
    }

    @Test func aMissingFileIsAnEmptyCheckpoint() throws {
        let directory = try self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let (loaded, recovery) = try CheckpointStore(path: directory + "/none.json").load()
        #expect(loaded.files.isEmpty)
        #expect(recovery == nil)
    }

    @Test(arguments: ["{not json", "", "{\"version\":1}", "{\"version\":99,\"files\":[]}", "\u{0}\u{1}garbage"])
    func aCorruptFileIsSetAsideAndReported(contents: String) throws {
        let directory = try self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/checkpoint.json"
        try Data(contents.utf8).write(to: URL(fileURLWithPath: path))
        let store = CheckpointStore(path: path)
        let (loaded, recovery) = try store.load()
        #expect(loaded.files.isEmpty)
        let aside = try #require(recovery?.setAsidePath)
        #expect(FileManager.default.contents(atPath: aside) == Data(contents.utf8))
        #expect(!FileManager.default.fileExists(atPath: path))
        // The agent goes on: a new checkpoint can be written in its place.
        try store.save(Checkpoint(files: [.init(identity: self.identity, path: "a", offset: 1)]))
        #expect(try store.load().0.files.count == 1)
    }

    @Test func saveReplacesThePreviousCheckpoint() throws {
        let directory = try self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let store = CheckpointStore(path: directory + "/checkpoint.json")
        for offset in [10, 20, 30] as [Int64] {
            try store.save(Checkpoint(files: [.init(identity: self.identity, path: "a", offset: offset)]))
        }
        #expect(try store.load().0.files.map(\.offset) == [30])
    }
}
