import ArgumentParser
import AsyncHTTPClient
import Foundation
import InLongAudit
import InLongTransport
import NIOCore
import NIOHTTP1

/// `inlong audit`: reads per-minute counts from an InLong audit service (or `inlong receive`'s stand-in) and prints
/// sent, acked and received per minute, group and stream.
struct AuditReportCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audit",
        abstract: "Reconcile InLong Audit counts: records sent and acked by clients and agents against records received, per minute and stream.",
        discussion: """
            Reads the audit service's minute query (GET /audit/query/minutes), as served by inlong receive --audit-port P --audit-query-port Q, and prints one row per minute (UTC), group and stream: sent (audit ids 1 and 3), acked (2 and 4), received (5), and received minus sent.

            Exit status: 0 when every row agrees (sent = acked = received); 1 when a row disagrees; 66 when there are no counts; 69 when the audit service cannot be read.

            Example:
              inlong receive --audit-port 10081 --audit-query-port 10080 --count-only
              inlong send --proxy 127.0.0.1:46801 --audit-proxy 127.0.0.1:10081 \\
                --group g --stream s app.log
              inlong audit --audit-service http://127.0.0.1:10080
            """
    )

    @Option(help: "The audit service (or inlong receive's audit query endpoint), http://HOST:PORT.")
    var auditService: String

    @Option(help: "Only this group.")
    var group: String?

    @Option(help: "Only this stream.")
    var stream: String?

    @Option(help: "Only minutes from this one on, yyyy-MM-dd HH:mm (UTC).")
    var since: String?

    @Option(help: "Ask again every second for up to this many seconds until every row agrees.")
    var wait: Double = 0

    @Flag(help: "Print the rows as JSON.")
    var json = false

    func validate() throws {
        if let since, AuditStatData.time(parsing: since) == nil { throw ValidationError("--since takes yyyy-MM-dd HH:mm, not '\(since)'") }
        guard self.auditService.hasPrefix("http://") || self.auditService.hasPrefix("https://") else {
            throw ValidationError("--audit-service takes http://HOST:PORT, not '\(self.auditService)'")
        }
        guard self.wait >= 0, self.wait.isFinite else { throw ValidationError("--wait takes seconds") }
    }

    func run() async throws {
        let deadline = ContinuousClock.now + .milliseconds(Int64(self.wait * 1000))
        var reconciliation: AuditReconciliation
        while true {
            do {
                reconciliation = AuditReconciliation(entries: try await self.fetch())
            } catch {
                FileHandle.standardError.write(Data("cannot read the audit service at \(self.auditService): \(TransportError.plainCause(error))\n".utf8))
                throw ExitCode(69)
            }
            if reconciliation.agrees || ContinuousClock.now >= deadline { break }
            try await Task.sleep(for: .seconds(1))
        }
        if self.json {
            let rows = reconciliation.rows.map { row -> [String: any Sendable] in
                [
                    "minute": AuditStatData.timeText(row.minute), "group": row.group, "stream": row.stream,
                    "sent": row.sent, "acked": row.acked, "received": row.received, "difference": row.difference, "agrees": row.agrees,
                ]
            }
            let data = try JSONSerialization.data(withJSONObject: rows, options: [.sortedKeys, .prettyPrinted])
            FileHandle.standardOutput.write(data + Data("\n".utf8))
        } else if !reconciliation.rows.isEmpty {
            print(reconciliation.table())
        }
        if reconciliation.rows.isEmpty {
            FileHandle.standardError.write(Data("no audit counts\(self.group.map { " for group \($0)" } ?? "")\n".utf8))
            throw ExitCode(66)
        }
        if !reconciliation.agrees { throw ExitCode(1) }
    }

    /// Every count the service has for the group and stream (all audit ids, one request).
    private func fetch() async throws -> [AuditEntry] {
        var query: [String] = []
        if let group = self.group { query.append("inlongGroupId=" + Self.encode(group)) }
        if let stream = self.stream { query.append("inlongStreamId=" + Self.encode(stream)) }
        if let since = self.since { query.append("startTime=" + Self.encode(since + ":00")) }
        let base = self.auditService.hasSuffix("/") ? String(self.auditService.dropLast()) : self.auditService
        let url = base + "/audit/query/minutes" + (query.isEmpty ? "" : "?" + query.joined(separator: "&"))
        let response = try await HTTPClient.shared.execute(HTTPClientRequest(url: url), timeout: .seconds(10))
        let body = try await response.body.collect(upTo: 64 << 20)
        guard response.status == .ok else { throw CLIError("HTTP \(response.status.code)") }
        let answer = try JSONDecoder().decode(AuditStatData.Response.self, from: Data(body.readableBytesView))
        guard answer.success else { throw CLIError(answer.errMsg ?? "the query failed") }
        return (answer.data ?? []).compactMap(\.entry)
    }

    private static func encode(_ value: String) -> String {
        value.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-_.~"))) ?? value
    }
}
