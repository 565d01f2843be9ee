import AsyncHTTPClient
import Foundation
import InLongTestUtils
import NIOCore
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
            let (receiver, data, auditProxy, query) = try await Self.startStandIn(inlong, directory)
            defer { receiver.signal(SIGKILL) }

            let records = 1000
            let file = try await Self.sendLines(inlong, directory, records: records, ["--proxy", data, "--audit-proxy", auditProxy])
            let table = await Self.auditTable(inlong, query, group: "g", directory)
            let rows = table.split(separator: "\n").map { $0.split(separator: " ", omittingEmptySubsequences: true).map(String.init) }
            #expect(rows.first == ["minute", "(UTC)", "group", "stream", "sent", "acked", "received", "difference"], "\(table)")
            #expect(Self.agreeingTotal(table, group: "g") == records, "\(table)")

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

    /// Audit proxies from a live Manager: `inlong receive --manager-port` lists its own `--audit-port` at the
    /// Manager's audit-proxy endpoint; `inlong send --audit-manager` asks it and reports there; the table agrees.
    @Test func sendReportsToTheAuditProxyItsManagerLists() async throws {
        let inlong = try inlongExecutable()
        try await withTemporaryDirectory { directory in
            let (receiver, data, auditProxy, query) = try await Self.startStandIn(inlong, directory, arguments: ["--manager-port", "0"])
            defer { receiver.signal(SIGKILL) }
            let announced = receiver.error()
            let start = try #require(announced.range(of: "Manager endpoint ")?.upperBound, "\(receiver.output())")
            let end = try #require(announced[start...].range(of: "/inlong/manager/")?.lowerBound, "\(receiver.output())")
            let manager = String(announced[start..<end])
            // What the audit SDK asks and the Manager answers: this receiver's audit proxy.
            let response = try await HTTPClient.shared.execute(
                HTTPClientRequest(url: "\(manager)/inlong/manager/openapi/audit/getAuditProxy?component=DataProxy"),
                timeout: .seconds(30)
            )
            let listed = String(buffer: try await response.body.collect(upTo: 1 << 20))
            let (host, port) = (auditProxy.split(separator: ":").first.map(String.init) ?? "", auditProxy.split(separator: ":").last.map(String.init) ?? "")
            #expect(listed == #"{"success":true,"errMsg":null,"data":[{"host":"\#(host)","port":\#(port)}]}"#)

            let records = 1000
            _ = try await Self.sendLines(inlong, directory, records: records, ["--proxy", data, "--audit-manager", manager])
            let table = await Self.auditTable(inlong, query, group: "g", directory)
            #expect(Self.agreeingTotal(table, group: "g") == records, "\(table)")
        }
    }

    /// The agent reports lines read (audit id 3) and delivered (4): the same table agrees.
    @Test
    func anAgentReportsReadAndSentLines() async throws {
        let inlong = try inlongExecutable()
        try await withTemporaryDirectory { directory in
            let (receiver, data, auditProxy, query) = try await Self.startStandIn(inlong, directory)
            defer { receiver.signal(SIGKILL) }
            let logs = directory.appendingPathComponent("logs")
            try FileManager.default.createDirectory(at: logs, withIntermediateDirectories: true)
            let lines = 500
            #expect(FileManager.default.createFile(atPath: logs.appendingPathComponent("a.log").path, contents: Data((0..<lines).map { "agent line \($0)\n" }.joined().utf8)))
            let agent = try ChildProcess(
                inlong,
                [
                    "agent", "--path", logs.path + "/*.log", "--group", "ga", "--stream", "sa", "--proxy", data,
                    "--state-dir", directory.appendingPathComponent("state").path, "--once", "--audit-proxy", auditProxy,
                ],
                environment: ["INLONG_CONNECTION_REQUEST_TIMEOUT": "120"],
                logs: directory,
                name: "agent"
            )
            #expect(await agent.waitForExit(timeout: .seconds(120)) == .exit(0), "\(agent.output())")
            let table = await Self.auditTable(inlong, query, group: "ga", directory)
            #expect(Self.agreeingTotal(table, group: "ga") == lines, "\(table)")
        }
    }

    /// Writes `records` lines to a file and sends them to group `g`, stream `s` with `inlong send` and `arguments`
    /// (proxy and audit flags), expecting exit 0; the file.
    static func sendLines(_ inlong: URL, _ directory: URL, records: Int, _ arguments: [String]) async throws -> URL {
        let file = directory.appendingPathComponent("lines.txt")
        #expect(FileManager.default.createFile(atPath: file.path, contents: Data((0..<records).map { "line \($0)\n" }.joined().utf8)))
        let send = try ChildProcess(
            inlong,
            ["send"] + arguments + ["--group", "g", "--stream", "s", file.path],
            // Exactly once is asserted (a resent batch is received twice): no request may time out on a loaded machine.
            environment: ["INLONG_CONNECTION_REQUEST_TIMEOUT": "120"],
            logs: directory,
            name: "send"
        )
        #expect(await send.waitForExit(timeout: .seconds(120)) == .exit(0), "\(send.output())")
        return file
    }

    /// The table `inlong audit --group GROUP` prints once the stand-in holds that group's counts, expecting exit 0.
    static func auditTable(_ inlong: URL, _ query: String, group: String, _ directory: URL) async -> String {
        guard let audit = try? ChildProcess(inlong, ["audit", "--audit-service", query, "--group", group, "--wait", "60"], logs: directory, name: "audit") else {
            Issue.record("inlong audit did not start")
            return ""
        }
        #expect(await audit.waitForExit(timeout: .seconds(120)) == .exit(0), "\(audit.output())")
        return (try? String(contentsOfFile: audit.outputPath, encoding: .utf8)) ?? ""
    }

    /// `inlong receive` as the audit stand-in: the child, its data address, its audit proxy and its query URL.
    static func startStandIn(_ inlong: URL, _ directory: URL, arguments: [String] = []) async throws -> (ChildProcess, String, String, String) {
        let receiver = try ChildProcess(
            inlong,
            ["receive", "--listen", "127.0.0.1:0", "--count-only", "--audit-port", "0", "--audit-query-port", "0"] + arguments,
            logs: directory,
            name: "receive"
        )
        #expect(await eventually(timeout: .seconds(60)) { receiver.error().contains("audit query on") || !receiver.isRunning }, "\(receiver.output())")
        let lines = receiver.error().split(separator: "\n")
        // `listening on HOST:PORT`, then what else it serves after a comma.
        let listening = try #require(lines.first { $0.hasPrefix("listening on ") }, "\(receiver.output())")
        let data = String(listening.dropFirst("listening on ".count).prefix { $0 != "," })
        let announcement = try #require(lines.first { $0.hasPrefix("audit proxy on ") }, "\(receiver.output())")
        let auditProxy = String(announcement.dropFirst("audit proxy on ".count).prefix { $0 != "," })
        let query = try #require(announcement.split(separator: " ").last.map { String($0.dropLast("/audit/query/minutes".count)) })
        return (receiver, data, auditProxy, query)
    }

    /// The records of `group`'s rows when the table has its header and every row agrees; `nil` otherwise.
    static func agreeingTotal(_ table: String, group: String) -> Int? {
        let rows = table.split(separator: "\n").map { $0.split(separator: " ", omittingEmptySubsequences: true).map(String.init) }
        guard rows.first == ["minute", "(UTC)", "group", "stream", "sent", "acked", "received", "difference"] else { return nil }
        let body = rows.dropFirst()
        guard !body.isEmpty, body.allSatisfy({ $0.count == 9 && $0[2] == group && $0[4] == $0[5] && $0[5] == $0[6] && $0[8] == "ok" }) else { return nil }
        return body.reduce(0) { $0 + (Int($1[4]) ?? 0) }
    }
}
