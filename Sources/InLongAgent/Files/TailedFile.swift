#if canImport(Glibc)
import Glibc
#endif
#if canImport(SwiftOverlayShims)
// Where `stat`'s `timespec` fields come from on Linux.
import SwiftOverlayShims
#endif

/// What a ``FileTail`` asks of the file it reads: its size and its bytes at an offset. A protocol so that tests can
/// script a file that is appended to, truncated and written again between any two of these looks.
protocol TailedFile: AnyObject {
    /// The size now (`fstat`).
    func size() throws -> Int64
    /// Up to `buffer.count` bytes at `offset`: the count read (0 at the end of the file), or minus the `errno` of a
    /// failure.
    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int64) -> Int
    /// How long ago the file was last written (`nil`: unknown).
    func timeSinceLastWrite() -> Duration?
}

extension TailedFile {
    func timeSinceLastWrite() -> Duration? { nil }
}

/// An open descriptor: a renamed or deleted file stays readable through it.
final class DescriptorFile: TailedFile {
    let descriptor: Int32
    let path: String
    private let owned: Bool

    /// Takes ownership of `descriptor`: it is closed with this object.
    init(descriptor: Int32, path: String) {
        self.descriptor = descriptor
        self.path = path
        self.owned = true
    }

    /// Reads `descriptor`, which stays its owner's.
    init(borrowing descriptor: Int32) {
        self.descriptor = descriptor
        self.path = "fd \(descriptor)"
        self.owned = false
    }

    deinit { if self.owned { close(self.descriptor) } }

    func size() throws -> Int64 {
        var info = stat()
        guard fstat(self.descriptor, &info) == 0 else { throw FileReadError(path: self.path, operation: "fstat", errno: errno) }
        return Int64(info.st_size)
    }

    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int64) -> Int {
        preadRetrying(self.descriptor, into: buffer, at: offset)
    }

    func timeSinceLastWrite() -> Duration? {
        var info = stat()
        guard fstat(self.descriptor, &info) == 0 else { return nil }
        // Whole seconds, rounded up: a file is never taken for quieter than it is.
        return wallClockNow() - .seconds(info.st_mtim.tv_sec + 1)
    }
}

/// The last bytes read before the read position. A file that no longer holds them there was truncated and written
/// again since (copytruncate): its size alone cannot tell when the new content grew back to or past the old
/// position between two looks.
struct ReadAnchor {
    /// Bytes kept: a line or more of a log, so that another generation of the file differs somewhere in them.
    static let capacity = 1024

    /// The bytes just before the read position (fewer at the start of a file).
    private(set) var bytes: [UInt8] = []
    private var scratch = [UInt8](repeating: 0, count: ReadAnchor.capacity)

    var isEmpty: Bool { self.bytes.isEmpty }

    mutating func reset() {
        self.bytes.removeAll(keepingCapacity: true)
    }

    /// Takes the bytes just read (they now end at the read position).
    mutating func advance(over chunk: UnsafeRawBufferPointer) {
        if chunk.count >= Self.capacity {
            self.bytes.removeAll(keepingCapacity: true)
            self.bytes.append(contentsOf: chunk[(chunk.count - Self.capacity)...])
        } else {
            let keep = min(self.bytes.count, Self.capacity - chunk.count)
            self.bytes.removeFirst(self.bytes.count - keep)
            self.bytes.append(contentsOf: chunk)
        }
    }

    /// Loads the bytes before `position` from the file as it is now (reading resumes there).
    mutating func load(from file: any TailedFile, before position: Int64) {
        let count = Int(min(Int64(Self.capacity), position))
        self.bytes = [UInt8](repeating: 0, count: count)
        let read = self.bytes.withUnsafeMutableBytes { file.read(into: $0, at: position - Int64(count)) }
        if read != count { self.bytes.removeAll() }
    }

    /// Whether the file still holds these bytes just before `position`.
    mutating func isHeld(by file: any TailedFile, before position: Int64) -> Bool {
        let count = self.bytes.count
        guard count > 0 else { return true }
        let read = self.scratch.withUnsafeMutableBytes { file.read(into: UnsafeMutableRawBufferPointer(rebasing: $0.prefix(count)), at: position - Int64(count)) }
        guard read == count else { return false }
        return self.scratch.withUnsafeBytes { scratch in
            self.bytes.withUnsafeBytes { memcmp(scratch.baseAddress!, $0.baseAddress!, count) == 0 }
        }
    }
}
