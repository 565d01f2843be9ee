import NIOCore

#if canImport(Glibc)
import Glibc
#endif

/// One file as a source: its lines, read from an open descriptor (so that a renamed or deleted file is read to
/// its end), released once the path no longer names it and it stopped growing.
public final class FileSource: AgentSource {
    public let tail: FileTail
    private let releaseAfter: Duration
    /// When the file was last seen to grow, or the path to name it.
    private var lastActivity: ContinuousClock.Instant
    private var lastSize: Int64 = -1
    private var lastPathCheck: ContinuousClock.Instant
    private var pathState = FileTail.PathState.same
    /// Empty lines skipped (they are not records).
    public private(set) var emptyLines = 0
    /// The file's new path when a scan found it renamed to another matching name.
    private let movedPath: () -> String?

    public init(tail: FileTail, releaseAfter: Duration, now: ContinuousClock.Instant = .now, movedPath: @escaping () -> String? = { nil }) {
        self.tail = tail
        self.releaseAfter = releaseAfter
        self.movedPath = movedPath
        self.lastActivity = now
        self.lastPathCheck = now
    }

    public func read(maxBytes: Int) throws -> SourceData<OffsetTracker.Ticket>? {
        let start = self.tail.readOffset
        guard let read = try self.tail.readLines(maxBytes: maxBytes) else { return nil }
        var records = read.lines
        let before = records.count
        records.removeAll { $0.readableBytes == 0 }
        self.emptyLines += before - records.count
        // After a truncation the read starts at 0 again: the bytes are those of this read.
        let bytes = Int(read.ticket.end - (read.ticket.end > start ? start : 0))
        return SourceData(records: records, position: read.ticket, bytes: bytes)
    }

    public func ack(_ position: OffsetTracker.Ticket) {
        self.tail.ack(position)
    }

    public func isExhausted(now: ContinuousClock.Instant) -> Bool {
        if self.tail.size != self.lastSize {
            self.lastSize = self.tail.size
            self.lastActivity = now
        }
        // The path is looked at a few times a second, not at every poll.
        if now - self.lastPathCheck >= .milliseconds(250) {
            self.lastPathCheck = now
            if let path = self.movedPath() { self.tail.path = path }
            self.pathState = self.tail.pathState()
            if self.pathState == .same { self.lastActivity = now }
        }
        return self.pathState != .same && now - self.lastActivity >= self.releaseAfter
    }
}

/// The regular files matching a glob pattern, sorted.
func expandGlob(_ pattern: String) -> [String] {
    var result = glob_t()
    defer { globfree(&result) }
    guard glob(pattern, 0, nil, &result) == 0 else { return [] }
    var paths: [String] = []
    for index in 0..<Int(result.gl_pathc) {
        guard let pointer = result.gl_pathv[index] else { continue }
        let path = String(cString: pointer)
        var info = stat()
        if stat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG { paths.append(path) }
    }
    return paths
}

/// Device and inode of the file at `path`.
func fileKey(_ path: String) -> (device: UInt64, inode: UInt64)? {
    var info = stat()
    guard stat(path, &info) == 0 else { return nil }
    return (UInt64(info.st_dev), UInt64(info.st_ino))
}
