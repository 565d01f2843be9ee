import Foundation
import InLongDataProxy

/// How far each file was delivered: what the agent writes to its state directory and reads back on start.
struct Checkpoint: Sendable, Hashable, Codable {
    /// The identity of a file that survives renames: its device and inode, and a fingerprint of its first bytes
    /// so that a reused inode is not taken for the file that had it before.
    struct FileIdentity: Sendable, Hashable, Codable {
        var device: UInt64
        var inode: UInt64
        /// A hash of the first ``fingerprintLength`` bytes (or all of a shorter file).
        var fingerprint: UInt64
        /// How many bytes the fingerprint covers.
        var fingerprintLength: Int

        init(device: UInt64, inode: UInt64, fingerprint: UInt64, fingerprintLength: Int) {
            self.device = device
            self.inode = inode
            self.fingerprint = fingerprint
            self.fingerprintLength = fingerprintLength
        }
    }

    /// One file's committed position.
    struct Entry: Sendable, Hashable, Codable {
        var identity: FileIdentity
        /// The path it was last seen at (informational: the identity decides).
        var path: String
        /// The end of the longest delivered prefix.
        var offset: Int64

        init(identity: FileIdentity, path: String, offset: Int64) {
            self.identity = identity
            self.path = path
            self.offset = offset
        }
    }

    /// The format version; a newer one is refused rather than misread.
    static let currentVersion = 1

    var version = Self.currentVersion
    var files: [Entry]

    init(files: [Entry] = []) {
        self.files = files
    }

    /// The entry of the file with `identity`, if any.
    func entry(for identity: FileIdentity) -> Entry? {
        self.files.first { $0.identity == identity }
    }

    /// Why bytes are not a checkpoint this version reads.
    enum DecodingFailure: Error {
        case notACheckpoint(any Error)
        case unknownVersion(Int)
    }

    /// The checkpoint `data` holds, if it is one of ``currentVersion``: one rule for the agent and for
    /// `inlong agent status`.
    static func decode(_ data: Data) throws(DecodingFailure) -> Checkpoint {
        let checkpoint: Checkpoint
        do {
            checkpoint = try JSONDecoder().decode(Checkpoint.self, from: data)
        } catch {
            throw .notACheckpoint(error)
        }
        guard checkpoint.version == Self.currentVersion else { throw .unknownVersion(checkpoint.version) }
        return checkpoint
    }
}

/// Reads and writes the checkpoint file: atomically (the SDK's `AtomicFile`: a temporary file, fsync, rename, fsync
/// of the directory), so a crash leaves the old checkpoint or the new one, never a torn one. A file that cannot be read is set aside,
/// reported, and replaced by an empty checkpoint: the agent starts over rather than crash.
struct CheckpointStore: Sendable {
    typealias Recovery = Agent.CheckpointRecovery

    let path: String

    init(path: String) {
        self.path = path
    }

    /// The checkpoint on disk, an empty one when there is none, or an empty one and a ``Recovery`` when the file
    /// is corrupt or of an unknown version.
    func load() throws -> (Checkpoint, Recovery?) {
        // An agent killed while it saved left its temporary file: nothing reads it, and kills would pile them up.
        AtomicFile.removeLeftovers(of: self.path)
        guard let data = FileManager.default.contents(atPath: self.path) else {
            guard !FileManager.default.fileExists(atPath: self.path) else {
                return (Checkpoint(), try self.setAside(reason: "unreadable"))
            }
            return (Checkpoint(), nil)
        }
        do throws(Checkpoint.DecodingFailure) {
            return (try Checkpoint.decode(data), nil)
        } catch {
            switch error {
            case .unknownVersion(let version):
                return (Checkpoint(), try self.setAside(reason: "unknown version \(version)"))
            case .notACheckpoint(let error):
                return (Checkpoint(), try self.setAside(reason: "not a checkpoint: \(error)"))
            }
        }
    }

    /// Replaces the checkpoint on disk atomically and durably (an `AtomicFileError` says which step failed).
    func save(_ checkpoint: Checkpoint) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        try AtomicFile.write(try encoder.encode(checkpoint), to: self.path)
    }

    private func setAside(reason: String) throws -> Recovery {
        let aside = self.path + ".corrupt-\(Int(Date().timeIntervalSince1970))"
        guard rename(self.path, aside) == 0 else {
            throw CheckpointError(path: self.path, operation: "set aside", errno: errno)
        }
        return Recovery(setAsidePath: aside, reason: reason)
    }
}

/// A checkpoint file could not be set aside.
struct CheckpointError: Error, CustomStringConvertible {
    var path: String
    var operation: String
    var errno: Int32

    var description: String {
        "checkpoint \(self.operation) failed for \(self.path): \(String(cString: strerror(self.errno)))"
    }
}
