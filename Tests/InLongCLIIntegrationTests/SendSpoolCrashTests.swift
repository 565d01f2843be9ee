import Foundation
import InLongDataProxyReceiver
import InLongTestUtils
import NIOCore
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// `inlong send --spool` as a process that dies: SIGKILLed while none of what it sent is acked, the next run on
/// the same spool sends every line to another receiver, and leaves the spool empty.
@Suite(.serialized, .timeLimit(.minutes(2)))
struct SendSpoolCrashTests {
    static func segmentBytes(_ directory: String) -> Int {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return names.filter { $0.hasSuffix(".spool") }.reduce(0) { total, name in
            total + ((try? FileManager.default.attributesOfItem(atPath: directory + "/" + name)[.size] as? Int) ?? 0)
        }
    }

    @Test func aKilledSendLeavesItsLinesInTheSpoolAndTheNextRunSendsThem() async throws {
        let inlong = try inlongExecutable()
        try await withTemporaryDirectory { directory in
            let lines = (0..<20_000).map { "line-\($0)-" + String(repeating: "z", count: $0 % 40) }
            let input = directory.appendingPathComponent("input.log")
            try (lines.joined(separator: "\n") + "\n").write(to: input, atomically: true, encoding: .utf8)
            let empty = directory.appendingPathComponent("empty.log")
            try Data().write(to: empty)
            let spool = directory.appendingPathComponent("spool").path

            // A proxy that stores and never acks: every line gets sent (so accepted and spooled), none acked.
            var silent = DataProxyReceiver.Configuration.loopback
            silent.faults.dropAcks = true
            try await withReceiver(silent) { receiver in
                let send = try ChildProcess(
                    inlong,
                    ["send", "--proxy", "127.0.0.1:\(try await receiver.port())", "--group", "g", "--stream", "s", "--spool", spool, input.path],
                    logs: directory,
                    name: "send-killed"
                )
                // Every line sent, and every line in the spool (its record is 36 bytes of framing, id and key, and
                // the line): the send call returned, the lines are the run's to keep.
                let spooledBytes = lines.reduce(0) { $0 + 36 + $1.utf8.count }
                let sent = await eventually {
                    (receiver.memorySink.recordCount >= lines.count && Self.segmentBytes(spool) >= spooledBytes) || !send.isRunning
                }
                try #require(sent && send.isRunning, "the first run did not send and spool everything: \(send.error())")
                send.signal(SIGKILL)
                _ = await send.waitForExit()
            }
            let left = try FileManager.default.contentsOfDirectory(atPath: spool).filter { $0.hasSuffix(".spool") }
            #expect(!left.isEmpty)

            // The next run, on another receiver, with nothing new to read: it sends what the killed run left.
            try await withReceiver { receiver in
                let send = try ChildProcess(
                    inlong,
                    ["send", "--proxy", "127.0.0.1:\(try await receiver.port())", "--group", "g", "--stream", "s", "--spool", spool, empty.path],
                    logs: directory,
                    name: "send-next"
                )
                let status = await send.waitForExit()
                #expect(status == .exit(0), "\(send.error())")
                #expect(send.output().contains("20000 a previous run left in the spool"), "\(send.output())")
                let received = Set(receiver.memorySink.messages.flatMap { $0.records.map { String(buffer: $0.body) } })
                #expect(received.count == lines.count && received == Set(lines), "received \(received.count) distinct lines")
            }
            let after = try FileManager.default.contentsOfDirectory(atPath: spool).filter { $0.hasSuffix(".spool") }
            #expect(after.isEmpty)
        }
    }
}
