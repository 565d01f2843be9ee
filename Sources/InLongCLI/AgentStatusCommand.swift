import ArgumentParser
import Foundation
import InLongAgent

/// `inlong agent status`: what the checkpoint in a state directory says of each file, and how far behind it is.
struct AgentStatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Print each file of an agent's checkpoint: its identity, delivered offset, size now and lag.",
        discussion: """
            Reads the state directory only, whether the agent runs or not (a running agent writes its checkpoint \
            every checkpoint interval). A file whose path now holds another file is 'replaced'; one whose path \
            holds nothing is 'missing'. Exit 0, or 66 when there is no readable checkpoint.
            """
    )

    @Option(help: "The agent's state directory (where checkpoint.json is).")
    var stateDir = ".inlong/agent"

    @Flag(help: "Print JSON: an array of {path, device, inode, offset, size, lag, state}.")
    var json = false

    func run() throws {
        let files: [CheckpointFileStatus]
        do {
            files = try CheckpointStatus.read(stateDirectory: self.stateDir)
        } catch {
            FileHandle.standardError.write(Data("inlong agent status: \(error)\n".utf8))
            throw ExitCode(66)
        }
        if self.json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
            print(String(decoding: (try? encoder.encode(files)) ?? Data("[]".utf8), as: UTF8.self))
            return
        }
        print(Self.table(files))
    }

    static func table(_ files: [CheckpointFileStatus]) -> String {
        guard !files.isEmpty else { return "no files in the checkpoint" }
        let rows = [["FILE", "DEVICE:INODE", "OFFSET", "SIZE", "LAG", "STATE"]] + files.map { file in
            [file.path, "\(file.device):\(file.inode)", "\(file.offset)", file.size.map(String.init) ?? "-", file.lag.map(String.init) ?? "-", file.state.rawValue]
        }
        let widths = (0..<6).map { column in rows.map { $0[column].count }.max() ?? 0 }
        let lines = rows.map { row in
            row.enumerated().map { column, cell in
                column == 5 ? cell : cell.padding(toLength: widths[column], withPad: " ", startingAt: 0)
            }.joined(separator: "  ")
        }
        let lagging = files.compactMap(\.lag).reduce(0, +)
        return (lines + ["\(files.count) files, \(lagging) bytes not yet delivered"]).joined(separator: "\n")
    }
}
