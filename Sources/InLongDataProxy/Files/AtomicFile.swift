#if canImport(Darwin)
import Darwin
#elseif canImport(Glibc)
import Glibc
#endif
import Foundation

/// Replaces a file atomically and durably: the bytes go to a temporary file of this write's own next to it
/// (created exclusively, so concurrent writers never share one), which is synced, renamed over the file, and the
/// directory synced. A crash leaves the old file or the new one, never a torn one; a failure leaves the old file
/// and no temporary file. The SDK's proxy cache and the agent's checkpoint are written this way.
package enum AtomicFile {
    /// Writes `bytes` to `path` in place of what is there (mode 0644 before the umask). The directory must exist.
    package static func write(_ bytes: some Collection<UInt8>, to path: String) throws(AtomicFileError) {
        let (descriptor, temporary) = try Self.createTemporary(for: path)
        var failure: AtomicFileError?
        let written = bytes.withContiguousStorageIfAvailable { Self.writeAll($0, to: descriptor) }
            ?? Array(bytes).withUnsafeBufferPointer { Self.writeAll($0, to: descriptor) }
        if written != 0 {
            failure = AtomicFileError(path: temporary, operation: .write, errno: written)
        } else if fsync(descriptor) != 0 {
            failure = AtomicFileError(path: temporary, operation: .syncFile, errno: errno)
        }
        // A close that fails may have lost a write (NFS): the file is not taken.
        if close(descriptor) != 0, failure == nil {
            failure = AtomicFileError(path: temporary, operation: .write, errno: errno)
        }
        if failure == nil, rename(temporary, path) != 0 {
            failure = AtomicFileError(path: path, operation: .rename, errno: errno)
        }
        if let failure {
            unlink(temporary)
            throw failure
        }
        // The rename is durable once the directory is.
        let directory = Self.directory(of: path)
        let directoryDescriptor = open(directory, O_RDONLY | O_CLOEXEC)
        guard directoryDescriptor >= 0 else {
            throw AtomicFileError(path: directory, operation: .syncDirectory, errno: errno)
        }
        defer { close(directoryDescriptor) }
        // Some file systems cannot sync a directory (EINVAL): the rename is then as durable as they make it.
        if fsync(directoryDescriptor) != 0, errno != EINVAL {
            throw AtomicFileError(path: directory, operation: .syncDirectory, errno: errno)
        }
    }

    /// Removes the temporary files of writes to `path` whose process is gone (a kill between the create and the
    /// rename leaves one); those of a live process, which may be writing, stay. Returns how many went.
    @discardableResult
    package static func removeLeftovers(of path: String) -> Int {
        let directory = Self.directory(of: path)
        let prefix = ".\(Self.name(of: path)).tmp-"
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return 0 }
        var removed = 0
        for name in names where name.hasPrefix(prefix) {
            let fields = name.dropFirst(prefix.count).split(separator: "-")
            guard fields.count == 2, let pid = Int32(fields[0]), pid > 0, UInt32(fields[1]) != nil else { continue }
            // Signal 0 checks that the process exists; EPERM means it does, as another user's.
            guard pid != getpid(), kill(pid, 0) != 0, errno == ESRCH else { continue }
            if unlink("\(directory)/\(name)") == 0 { removed += 1 }
        }
        return removed
    }

    /// The last component of `path`.
    static func name(of path: String) -> String {
        path.lastIndex(of: "/").map { String(path[path.index(after: $0)...]) } ?? path
    }

    /// The directory holding `path` (`.` for a bare name).
    static func directory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    /// A new temporary file next to `path`, open for writing: `.<name>.tmp-<pid>-<random>`, created exclusively.
    private static func createTemporary(for path: String) throws(AtomicFileError) -> (Int32, String) {
        let directory = Self.directory(of: path)
        let name = Self.name(of: path)
        var attempt = 0
        while true {
            let temporary = "\(directory)/.\(name).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
            let descriptor = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
            if descriptor >= 0 { return (descriptor, temporary) }
            let error = errno
            attempt += 1
            // Another write took this name: draw another.
            guard error == EEXIST, attempt < 8 else {
                throw AtomicFileError(path: temporary, operation: .createTemporary, errno: error)
            }
        }
    }

    /// Writes every byte: 0, or the `errno` of the failure.
    private static func writeAll(_ buffer: UnsafeBufferPointer<UInt8>, to descriptor: Int32) -> Int32 {
        var offset = 0
        while offset < buffer.count {
            let count = systemWrite(descriptor, buffer.baseAddress! + offset, buffer.count - offset)
            if count < 0 {
                if errno == EINTR { continue }
                return errno
            }
            offset += count
        }
        return 0
    }
}

#if canImport(Darwin)
private let systemWrite = Darwin.write
#else
private let systemWrite = Glibc.write
#endif

/// A file could not be replaced: which step failed, on which path, and why.
package struct AtomicFileError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The step that failed.
    package enum Operation: String, Sendable, Hashable {
        case createTemporary = "create a temporary file"
        case write = "write"
        case syncFile = "sync"
        case rename = "rename into place"
        case syncDirectory = "sync the directory"
    }

    /// The file (or temporary file, or directory) the step worked on.
    package var path: String
    package var operation: Operation
    package var errno: Int32

    package init(path: String, operation: Operation, errno: Int32) {
        self.path = path
        self.operation = operation
        self.errno = errno
    }

    package var description: String {
        "cannot \(self.operation.rawValue) \(self.path): \(String(cString: strerror(self.errno)))"
    }
}
