/// Which files the agent reads, which it knows from the checkpoint, and what the checkpoint holds: the file-set
/// rules with no I/O. The agent feeds it scans and offsets, and writes what ``checkpoint()`` returns.
struct FileRegistry {
    /// A file as the scanner saw it.
    struct Found: Hashable {
        var path: String
        var device: UInt64
        var inode: UInt64
        /// Index of the source whose paths matched.
        var source: Int
        /// Its size when found.
        var size: Int64 = 0
    }

    struct Key: Hashable {
        var device: UInt64
        var inode: UInt64
    }

    /// A file being read.
    struct Live {
        var identity: Checkpoint.FileIdentity
        var path: String
        var committed: Int64
    }

    enum Decision: Equatable {
        /// Start reading the file (from its checkpoint, or where the source says for a file without one).
        case open(Found, firstScan: Bool)
        /// A file being read was found at another path (renamed, still matching).
        case moved(Key, to: String)
    }

    private(set) var live: [Key: Live] = [:]
    /// Checkpoint entries of files not being read: loaded at start, or kept after a release until a scan no
    /// longer finds the file.
    private(set) var known: [Key: Checkpoint.Entry] = [:]
    /// Known files closed because they did not grow for their source's `closeInactive`, with how far they were
    /// read then: a scan opens one again only once it grew past that, or shrank below its offset (truncated).
    private(set) var inactive: [Key: Int64] = [:]
    private(set) var scans = 0
    /// The order in which known files were released (entries loaded from the checkpoint count as 0).
    private var releases: [Key: Int] = [:]
    private var releaseCount = 0
    /// Files the last scan found that wait for a slot (``maxOpenFiles``).
    private(set) var waiting = 0
    /// Bytes of the files waiting for a slot past their checkpoint offsets: lag that no instance reports yet.
    private(set) var waitingBytes: Int64 = 0
    /// Whether offsets or the file set changed since the last ``checkpoint()``.
    private(set) var changed = false
    let maxOpenFiles: Int

    init(checkpoint: Checkpoint, maxOpenFiles: Int) {
        for entry in checkpoint.files {
            self.known[Key(device: entry.identity.device, inode: entry.identity.inode)] = entry
        }
        self.maxOpenFiles = maxOpenFiles
    }

    /// A scan found these files (the first match wins for a file two sources match): which to open, which moved.
    /// Checkpoint entries of files no scan finds any more are dropped, unless `present` names them: files still at
    /// their paths that no source matches now (a task removed or changing keeps its files' offsets for the task
    /// that matches them next).
    mutating func scanned(_ files: [Found], present: Set<Key> = []) -> [Decision] {
        let firstScan = self.scans == 0
        self.scans += 1
        var decisions: [Decision] = []
        var seen = Set<Key>()
        var opening = 0
        var waiting = 0
        var waitingBytes: Int64 = 0
        // Files never read first; then files with bytes past their offset, the one released longest ago first; then
        // files with nothing new. A file released and found again must not take the slot a file with lines needs,
        // and files taking turns must not always leave the same one waiting.
        let ordered = files.enumerated().sorted { a, b in
            self.turn(of: a.element, position: a.offset) < self.turn(of: b.element, position: b.offset)
        }.map(\.element)
        for file in ordered {
            let key = Key(device: file.device, inode: file.inode)
            guard seen.insert(key).inserted else { continue }
            if let live = self.live[key] {
                if live.path != file.path, !files.contains(where: { $0.path == live.path && Key(device: $0.device, inode: $0.inode) == key }) {
                    decisions.append(.moved(key, to: file.path))
                }
                continue
            }
            // Closed while inactive and not grown since: it stays closed, its entry kept. Bytes written after the
            // last read make it larger than what was read, so a line written as it was closed reopens it.
            if let read = self.inactive[key], let entry = self.known[key], file.size <= read, file.size >= entry.offset {
                if entry.path != file.path {
                    self.known[key]?.path = file.path
                    self.changed = true
                }
                continue
            }
            guard self.live.count + opening < self.maxOpenFiles else {
                waiting += 1
                waitingBytes += max(0, file.size - (self.known[key]?.offset ?? 0))
                continue
            }
            opening += 1
            decisions.append(.open(file, firstScan: firstScan))
        }
        self.waiting = waiting
        self.waitingBytes = waitingBytes
        let before = self.known.count
        self.known = self.known.filter { seen.contains($0.key) || present.contains($0.key) }
        self.releases = self.releases.filter { self.known[$0.key] != nil }
        self.inactive = self.inactive.filter { self.known[$0.key] != nil }
        if self.known.count != before { self.changed = true }
        return decisions
    }

