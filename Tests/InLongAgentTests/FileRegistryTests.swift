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

    @Test func aFileFoundAtTwoPathsIsOpenedOnceAndNeitherIsAMove() {
        // A symbolic link and its target, or two patterns matching one file: same device and inode.
        var registry = FileRegistry(checkpoint: Checkpoint(), maxOpenFiles: 10)
        #expect(registry.scanned([self.found("/logs/app.log", 1), self.found("/data/app.log", 1)]) == [.open(self.found("/logs/app.log", 1), firstScan: true)])
        registry.opened(self.identity(1), path: "/logs/app.log", committed: 0)
        #expect(registry.scanned([self.found("/data/app.log", 1), self.found("/logs/app.log", 1)]).isEmpty)
    }

    @Test func openFilesAreBounded() {
        var registry = FileRegistry(checkpoint: Checkpoint(), maxOpenFiles: 1)
        #expect(registry.scanned([self.found("/a", 1), self.found("/b", 2)]).count == 1)
        registry.opened(self.identity(1), path: "/a", committed: 0)
        #expect(registry.scanned([self.found("/a", 1), self.found("/b", 2)]).isEmpty)
        registry.released(self.identity(1))
        #expect(registry.scanned([self.found("/b", 2)]) == [.open(self.found("/b", 2), firstScan: false)])
    }

    /// `closeInactive`: a file closed because it did not grow stays closed while scans find it no larger than it
    /// was read; it is opened again once it grew (a line written as it was closed included), or was truncated.
    @Test func aFileClosedAsInactiveIsOpenedAgainOnlyOnceItGrewOrShrank() {
        var registry = FileRegistry(checkpoint: Checkpoint(), maxOpenFiles: 10)
        func found(_ size: Int64, path: String = "/a") -> FileRegistry.Found {
            .init(path: path, device: 1, inode: 1, source: 0, size: size)
        }
        _ = registry.scanned([found(100)])
        registry.opened(self.identity(1), path: "/a", committed: 0)
        registry.committed(self.identity(1), offset: 100)
        // Read to 120: a last line of 20 bytes waits for its newline.
        registry.released(self.identity(1), inactiveAt: 120)
        #expect(registry.scanned([found(120)]).isEmpty)
        #expect(registry.scanned([found(110)]).isEmpty)
        // Renamed while closed: its entry follows it, still closed.
        #expect(registry.scanned([found(120, path: "/b")]).isEmpty)
        #expect(registry.checkpoint(force: true)?.files.map(\.path) == ["/b"])
        #expect(registry.start(for: self.identity(1), firstScan: false, startAtEnd: false) { _ in true } == .at(100))
        // The newline came: opened again, at the committed offset.
        #expect(registry.scanned([found(121, path: "/b")]) == [.open(found(121, path: "/b"), firstScan: false)])
        registry.opened(self.identity(1), path: "/b", committed: 100)
        #expect(registry.inactive.isEmpty)
        // Truncated below its offset while closed: opened again (it is read from its start).
        registry.released(self.identity(1), inactiveAt: 100)
        #expect(registry.scanned([found(100, path: "/b")]).isEmpty)
        #expect(registry.scanned([found(40, path: "/b")]) == [.open(found(40, path: "/b"), firstScan: false)])
        // A file released for another reason (its path renamed away) is opened by the next scan that finds it.
        registry.opened(self.identity(1), path: "/b", committed: 40)
        registry.released(self.identity(1))
        #expect(registry.scanned([found(40, path: "/b")]) == [.open(found(40, path: "/b"), firstScan: false)])
    }

    /// Found by the file-set simulation (seed 3000): with more files than slots, the files released and found
    /// again took their turns in path order, and a file with unread lines after them waited for ever.
    @Test func filesTakingTurnsForSlotsLetTheOneWithUnreadLinesIn() {
        var registry = FileRegistry(checkpoint: Checkpoint(), maxOpenFiles: 2)
        func found(_ path: String, _ inode: UInt64, size: Int64) -> FileRegistry.Found {
            .init(path: path, device: 1, inode: inode, source: 0, size: size)
        }
        for inode: UInt64 in 1...3 {
            registry.opened(self.identity(inode), path: "/\(inode)", committed: 0)
            registry.committed(self.identity(inode), offset: 100)
            registry.released(self.identity(inode))
        }
        // /3 grew past its offset; /1 and /2 did not.
        let files = [found("/1", 1, size: 100), found("/2", 2, size: 100), found("/3", 3, size: 150)]
        #expect(registry.scanned(files) == [.open(files[2], firstScan: true), .open(files[0], firstScan: true)])
        #expect(registry.waiting == 1)
        registry.opened(self.identity(3), path: "/3", committed: 100)
        registry.opened(self.identity(1), path: "/1", committed: 100)
        // Released again: /1 went last, so /2, released before it, comes first.
        registry.released(self.identity(1))
        #expect(registry.scanned(files) == [.open(files[1], firstScan: false)])
    }

    @Test func theCheckpointOffsetNeedsTheSameFirstBytes() {
        let entry = Checkpoint.Entry(identity: self.identity(1, fingerprint: 7), path: "/a", offset: 42)
        let registry = FileRegistry(checkpoint: Checkpoint(files: [entry]), maxOpenFiles: 10)
        let identity = self.identity(1, fingerprint: 7)
        #expect(registry.start(for: identity, firstScan: true, startAtEnd: true) { $0 == identity } == .at(42))
        #expect(registry.start(for: self.identity(1, fingerprint: 8), firstScan: false, startAtEnd: true) { _ in false } == .beginning)
        #expect(registry.start(for: self.identity(1, fingerprint: 8), firstScan: true, startAtEnd: true) { _ in false } == .end)
        #expect(registry.start(for: self.identity(2, fingerprint: 7), firstScan: true, startAtEnd: false) { _ in true } == .beginning)
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
