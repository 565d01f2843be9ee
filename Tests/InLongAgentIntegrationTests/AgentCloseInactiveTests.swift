import Foundation
import InLongAgent
import InLongDataProxy
import InLongDataProxyReceiver
import InLongTestUtils
import InLongWire
import Testing

/// `closeInactive`: a file that stops growing is closed at its committed offset and opened again when it grows;
/// no line is lost or sent twice, whenever the writer writes (the exact interleavings, a write landing as the file
/// is closed included, are the file-set simulation's).
@Suite(.timeLimit(.minutes(4))) struct AgentCloseInactiveTests {
    @Test func aQuietFileIsClosedAndOpenedAgainWhenItGrowsWithEveryLineOnce() async throws {
        let workspace = try AgentWorkspace()
        try await withReceiver { receiver in
            var configuration = workspace.configuration(port: try await receiver.port())
            configuration.sources[0].closeInactive = .milliseconds(150)
            // A late ack on a loaded machine must not resend: the test counts every line once.
            configuration.client.connection.requestTimeout = .seconds(120)
            var expected: [String] = numbered("busy", 0..<100)
            try workspace.append(expected, to: "busy.log")
            try workspace.append(["quiet-0", "quiet-1"], to: "quiet.log")
            expected += ["quiet-0", "quiet-1"]
            try await withAgent(configuration) { agent in
                #expect(await eventually(timeout: .seconds(120)) { agent.statistics().linesAcked == 102 })
                #expect(await eventually(timeout: .seconds(120)) { agent.statistics().filesClosedInactive >= 2 && agent.statistics().openFiles == 0 })
                // Closed and not grown: scans leave it closed.
                let opened = agent.statistics().filesOpened
                let scans = agent.statistics().scans
                #expect(await eventually { agent.statistics().scans >= scans + 5 })
                #expect(agent.statistics().filesOpened == opened)
                // Writes at times around the close: before it, as it happens, and after it.
                var random = SplitMix64(seed: 28)
                var next = 100
                for _ in 0..<40 {
                    let count = Int.random(in: 1...20, using: &random)
                    let lines = numbered("busy", next..<next + count)
                    next += count
                    if Int.random(in: 0..<3, using: &random) == 0 {
                        // Half a line first: the tail holds it back until its newline comes.
                        let text = lines.map { $0 + "\n" }.joined()
                        let cut = text.index(text.startIndex, offsetBy: Int.random(in: 1..<text.count, using: &random))
                        try workspace.write(String(text[..<cut]), to: "busy.log")
                        try await Task.sleep(for: .milliseconds(Int.random(in: 100...300, using: &random)))
                        try workspace.write(String(text[cut...]), to: "busy.log")
                    } else {
                        try workspace.append(lines, to: "busy.log")
                    }
                    expected += lines
                    try await Task.sleep(for: .milliseconds(Int.random(in: 50...300, using: &random)))
                }
                #expect(await eventually(timeout: .seconds(120)) { agent.statistics().linesAcked == expected.count }, "\(agent.statistics())")
                // Quiet now: closed again (whether a pause above closed it depends on the machine's load), then
                // opened again by what it grows by.
                #expect(await eventually(timeout: .seconds(120)) { agent.statistics().filesClosedInactive > 2 && agent.statistics().openFiles == 0 })
                let reopened = agent.statistics().filesOpened
                let last = numbered("busy", next..<next + 10)
                try workspace.append(last, to: "busy.log")
                expected += last
                #expect(await eventually(timeout: .seconds(120)) { agent.statistics().linesAcked == expected.count }, "\(agent.statistics())")
                #expect(agent.statistics().filesOpened > reopened)
            }
            let stored = storedLines(receiver)
            #expect(stored.count == expected.count)
            #expect(Set(stored) == Set(expected))
        }
    }
}
