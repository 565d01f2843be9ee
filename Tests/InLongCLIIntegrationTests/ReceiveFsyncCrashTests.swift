import Foundation
import InLongTestUtils
import InLongWire
import NIOCore
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// `inlong receive --fsync` SIGKILLed while ten clients write: every record any client saw acked is in the
/// output file afterwards (an ack means stored).
@Suite(.serialized, .timeLimit(.minutes(2)))
struct ReceiveFsyncCrashTests {
    @Test func everyAckedRecordIsInTheFileAfterAKill() async throws {
        let inlong = try inlongExecutable()
        try await withTemporaryDirectory { directory in
            let port = try unusedPortOutsideEphemeralRange()
            let out = directory.appendingPathComponent("received.jsonl").path
            let receive = try ChildProcess(
                inlong, ["receive", "--listen", "127.0.0.1:\(port)", "--out", out, "--fsync"], logs: directory, name: "receive"
            )
            var first: RawClient?
            let listening = await eventually {
                first = try? await RawClient.connect(port: port)
                return first != nil || !receive.isRunning
            }
            try #require(listening && first != nil, "the receiver did not listen: \(receive.error())")
            await first?.close()

            let counts = AckedRecords()
            try await withThrowingDiscardingTaskGroup { group in
                for client in 0..<10 {
                    group.addTask {
                        let connection = try await RawClient.connect(port: port)
                        // Up to 8 frames of one record in flight; each ack names its frame by `uniq`.
                        var pending: [UInt32: String] = [:]
                        var next: UInt32 = 1
                        loop: while next <= 5_000 || !pending.isEmpty {
                            while pending.count < 8, next <= 5_000 {
                                let body = "c\(client)-\(next)"
                                let message = try InLongBinaryMessage(
                                    records: [InLongRecord(body)], attributes: "groupId=g&streamId=s", uniq: next, dataTime: 1_700_000_000,
                                    extendedField: .default, compressionThreshold: nil
                                )
                                var frame = ByteBuffer()
                                try message.encode(into: &frame)
                                // The receiver may be gone: what was not acked simply was not.
                                do { try await connection.write(frame) } catch { break loop }
                                pending[next] = body
                                next += 1
                            }
                            guard case .frame(let frame) = await connection.read(),
                                case .binaryAck(let ack)? = try? InLongResponse(frame: frame)
                            else { break loop }
                            if let body = pending.removeValue(forKey: ack.uniq), ack.result.isDelivered {
                                counts.add(body)
                            }
                        }
                        await connection.close()
                    }
                }
                // Kill it mid-stream.
                group.addTask {
                    _ = await eventually { counts.count >= 3_000 }
                    receive.signal(SIGKILL)
                }
            }
            _ = await receive.waitForExit()
            let ackedBodies = counts.bodies
            #expect(ackedBodies.count >= 3_000)
            let text = (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
            let stored = Set(text.split(separator: "\n").compactMap { line -> String? in
                guard let range = line.range(of: #""body":""#) else { return nil }
                return String(line[range.upperBound...].prefix { $0 != "\"" })
            })
            let missing = ackedBodies.filter { !stored.contains($0) }
            #expect(missing.isEmpty, "\(missing.count) of \(ackedBodies.count) acked records are not in the file")
        }
    }
}

/// The records the clients saw acked.
final class AckedRecords: Sendable {
    private let state = Mutex<[String]>([])

    func add(_ body: String) { self.state.withLock { $0.append(body) } }
    var count: Int { self.state.withLock { $0.count } }
    var bodies: [String] { self.state.withLock { $0 } }
}
