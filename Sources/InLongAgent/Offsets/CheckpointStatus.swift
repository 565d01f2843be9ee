import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Where each file of an agent's checkpoint stands now, for `inlong agent status`: read from the state directory
/// alone, so it works whether the agent runs or not.
package struct CheckpointFileStatus: Sendable, Hashable, Encodable {
    package enum State: String, Sendable, Encodable {
        /// The file at `path` is the one the checkpoint names.
        case current
        /// Another file is at `path` now (rotated away, or replaced): the named one is elsewhere or gone.
        case replaced
        /// Nothing is at `path`.
        case missing
    }

    package var path: String
    package var device: UInt64
    package var inode: UInt64
    /// Bytes delivered (acked) from the start of the file.
    package var offset: Int64
    /// The file's size now, when it is `current`.
    package var size: Int64?
    /// Bytes not yet delivered, when it is `current`.
    package var lag: Int64?
    package var state: State
}

/// Why the status could not be read.
package struct CheckpointStatusError: Error, CustomStringConvertible {
    package var description: String
}

package enum CheckpointStatus {
    /// The files of the checkpoint in `stateDirectory`, in path order. Throws when there is no checkpoint or it
    /// cannot be read; never moves or changes it.
    package static func read(stateDirectory: String) throws(CheckpointStatusError) -> [CheckpointFileStatus] {
        let path = stateDirectory + "/checkpoint.json"
        guard let data = FileManager.default.contents(atPath: path) else {
            let reason = FileManager.default.fileExists(atPath: path) ? "cannot be read" : "does not exist (has an agent run with this state directory?)"
            throw CheckpointStatusError(description: "\(path) \(reason)")
        }
        let checkpoint: Checkpoint
        do throws(Checkpoint.DecodingFailure) {
            checkpoint = try Checkpoint.decode(data)
        } catch {
            switch error {
            case .notACheckpoint(let error):
                throw CheckpointStatusError(description: "\(path) is not a checkpoint: \(error)")
            case .unknownVersion(let version):
                throw CheckpointStatusError(description: "\(path) has version \(version); this tool reads version \(Checkpoint.currentVersion)")
            }
        }
        return checkpoint.files.map(Self.status).sorted { ($0.path, $0.inode) < ($1.path, $1.inode) }
    }

    private static func status(_ entry: Checkpoint.Entry) -> CheckpointFileStatus {
        var status = CheckpointFileStatus(
            path: entry.path, device: entry.identity.device, inode: entry.identity.inode, offset: entry.offset, state: .missing
        )
        var info = stat()
        guard stat(entry.path, &info) == 0 else { return status }
        guard UInt64(info.st_dev) == entry.identity.device, UInt64(info.st_ino) == entry.identity.inode else {
            status.state = .replaced
            return status
        }
        status.state = .current
        status.size = Int64(info.st_size)
        status.lag = max(0, Int64(info.st_size) - entry.offset)
        return status
    }
}
