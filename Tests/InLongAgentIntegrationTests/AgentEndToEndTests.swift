import Foundation
import InLongDataProxy
import InLongDataProxyReceiver
import InLongTestUtils
import InLongWire
import NIOCore
import Testing

@testable import InLongAgent

/// The agent against the in-process receiver: lines arrive exactly once when nothing fails, through rotations,
/// truncations, deletions and restarts.
@Suite(.timeLimit(.minutes(3))) struct AgentEndToEndTests {
    @Test func linesAppendedOverTimeArriveExactlyOnce() async throws {
        let workspace = try AgentWorkspace()
        try await withReceiver { receiver in
            try await withAgent(workspace.configuration(port: try await receiver.port())) { agent in
                var expected: [String] = []
                for burst in 0..<5 {
                    let lines = numbered("burst\(burst)", 0..<1_000)
                    try workspace.append(lines, to: "app.log")
                    expected += lines
                    #expect(await eventually { storedLines(receiver).count >= expected.count })
                }
                #expect(storedLines(receiver) == expected)
                #expect(await eventually { agent.statistics().lagBytes == 0 })
                #expect(agent.statistics().linesAcked == 5_000)
            }
        }
    }

    /// What `inlong agent --once` waits for: the agent says it caught up once every file is read and acked, also
    /// with more files than slots, which take turns (files read to their end may wait for a slot for ever).
    @Test func caughtUpOnceEveryFileIsReadAndAckedWithMoreFilesThanSlots() async throws {
        let workspace = try AgentWorkspace()
        let expected = ["a", "b", "c"].flatMap { numbered($0, 0..<300) }
        for name in ["a", "b", "c"] { try workspace.append(numbered(name, 0..<300), to: "\(name).log") }
        try await withReceiver { receiver in
            var configuration = workspace.configuration(port: try await receiver.port())
            configuration.maxOpenFiles = 1
            try await withAgent(configuration) { agent in
                await agent.waitUntilCaughtUp()
                let statistics = agent.statistics()
                #expect(statistics.unreadBytes == 0)
                #expect(statistics.bytesAcked == statistics.bytesRead)
                #expect(statistics.linesAcked == expected.count)
                #expect(storedLines(receiver).sorted() == expected.sorted())
            }
        }
    }

    @Test func aRestartResumesFromTheCheckpointWithoutDuplicates() async throws {
        let workspace = try AgentWorkspace()
        try await withReceiver { receiver in
            let configuration = workspace.configuration(port: try await receiver.port())
            try workspace.append(numbered("first", 0..<500), to: "app.log")
            try await withAgent(configuration) { _ in
                #expect(await eventually { storedLines(receiver).count == 500 })
            }
            let checkpoint = try String(contentsOfFile: configuration.checkpointPath, encoding: .utf8)
            #expect(checkpoint.contains("\"offset\":\(numbered("first", 0..<500).joined(separator: "\n").utf8.count + 1)"))
            try workspace.append(numbered("second", 0..<500), to: "app.log")
            try await withAgent(configuration) { _ in
                #expect(await eventually { storedLines(receiver).count >= 1_000 })
            }
            #expect(storedLines(receiver) == numbered("first", 0..<500) + numbered("second", 0..<500))
        }
    }

    @Test func renameRotationFinishesTheOldFileThenReadsTheNewOne() async throws {
        let workspace = try AgentWorkspace()
        try await withReceiver { receiver in
            try await withAgent(workspace.configuration(port: try await receiver.port(), glob: "app.log")) { agent in
                try workspace.append(numbered("old", 0..<300), to: "app.log")
                #expect(await eventually { storedLines(receiver).count == 300 })
                try FileManager.default.moveItem(atPath: workspace.path("app.log"), toPath: workspace.path("app.log.1"))
                // The writer still has the old file open for a moment, and the new file starts.
                try workspace.append(numbered("late", 0..<100), to: "app.log.1")
                try workspace.append(numbered("new", 0..<300), to: "app.log")
                #expect(await eventually { storedLines(receiver).count == 700 })
                #expect(await eventually { agent.statistics().filesReleased == 1 })
                let stored = storedLines(receiver)
                #expect(Set(stored) == Set(numbered("old", 0..<300) + numbered("late", 0..<100) + numbered("new", 0..<300)))
                #expect(stored.count == 700)
            }
        }
    }

    @Test func aRenameToAMatchingNameKeepsReadingTheSameFile() async throws {
        let workspace = try AgentWorkspace()
        try await withReceiver { receiver in
            try await withAgent(workspace.configuration(port: try await receiver.port(), glob: "app.log*")) { agent in
                try workspace.append(numbered("before", 0..<200), to: "app.log")
                #expect(await eventually { storedLines(receiver).count == 200 })
                try FileManager.default.moveItem(atPath: workspace.path("app.log"), toPath: workspace.path("app.log.1"))
                try await Task.sleep(for: .milliseconds(300))  // a few scans see the renamed file
                try workspace.append(numbered("after", 0..<200), to: "app.log.1")
                #expect(await eventually { storedLines(receiver).count == 400 })
                #expect(storedLines(receiver) == numbered("before", 0..<200) + numbered("after", 0..<200))
                #expect(agent.statistics().filesOpened == 1)
            }
        }
    }

    @Test func copyTruncateStartsAgainAtZero() async throws {
        let workspace = try AgentWorkspace()
        try await withReceiver { receiver in
            try await withAgent(workspace.configuration(port: try await receiver.port(), glob: "app.log")) { agent in
                try workspace.append(numbered("before", 0..<400), to: "app.log")
                #expect(await eventually { storedLines(receiver).count == 400 && agent.statistics().lagBytes == 0 })
                try FileManager.default.copyItem(atPath: workspace.path("app.log"), toPath: workspace.path("app.log.1"))
                let handle = try #require(FileHandle(forWritingAtPath: workspace.path("app.log")))
                try handle.truncate(atOffset: 0)
                try handle.close()
                #expect(await eventually { agent.statistics().truncations == 1 })
                try workspace.append(numbered("after", 0..<50), to: "app.log")
                #expect(await eventually { storedLines(receiver).count == 450 })
                #expect(storedLines(receiver) == numbered("before", 0..<400) + numbered("after", 0..<50))
            }
        }
    }

    @Test func aDeletedFileIsDrainedThenReleased() async throws {
        let workspace = try AgentWorkspace()
        try await withReceiver { receiver in
            let configuration = workspace.configuration(port: try await receiver.port())
            try await withAgent(configuration) { agent in
                try workspace.append(numbered("doomed", 0..<300), to: "app.log")
                #expect(await eventually { storedLines(receiver).count == 300 })
                try FileManager.default.removeItem(atPath: workspace.path("app.log"))
                #expect(await eventually { agent.statistics().filesReleased == 1 && agent.statistics().openFiles == 0 })
                // Released and no longer found: the checkpoint forgets it.
                #expect(await eventually {
                    (try? String(contentsOfFile: configuration.checkpointPath, encoding: .utf8))?.contains("app.log") == false
                })
            }
            #expect(storedLines(receiver) == numbered("doomed", 0..<300))
        }
    }

    @Test func aNewMatchingFileIsReadFromItsStart() async throws {
        let workspace = try AgentWorkspace()
        try await withReceiver { receiver in
            var configuration = workspace.configuration(port: try await receiver.port())
            configuration.sources[0].startAt = .end
            try workspace.append(numbered("old", 0..<100), to: "present.log")
            try await withAgent(configuration) { agent in
                #expect(await eventually { agent.statistics().openFiles == 1 })
                try workspace.append(numbered("present", 0..<100), to: "present.log")
                try workspace.append(numbered("fresh", 0..<100), to: "fresh.log")
                #expect(await eventually { storedLines(receiver).count == 200 })
            }
            // Lines of the file present at start, written before, are skipped (start at the end); the new file
            // is read whole.
            #expect(Set(storedLines(receiver)) == Set(numbered("present", 0..<100) + numbered("fresh", 0..<100)))
        }
    }

    @Test func aLineOverTheMaximumIsTruncatedAndCounted() async throws {
        let workspace = try AgentWorkspace()
        try await withReceiver { receiver in
            var configuration = workspace.configuration(port: try await receiver.port())
            configuration.sources[0].maxLineLength = 100
            try await withAgent(configuration) { agent in
                try workspace.append(["short", String(repeating: "x", count: 10_000), "after"], to: "app.log")
                #expect(await eventually { storedLines(receiver).count == 3 })
                #expect(storedLines(receiver) == ["short", String(repeating: "x", count: 100), "after"])
                #expect(await eventually { agent.statistics().overlongLines == 1 })
            }
        }
    }

    @Test func aPartialLastLineWaitsForItsNewline() async throws {
        let workspace = try AgentWorkspace()
        try await withReceiver { receiver in
            let configuration = workspace.configuration(port: try await receiver.port())
            try await withAgent(configuration) { agent in
                try workspace.write("complete\npart", to: "app.log")
                #expect(await eventually { storedLines(receiver).count == 1 && agent.statistics().bytesAcked == 9 })
                try await Task.sleep(for: .milliseconds(200))
                #expect(storedLines(receiver) == ["complete"])
                try workspace.write("ial\n", to: "app.log")
                #expect(await eventually { storedLines(receiver).count == 2 })
            }
            #expect(storedLines(receiver) == ["complete", "partial"])
            #expect(try String(contentsOfFile: configuration.checkpointPath, encoding: .utf8).contains("\"offset\":17"))
        }
    }

    @Test func aCorruptCheckpointIsSetAsideAndFilesAreReadFromTheStart() async throws {
        let workspace = try AgentWorkspace()
        try await withReceiver { receiver in
            let configuration = workspace.configuration(port: try await receiver.port())
            try FileManager.default.createDirectory(atPath: workspace.state, withIntermediateDirectories: true)
            #expect(FileManager.default.createFile(atPath: configuration.checkpointPath, contents: Data("{ not json".utf8)))
            try workspace.append(numbered("line", 0..<100), to: "app.log")
            try await withAgent(configuration) { agent in
                #expect(await eventually { storedLines(receiver).count == 100 })
                let recovery = try #require(agent.checkpointRecovery)
                #expect(FileManager.default.fileExists(atPath: recovery.setAsidePath))
            }
            #expect(storedLines(receiver) == numbered("line", 0..<100))
        }
    }

    /// A checkpoint entry for the same device and inode but other first bytes is another file (inode reuse): it
    /// is read from its start, not from the old offset.
    @Test func aReusedInodeIsANewFile() async throws {
        let workspace = try AgentWorkspace()
        try await withReceiver { receiver in
            let configuration = workspace.configuration(port: try await receiver.port())
            try workspace.append(numbered("reused", 0..<100), to: "app.log")
            let fd = open(workspace.path("app.log"), O_RDONLY)
            let identity = try Checkpoint.FileIdentity.of(descriptor: fd)
            close(fd)
            var stale = identity
            stale.fingerprint &+= 1
            try FileManager.default.createDirectory(atPath: workspace.state, withIntermediateDirectories: true)
            try CheckpointStore(path: configuration.checkpointPath).save(
                Checkpoint(files: [.init(identity: stale, path: workspace.path("old.log"), offset: 500)])
            )
            try await withAgent(configuration) { _ in
                #expect(await eventually { storedLines(receiver).count == 100 })
            }
            #expect(storedLines(receiver) == numbered("reused", 0..<100))
        }
    }

    @Test func recordsRefusedForGoodGoToTheDeadLetterFileAndTheOffsetMovesOn() async throws {
        let workspace = try AgentWorkspace()
        var receiverConfiguration = DataProxyReceiver.Configuration.loopback
        receiverConfiguration.faults.errorCode = .missRequiredBody
        try await withReceiver(receiverConfiguration) { receiver in
            let configuration = workspace.configuration(port: try await receiver.port())
            try workspace.append(numbered("refused", 0..<20), to: "app.log")
            try await withAgent(configuration) { agent in
                #expect(await eventually { agent.statistics().deadLettered == 20 && agent.statistics().lagBytes == 0 })
            }
            let deadLetters = try String(contentsOfFile: configuration.deadLetterPath, encoding: .utf8).split(separator: "\n")
            #expect(deadLetters.count == 20)
            #expect(deadLetters.first?.contains("\"line\":\"refused-0\"") == true)
            #expect(deadLetters.first?.contains("serverRejected") == true)
            let size = try #require(FileManager.default.attributesOfItem(atPath: workspace.path("app.log"))[.size] as? Int)
            #expect(try String(contentsOfFile: configuration.checkpointPath, encoding: .utf8).contains("\"offset\":\(size)"))
        }
    }

    @Test func messagesCarryTheSourceAttributes() async throws {
        let workspace = try AgentWorkspace()
        try await withReceiver { receiver in
            var configuration = workspace.configuration(port: try await receiver.port())
            configuration.sources[0].attributes = ["env": "test", "host": "h1"]
            try workspace.append(["one", "two"], to: "app.log")
            try await withAgent(configuration) { _ in
                #expect(await eventually { storedLines(receiver).count == 2 })
            }
            #expect(receiver.memorySink.messages.allSatisfy { $0.attributes.contains("env=test") && $0.attributes.contains("host=h1") })
        }
    }

    /// The proxy is down at first: reading stops at the budget, nothing is dropped, and everything arrives once
    /// it is back.
    @Test func aProxyOutageLosesNothing() async throws {
        let workspace = try AgentWorkspace()
        try await withReceiver { receiver in
            receiver.updateFaults { $0.dropAcks = true }
            var configuration = workspace.configuration(port: try await receiver.port())
            configuration.client.connection.requestTimeout = .milliseconds(200)
            configuration.client.retry.deliveryTimeout = .milliseconds(500)
            configuration.maxUnackedBytesPerFile = 64 << 10
            configuration.readSize = 16 << 10
            let lines = numbered("outage", 0..<20_000)
            try workspace.append(lines, to: "app.log")
            try await withAgent(configuration) { agent in
                #expect(await eventually { agent.statistics().resent > 0 })
                // Reading stopped at the file's budget (plus one read and a partial line).
                #expect(agent.statistics().bytesRead <= (64 << 10) + 2 * (16 << 10))
                receiver.updateFaults { $0.dropAcks = false }
                #expect(await eventually { agent.statistics().lagBytes == 0 && agent.statistics().bytesAcked == agent.statistics().bytesRead })
            }
            let stored = Set(storedLines(receiver))
            let missing = lines.filter { !stored.contains($0) }
            #expect(missing.isEmpty, "missing \(missing.count), first \(missing.prefix(3))")
        }
    }

    /// More files than slots: an inactive file gives its slot up, so every file is read in turn.
    @Test func moreFilesThanSlotsAreAllRead() async throws {
        let workspace = try AgentWorkspace()
        try await withReceiver { receiver in
            var configuration = workspace.configuration(port: try await receiver.port())
            configuration.maxOpenFiles = 1
            var expected: [String] = []
            for name in ["a", "b", "c"] {
                let lines = numbered(name, 0..<200)
                try workspace.append(lines, to: "\(name).log")
                expected += lines
            }
            try await withAgent(configuration) { agent in
                #expect(await eventually { storedLines(receiver).count >= 600 })
                #expect(agent.statistics().openFiles <= 1)
            }
            #expect(Set(storedLines(receiver)) == Set(expected))
            #expect(storedLines(receiver).count == 600)
        }
    }
}
