import Foundation
import InLongDataProxyReceiver
import InLongTestUtils
import NIOCore
import Testing

/// `inlong agent status`, run as the built executable after an agent ran: what the checkpoint says of each file,
/// where the file stands now, human and JSON; no checkpoint is exit 66.
@Suite(.timeLimit(.minutes(1)))
struct AgentStatusTests {
    @Test func statusTellsEachFilesOffsetSizeLagAndState() async throws {
        let inlong = try inlongExecutable()
        try await withTemporaryDirectory { directory in
            let logs = directory.appendingPathComponent("logs")
            let state = directory.appendingPathComponent("state")
            try FileManager.default.createDirectory(at: logs, withIntermediateDirectories: true)
            let growing = logs.appendingPathComponent("a.log").path
            let rotated = logs.appendingPathComponent("b.log").path
            let removed = logs.appendingPathComponent("c.log").path
            #expect(FileManager.default.createFile(atPath: growing, contents: Data("one\ntwo\n".utf8)))
            #expect(FileManager.default.createFile(atPath: rotated, contents: Data("three\n".utf8)))
            #expect(FileManager.default.createFile(atPath: removed, contents: Data("four\n".utf8)))
            try await withReceiver { receiver in
                let agent = try ChildProcess(
                    inlong,
                    [
                        "agent", "--path", logs.path + "/*.log", "--group", "g", "--stream", "s",
                        "--proxy", "127.0.0.1:\(try await receiver.port())", "--state-dir", state.path, "--once",
                    ],
                    logs: directory,
                    name: "agent"
                )
                #expect(await agent.waitForExit(timeout: .seconds(30)) == .exit(0), "\(agent.output())")
            }
            // After the agent: one file grew, one was rotated away (a new file in its place), one removed.
            let handle = try #require(FileHandle(forWritingAtPath: growing))
            handle.seekToEndOfFile()
            handle.write(Data("five\n".utf8))
            try handle.close()
            try FileManager.default.moveItem(atPath: rotated, toPath: rotated + ".1")
            #expect(FileManager.default.createFile(atPath: rotated, contents: Data("six\n".utf8)))
            try FileManager.default.removeItem(atPath: removed)

            let json = try ChildProcess(inlong, ["agent", "status", "--state-dir", state.path, "--json"], logs: directory, name: "json")
            #expect(await json.waitForExit(timeout: .seconds(30)) == .exit(0), "\(json.output())")
            let printed = try Data(contentsOf: directory.appendingPathComponent("json.stdout"))
            let files = try #require(try JSONSerialization.jsonObject(with: printed) as? [[String: Any]])
            let byPath = Dictionary(uniqueKeysWithValues: files.map { ($0["path"] as? String ?? "", $0) })
            #expect(byPath[growing]?["state"] as? String == "current")
            #expect(byPath[growing]?["offset"] as? Int == 8)
            #expect(byPath[growing]?["size"] as? Int == 13)
            #expect(byPath[growing]?["lag"] as? Int == 5)
            #expect(byPath[rotated]?["state"] as? String == "replaced")
            #expect(byPath[rotated]?["offset"] as? Int == 6)
            #expect(byPath[rotated]?["lag"] == nil)
            #expect(byPath[removed]?["state"] as? String == "missing")
            #expect(files.allSatisfy { ($0["inode"] as? Int ?? 0) > 0 })

            let human = try ChildProcess(inlong, ["agent", "status", "--state-dir", state.path], logs: directory, name: "human")
            #expect(await human.waitForExit(timeout: .seconds(30)) == .exit(0), "\(human.output())")
            let table = (try? String(contentsOfFile: directory.appendingPathComponent("human.stdout").path, encoding: .utf8)) ?? ""
            #expect(table.hasPrefix("FILE"), "\(table)")
            #expect(table.contains("3 files, 5 bytes not yet delivered"), "\(table)")

            let none = try ChildProcess(
                inlong, ["agent", "status", "--state-dir", directory.appendingPathComponent("nothing").path], logs: directory, name: "none"
            )
            #expect(await none.waitForExit(timeout: .seconds(30)) == .exit(66), "\(none.output())")
            #expect(none.error().contains("checkpoint.json does not exist"), "\(none.output())")
        }
    }
}
