import Testing

@testable import InLongAgent

/// The file-set rules, scan by scan, with no files.
@Suite struct FileRegistryTests {
    func identity(_ inode: UInt64, fingerprint: UInt64 = 1) -> Checkpoint.FileIdentity {
        .init(device: 1, inode: inode, fingerprint: fingerprint, fingerprintLength: 1024)
    }

    func found(_ path: String, _ inode: UInt64) -> FileRegistry.Found {
        .init(path: path, device: 1, inode: inode, source: 0)
    }

    @Test func theFirstScanOpensEveryFileAndSaysItIsTheFirst() {
        var registry = FileRegistry(checkpoint: Checkpoint(), maxOpenFiles: 10)
        #expect(registry.scanned([self.found("/a", 1), self.found("/b", 2)]) == [.open(self.found("/a", 1), firstScan: true), .open(self.found("/b", 2), firstScan: true)])
        #expect(registry.scanned([self.found("/c", 3)]) == [.open(self.found("/c", 3), firstScan: false)])
    }

    @Test func anOpenFileIsNotOpenedAgainAndARenameIsAMove() {
        var registry = FileRegistry(checkpoint: Checkpoint(), maxOpenFiles: 10)
        _ = registry.scanned([self.found("/a", 1)])
        registry.opened(self.identity(1), path: "/a", committed: 0)
        #expect(registry.scanned([self.found("/a", 1)]).isEmpty)
        #expect(registry.scanned([self.found("/a.1", 1)]) == [.moved(.init(device: 1, inode: 1), to: "/a.1")])
    }

    @Test func openFilesAreBounded() {
        var registry = FileRegistry(checkpoint: Checkpoint(), maxOpenFiles: 1)
        #expect(registry.scanned([self.found("/a", 1), self.found("/b", 2)]).count == 1)
        registry.opened(self.identity(1), path: "/a", committed: 0)
        #expect(registry.scanned([self.found("/a", 1), self.found("/b", 2)]).isEmpty)
        registry.released(self.identity(1))
        #expect(registry.scanned([self.found("/b", 2)]) == [.open(self.found("/b", 2), firstScan: false)])
    }

    @Test func theCheckpointOffsetNeedsTheSameFirstBytes() {
        let entry = Checkpoint.Entry(identity: self.identity(1, fingerprint: 7), path: "/a", offset: 42)
        let registry = FileRegistry(checkpoint: Checkpoint(files: [entry]), maxOpenFiles: 10)
        #expect(registry.checkpointOffset(for: self.identity(1, fingerprint: 7)) { $0 == self.identity(1, fingerprint: 7) } == 42)
        #expect(registry.checkpointOffset(for: self.identity(1, fingerprint: 8)) { _ in false } == nil)
        #expect(registry.checkpointOffset(for: self.identity(2, fingerprint: 7)) { _ in true } == nil)
    }

    @Test func theCheckpointHoldsOpenAndReleasedFilesUntilAScanNoLongerFindsThem() {
        var registry = FileRegistry(checkpoint: Checkpoint(), maxOpenFiles: 10)
        _ = registry.scanned([self.found("/a", 1)])
        registry.opened(self.identity(1), path: "/a", committed: 0)
        registry.committed(self.identity(1), offset: 100)
        let first = registry.checkpoint()
        #expect(first?.files.map(\.offset) == [100])
        let unchanged = registry.checkpoint()
        #expect(unchanged == nil)
        registry.released(self.identity(1))
        let released = registry.checkpoint()
        #expect(released?.files.map(\.offset) == [100])
        _ = registry.scanned([self.found("/a", 1)])
        let stillFound = registry.checkpoint()
        #expect(stillFound == nil)
        _ = registry.scanned([])
        let gone = registry.checkpoint()
        #expect(gone?.files.isEmpty == true)
    }
}
