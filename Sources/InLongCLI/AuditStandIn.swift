import ArgumentParser
import Foundation
import Hummingbird
import InLongAudit
import InLongDataProxyReceiver
import InLongTransport
import InLongWire
import Logging
import NIOCore
import ServiceLifecycle

/// `inlong receive`'s InLong Audit stand-in: an audit proxy on `--audit-port` that keeps the counts clients
/// report, the receiver's own per-minute counts of what it stored (InLong's `DATA_PROXY_INPUT`, audit id 5), and
/// the audit service's minute query on `--audit-query-port`, which `inlong audit` reads.
struct AuditStandInOptions: ParsableArguments {
    @Option(help: "Also act as an InLong audit proxy on this port (0 picks one): accept the audit reports of clients and agents, and count what this receiver stores per minute, group and stream.")
    var auditPort: Int?

    @Option(help: "With --audit-port: serve the counts as InLong's audit service does (GET /audit/query/minutes) on this port (0 picks one); inlong audit --audit-service reads it.")
    var auditQueryPort: Int?

    func validate() throws {
        if self.auditQueryPort != nil, self.auditPort == nil { throw ValidationError("--audit-query-port needs --audit-port") }
        for port in [self.auditPort, self.auditQueryPort].compactMap({ $0 }) where !(0...65535).contains(port) {
            throw ValidationError("\(port) is not a port")
        }
    }

    /// The collector and its query endpoint, listening on `host`, or `nil` without `--audit-port`.
    func makeStandIn(host: String, logger: Logger) -> AuditStandIn? {
        guard let port = self.auditPort else { return nil }
        let collector = AuditCollector(configuration: .init(host: host, port: port), logger: logger)
        return AuditStandIn(collector: collector, query: self.auditQueryPort.map { AuditQueryEndpoint(host: host, port: $0, collector: collector, logger: logger) })
    }
}

/// The collector and its optional query endpoint, as services.
struct AuditStandIn {
    let collector: AuditCollector
    let query: AuditQueryEndpoint?

    var services: [ServiceGroupConfiguration.ServiceConfiguration] {
        [.init(service: self.collector)] + (self.query.map { [.init(service: $0)] } ?? [])
    }

    /// The line `inlong receive` prints once both listen, given the audit proxy's `address` (the collector's
    /// address can be awaited once only).
    func announcement(address: SocketAddress) async -> String {
        var line = "audit proxy on \(address.ipAddress ?? self.collector.configuration.host):\(address.port ?? 0)"
        if let query = self.query, let port = await query.localPort() { line += ", audit query on http://\(query.host):\(port)/audit/query/minutes" }
        return line
    }
}

/// Wraps the receiver's sink: once a message is stored, its records count as received in the minute of its data
/// time (`DATA_PROXY_INPUT`, as the DataProxy reports them).
struct AuditingSink: DataProxyReceiverSink {
    let inner: any DataProxyReceiverSink
    let collector: AuditCollector

    var needsRecords: Bool { self.inner.needsRecords }
    var acksAreDurable: Bool { self.inner.acksAreDurable }

    func write(_ message: ReceivedMessage) async throws {
        try await self.inner.write(message)
        let delay = max(0, message.receivedAt - message.dataTime) * Int64(message.recordCount)
        // The records' bytes, as the client counts them: without type 7's 4-byte length per record.
        let size = message.records.isEmpty
            ? message.payloadBytes - (message.messageType == .binaryMultiBody ? 4 * message.recordCount : 0)
            : message.records.reduce(0) { $0 + $1.body.readableBytes }
        self.collector.add(.dataProxyInput, group: message.group, stream: message.stream, logTime: message.dataTime, count: message.recordCount, size: max(0, size), delay: delay)
    }

    func flush() async throws {
        try await self.inner.flush()
    }
}

/// `GET /audit/query/minutes` as InLong's audit service answers it (`{"success", "errMsg", "data": [StatData]}`),
/// over the collector's counts. Every parameter is optional here (the audit service requires them all):
/// `startTime` and `endTime` (`yyyy-MM-dd HH:mm:ss`, UTC, end inclusive), `inlongGroupId`, `inlongStreamId`,
/// `auditId`.
final class AuditQueryEndpoint: Service, Sendable {
    let host: String
    let port: Int
    let collector: AuditCollector
    let logger: Logger
    private let bound = AsyncStream<Int?>.makeStream(bufferingPolicy: .bufferingNewest(1))

    init(host: String, port: Int, collector: AuditCollector, logger: Logger) {
        self.host = host
        self.port = port
        self.collector = collector
        self.logger = logger
    }

    /// The port it listens on, once it does; `nil` if it ended first.
    func localPort() async -> Int? {
        for await port in self.bound.stream { return port }
        return nil
    }

    func run() async throws {
        let router = Router()
        let collector = self.collector
        router.get("/audit/query/minutes") { request, _ -> Response in
            let answer = Self.answer(collector.entries(), query: request.uri.queryParameters)
            let body = (try? JSONEncoder().encode(answer)) ?? Data()
            return Response(
                status: .ok,
                headers: [.contentType: "application/json;charset=utf-8"],
                body: .init(byteBuffer: ByteBuffer(bytes: body))
            )
        }
        let application = Application(
            router: router,
            configuration: .init(address: .hostname(self.host, port: self.port)),
            onServerRunning: { channel in self.bound.continuation.yield(channel.localAddress?.port) },
            logger: self.logger
        )
        defer { self.bound.continuation.yield(nil) }
        try await application.run()
    }

    static func answer(_ entries: [AuditEntry], query: Parameters) -> AuditStatData.Response {
        func value(_ name: String) -> String? { query[Substring(name)].map(String.init).flatMap { $0.removingPercentEncoding } }
        let start = value("startTime").map { AuditStatData.time(parsing: $0) }
        let end = value("endTime").map { AuditStatData.time(parsing: $0) }
        if start == .some(nil) || end == .some(nil) {
            return .init(success: false, errMsg: "startTime and endTime take yyyy-MM-dd HH:mm:ss", data: [])
        }
        let group = value("inlongGroupId")
        let stream = value("inlongStreamId")
        let auditID = value("auditId")
        let rows = entries.filter { entry in
            if let start = start ?? nil, entry.key.minute < start { return false }
            if let end = end ?? nil, entry.key.minute > end { return false }
            if let group, entry.key.group != group { return false }
            if let stream, entry.key.stream != stream { return false }
            if let auditID, String(entry.key.auditID.rawValue) != auditID { return false }
            return true
        }
        return .init(success: true, errMsg: "", data: rows.map(AuditStatData.init))
    }
}
