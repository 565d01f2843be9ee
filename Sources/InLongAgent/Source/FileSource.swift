import Foundation
import NIOCore

#if canImport(Glibc)
import Glibc
#endif

/// One file as a source: its lines, read from an open descriptor (so that a renamed or deleted file is read to
/// its end), released once the path no longer names it and it stopped growing.
final class FileSource: AgentSource {
    let tail: FileTail
    private let releaseAfter: Duration
    /// A file that has not grown for this long is closed (its offset kept) until it grows (`nil`: never).
    private let closeInactive: Duration?
    /// When the file was last seen to grow (or was opened).
    private var lastGrowth: ContinuousClock.Instant
    /// The source ended because the file did not grow for ``closeInactive``, not because it was released.
    private(set) var closedInactive = false
    /// When the file was last seen to grow, or the path to name it.
    private var lastActivity: ContinuousClock.Instant
    private var lastSize: Int64 = -1
    private var lastPathCheck: ContinuousClock.Instant
    private var pathState = FileTail.PathState.same
    private var wasNeeded = true
    /// Empty lines skipped (they are not records).
    var emptyLines: Int { self.tail.emptyLines }
    /// The file's new path when a scan found it renamed to another matching name.
    private let movedPath: () -> String?
    /// Whether other files wait for a slot: an inactive file then gives its up (it is found again later, and
    /// resumes from its offset).
    private let othersWaiting: () -> Bool
    /// Looks at the file's path (the file system; a simulated one in tests).
    private let lookAtPath: (FileTail) -> FileTail.PathState

    convenience init(
        tail: FileTail,
        releaseAfter: Duration,
        closeInactive: Duration? = nil,
        now: ContinuousClock.Instant = .now,
        othersWaiting: @escaping () -> Bool = { false },
        movedPath: @escaping () -> String? = { nil }
    ) {
        self.init(tail: tail, releaseAfter: releaseAfter, closeInactive: closeInactive, now: now, othersWaiting: othersWaiting, movedPath: movedPath) {
            $0.pathState()
        }
    }

    init(
        tail: FileTail,
        releaseAfter: Duration,
        closeInactive: Duration? = nil,
        now: ContinuousClock.Instant,
        othersWaiting: @escaping () -> Bool,
        movedPath: @escaping () -> String?,
        lookAtPath: @escaping (FileTail) -> FileTail.PathState
    ) {
        self.tail = tail
        self.releaseAfter = releaseAfter
        self.closeInactive = closeInactive
        self.lastGrowth = now
        self.othersWaiting = othersWaiting
        self.movedPath = movedPath
        self.lookAtPath = lookAtPath
        self.lastActivity = now
        self.lastPathCheck = now
    }

    func read(maxBytes: Int, maxRecords: Int?, now: ContinuousClock.Instant) throws -> SourceData<OffsetTracker.Ticket>? {
        guard let read = try self.tail.readLines(maxBytes: maxBytes, maxRecords: maxRecords, now: now) else { return nil }
        return SourceData(records: read.lines, offsets: read.offsets, position: read.ticket, bytes: read.bytes)
    }

    func ack(_ position: OffsetTracker.Ticket) {
        self.tail.ack(position)
    }

    func isExhausted(now: ContinuousClock.Instant) -> Bool {
        // A multiline record under way is sent first (at its timeout at the latest).
        if self.tail.hasPendingRecord { return false }
        if self.tail.size != self.lastSize {
            self.lastSize = self.tail.size
            self.lastActivity = now
            self.lastGrowth = now
        }
        // Asked only when every read is acked: the file is closed at its committed offset, and a scan opens it
        // again once it grew past what was read (``FileRegistry``).
        if let closeInactive = self.closeInactive, now - self.lastGrowth >= closeInactive {
            self.closedInactive = true
            return true
        }
        // The path is looked at a few times a second, not at every poll; the file is released only right after a
        // look, so that one that was renamed to a matching name is seen at its new path first.
        guard now - self.lastPathCheck >= .milliseconds(250) else { return false }
        do {
            self.lastPathCheck = now
            if let path = self.movedPath() { self.tail.path = path }
            self.pathState = self.lookAtPath(self.tail)
            // While the path names the file and no other file waits for its slot it stays. The grace period
            // starts at the first look that finds otherwise (a scan may meanwhile find it renamed to a matching
            // name).
            let needed = self.pathState == .same && !self.othersWaiting()
            if needed || self.wasNeeded { self.lastActivity = now }
            self.wasNeeded = needed
        }
        return (self.pathState != .same || self.othersWaiting()) && now - self.lastActivity >= self.releaseAfter
    }
}

/// The regular files matching a glob pattern, sorted, each once. A `**` path component matches any number of
/// directories, from none to ``recursiveGlobDepth`` (as Filebeat's recursive glob): `/var/log/**/*.log` is
/// `/var/log/*.log`, `/var/log/*/*.log` and so on.
func expandGlob(_ pattern: String) -> [String] {
    let variants = recursiveGlobVariants(pattern)
    guard variants.count > 1 else { return regularFiles(matching: pattern) }
    return Array(Set(variants.flatMap(regularFiles(matching:)))).sorted()
}

/// How many directories `**` matches at most: bounded, so that a pattern over a deep tree costs a known number
/// of `glob` calls.
let recursiveGlobDepth = 8

/// The plain glob patterns a pattern with a `**` component stands for (the first `**`; later ones match one
/// component, as `*`); the pattern itself when it has none.
func recursiveGlobVariants(_ pattern: String) -> [String] {
    let components = pattern.split(separator: "/", omittingEmptySubsequences: false)
    guard let index = components.firstIndex(of: "**") else { return [pattern] }
    let before = components[..<index]
    let after = components[(index + 1)...]
    return (0...recursiveGlobDepth).map { depth in
        (before + Array(repeating: "*", count: depth) + after).joined(separator: "/")
    }
}

private func regularFiles(matching pattern: String) -> [String] {
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

/// Device, inode and size of the file at `path`.
func fileKey(_ path: String) -> (device: UInt64, inode: UInt64, size: Int64)? {
    var info = stat()
    guard stat(path, &info) == 0 else { return nil }
    return (UInt64(info.st_dev), UInt64(info.st_ino), Int64(info.st_size))
}

/// When the file at `path` was last modified, since the epoch.
func modificationTime(_ path: String) -> Duration? {
    guard let date = (try? FileManager.default.attributesOfItem(atPath: path))?[.modificationDate] as? Date else { return nil }
    return .milliseconds(Int64(date.timeIntervalSince1970 * 1000))
}

/// The wall clock, since the epoch (file times are on it).
func wallClockNow() -> Duration {
    .milliseconds(Int64(Date().timeIntervalSince1970 * 1000))
}