    /// Where a found file comes in the queue for a slot.
    private func turn(of file: Found, position: Int) -> Turn {
        let key = Key(device: file.device, inode: file.inode)
        guard let entry = self.known[key] else { return Turn(rank: 0, released: 0, position: position) }
        return Turn(rank: file.size > entry.offset ? 1 : 2, released: self.releases[key] ?? 0, position: position)
    }

    private struct Turn: Comparable {
        var rank: Int
        var released: Int
        var position: Int

        static func < (a: Self, b: Self) -> Bool {
            (a.rank, a.released, a.position) < (b.rank, b.released, b.position)
        }
    }

    /// Where to start reading the file now open with `identity`: at its checkpoint if the entry names this file
    /// (`matches`: the file still begins with the bytes the entry's fingerprint covers), otherwise at its start, or
    /// at its end for a file found by the first scan of a source that starts at the end.
    func start(
        for identity: Checkpoint.FileIdentity,
        firstScan: Bool,
        startAtEnd: Bool,
        matches: (Checkpoint.FileIdentity) -> Bool
    ) -> FileTail.Offset {
        // Checked this way round: compared with itself, the open file would always match, and a copytruncated file
        // of another length would resume at the old offset in new content.
        if let entry = self.known[Key(device: identity.device, inode: identity.inode)], matches(entry.identity) {
            return .at(entry.offset)
        }
        return firstScan && startAtEnd ? .end : .beginning
    }

    mutating func opened(_ identity: Checkpoint.FileIdentity, path: String, committed: Int64) {
        let key = Key(device: identity.device, inode: identity.inode)
        self.known[key] = nil
        self.releases[key] = nil
        self.inactive[key] = nil
        self.live[key] = Live(identity: identity, path: path, committed: committed)
        self.changed = true
    }

    mutating func moved(_ key: Key, to path: String) {
        self.live[key]?.path = path
        self.changed = true
    }

    /// A live file's committed offset, and its identity (its fingerprint is taken again after a copytruncate).
    mutating func committed(_ identity: Checkpoint.FileIdentity, offset: Int64) {
        let key = Key(device: identity.device, inode: identity.inode)
        guard let live = self.live[key], live.committed != offset || live.identity != identity else { return }
        self.live[key]?.committed = offset
        self.live[key]?.identity = identity
        self.changed = true
    }

    /// The file is no longer read: its entry is kept until a scan no longer finds it, so that a file found again
    /// (renamed to a matching name) resumes where it was. `inactiveAt`: it was closed because it did not grow, read
    /// to there (its committed offset, or past it by a last line without its newline); scans leave it closed until
    /// it is larger.
    mutating func released(_ identity: Checkpoint.FileIdentity, inactiveAt read: Int64? = nil) {
        let key = Key(device: identity.device, inode: identity.inode)
        guard let live = self.live.removeValue(forKey: key) else { return }
        if let read { self.inactive[key] = max(read, live.committed) }
        self.known[key] = Checkpoint.Entry(identity: live.identity, path: live.path, offset: live.committed)
        self.releaseCount += 1
        self.releases[key] = self.releaseCount
        self.changed = true
    }

    /// The checkpoint to write, when something changed since the last one.
    mutating func checkpoint(force: Bool = false) -> Checkpoint? {
        guard self.changed || force else { return nil }
        self.changed = false
        var entries = self.live.values.map { Checkpoint.Entry(identity: $0.identity, path: $0.path, offset: $0.committed) }
        entries += self.known.values
        return Checkpoint(files: entries.sorted { $0.path < $1.path })
    }

    var openFiles: Int { self.live.count }

    /// Every file it holds (read or known from the checkpoint), with its last path.
    var paths: [(key: Key, path: String)] {
        self.live.map { ($0.key, $0.value.path) } + self.known.map { ($0.key, $0.value.path) }
    }
}
