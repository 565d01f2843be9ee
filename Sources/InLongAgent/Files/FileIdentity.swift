import Foundation

#if canImport(Glibc)
import Glibc
#endif

extension Checkpoint.FileIdentity {
    /// Bytes at the start of a file hashed into its fingerprint: enough to tell apart files that reuse an inode.
    static let fingerprintSize = 1024

    /// The identity of the open file `fd`: device, inode, and a fingerprint of its first bytes (FNV-1a).
    static func of(descriptor fd: Int32) throws -> Self {
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw FileReadError(path: "fd \(fd)", operation: "fstat", errno: errno) }
        return try Self.of(file: DescriptorFile(borrowing: fd), device: UInt64(info.st_dev), inode: UInt64(info.st_ino))
    }

    /// The identity of `file`, known by `device` and `inode`, with the fingerprint of its first bytes.
    static func of(file: any TailedFile, device: UInt64, inode: UInt64) throws -> Self {
        let (fingerprint, length) = Self.fingerprint(of: file, length: Self.fingerprintSize)
        guard length >= 0 else { throw FileReadError(path: "inode \(inode)", operation: "read", errno: Int32(-length)) }
        return Self(device: device, inode: inode, fingerprint: fingerprint, fingerprintLength: length)
    }

    /// The same file (device and inode) with the fingerprint of what its first bytes are now: after it was truncated
    /// and written again in place, or grew past a short fingerprint.
    func refingerprinted(from file: any TailedFile) -> Self {
        var identity = self
        (identity.fingerprint, identity.fingerprintLength) = Self.fingerprint(of: file, length: Self.fingerprintSize)
        identity.fingerprintLength = max(identity.fingerprintLength, 0)
        return identity
    }

    /// Whether `other` is this file, perhaps grown: same device and inode, and the bytes this fingerprint covers
    /// are unchanged. A file that grew past a short fingerprint is still the same file.
    func matches(_ other: Self, descriptor fd: Int32) -> Bool {
        self.matches(other, file: DescriptorFile(borrowing: fd))
    }

    /// ``matches(_:descriptor:)`` on `file`, open as `other`.
    func matches(_ other: Self, file: any TailedFile) -> Bool {
        guard self.device == other.device, self.inode == other.inode else { return false }
        if self.fingerprintLength == other.fingerprintLength { return self.fingerprint == other.fingerprint }
        let (fingerprint, length) = Self.fingerprint(of: file, length: self.fingerprintLength)
        return length == self.fingerprintLength && fingerprint == self.fingerprint
    }

    /// FNV-1a of the first `length` bytes of `file` (fewer in a shorter file), and how many it covers: minus the
    /// `errno` when the read failed.
    private static func fingerprint(of file: any TailedFile, length: Int) -> (UInt64, Int) {
        var prefix = [UInt8](repeating: 0, count: length)
        let count = prefix.withUnsafeMutableBytes { file.read(into: $0, at: 0) }
        return (fnv1a(prefix.prefix(max(count, 0))), count)
    }
}

private func fnv1a(_ bytes: ArraySlice<UInt8>) -> UInt64 {
    var hash: UInt64 = 0xcbf2_9ce4_8422_2325
    for byte in bytes {
        hash ^= UInt64(byte)
        hash &*= 0x0000_0100_0000_01b3
    }
    return hash
}

/// A file could not be opened, examined or read.
struct FileReadError: Error, CustomStringConvertible {
    var path: String
    var operation: String
    var errno: Int32

    var description: String {
        "\(self.operation) failed for \(self.path): \(String(cString: strerror(self.errno)))"
    }
}
