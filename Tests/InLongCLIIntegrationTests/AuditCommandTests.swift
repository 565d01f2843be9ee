import Foundation
import InLongTestUtils
import InLongTransport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The audit loop through the built binary: `inlong receive` as the audit proxy stand-in, `inlong send` reporting
/// to it, `inlong audit` reading the reconciliation, with its exit status.
@Suite(.timeLimit(.minutes(3)))
struct AuditCommandTests {
    @Test func sendReceiveAndAuditAgreeAndAMismatchExitsOne() async throws {
        let inlong = try inlongExecutable()
        try await withTemporaryDirectory { directory in
            let receiver = try ChildProcess(
                inlong,
                ["receive", "--listen", "127.0.0.1:0", "--count-only", "--audit-port", "0", "--audit-query-port", "0"],
                logs: directory,
                name: "receive"
            )
            defer { receiver.signal(SIGKILL) }
            #expect(await eventually(timeout: .seconds(60)) { receiver.error().contains("audit query on") || !receiver.isRunning }, "\(receiver.output())")
            let lines = receiver.error().split(separator: "\n")
            let data = try #require(lines.first { $0.hasPrefix("listening on ") }?.split(separator: " ").last.map(String.init), "\(receiver.output())")
            let announcement = try #require(lines.first { $0.hasPrefix("audit proxy on ") }, "\(receiver.output())")
            let auditProxy = String(announcement.dropFirst("audit proxy on ".count).prefix { $0 != "," })
            let query = try #require(announcement.split(separator: " ").last.map { String($0.dropLast("/audit/query/minutes".count)) })

            let records = 1000
            let file = directory.appendingPathComponent("lines.txt")
            #expect(FileManager.default.createFile(atPath: file.path, contents: Data((0..<records).map { "line \($0)\n" }.joined().utf8)))
            let send = try ChildProcess(
                inlong,
                ["send", "--proxy", data, "--audit-proxy", auditProxy, "--group", "g", "--stream", "s", file.path],
                logs: directory,
                name: "send"
            )
            #expect(await send.waitForExit(timeout: .seconds(120)) == .exit(0), "\(send.output())")

            let audit = try ChildProcess(inlong, ["audit", "--audit-service", query, "--group", "g", "--wait", "60"], logs: directory, name: "audit")
            #expect(await audit.waitForExit(timeout: .seconds(120)) == .exit(0), "\(audit.output())")
            let table = (try? String(contentsOfFile: audit.outputPath, encoding: .utf8)) ?? ""
            let rows = table.split(separator: "\n").map { $0.split(separator: " ", omittingEmptySubsequences: true).map(String.init) }
            #expect(rows.first == ["minute", "(UTC)", "group", "stream", "sent", "acked", "received", "difference"], "\(table)")
            let body = rows.dropFirst()
            #expect(!body.isEmpty && body.allSatisfy { $0.count == 9 && $0[2] == "g" && $0[3] == "s" && $0[4] == $0[5] && $0[5] == $0[6] && $0[8] == "ok" }, "\(table)")
            #expect(body.reduce(0) { $0 + (Int($1[4]) ?? 0) } == records, "\(table)")

            // Records sent to a proxy that refuses: counted sent, never acked or received.
            let refusing = ClosedPort()
            defer { withExtendedLifetime(refusing) {} }
            let lost = try ChildProcess(
                inlong,
                ["send", "--proxy", "\(refusing.endpoint)", "--audit-proxy", auditProxy, "--group", "lost", "--stream", "s", "--unreachable-timeout", "2", file.path],
                logs: directory,
                name: "lost"
            )
            #expect(await lost.waitForExit(timeout: .seconds(120)) == .exit(1), "\(lost.output())")
            let mismatch = try ChildProcess(inlong, ["audit", "--audit-service", query, "--group", "lost"], logs: directory, name: "mismatch")
            #expect(await mismatch.waitForExit(timeout: .seconds(60)) == .exit(1), "\(mismatch.output())")
            let mismatchTable = (try? String(contentsOfFile: mismatch.outputPath, encoding: .utf8)) ?? ""
            #expect(mismatchTable.contains("MISMATCH") && mismatchTable.contains("-\(records)"), "\(mismatchTable)")

            let none = try ChildProcess(inlong, ["audit", "--audit-service", query, "--group", "nobody"], logs: directory, name: "none")
            #expect(await none.waitForExit(timeout: .seconds(60)) == .exit(66), "\(none.output())")
        }
    }
}
