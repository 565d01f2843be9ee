import InLongTransport
public import Logging
public import NIOCore
public import NIOPosix
public import ServiceLifecycle
import Synchronization

/// A stand-in for InLong's audit proxy, for local runs and tests: it accepts `AUDIT_REQUEST`s as the audit
/// proxy does (length-prefixed `BaseCommand`s over TCP), answers each with an `AUDIT_REPLY` carrying its request
/// id, answers `PING` with `PONG`, and keeps the counts summed per ``AuditKey`` in memory, where
/// ``entries()`` and ``reconciliation()`` read them. Counts of the process itself (a receiver's own) are added
/// with ``add(_:group:stream:logTime:count:size:delay:)``.
///
/// Run it as a `Service`; ``stop()`` ends ``run()``.
public final class AuditCollector: Service, Sendable {
    /// Where the collector listens.
    public struct Configuration: Sendable {
        /// Defaults to `127.0.0.1`.
        public var host = "127.0.0.1"
        /// Defaults to 0 (the system picks one; see ``AuditCollector/localAddress()``).
        public var port = 0
        /// Distinct keys kept; requests that would add more are answered `FAILED`. Defaults to 1,000,000.
        public var maxKeys = 1_000_000

        public init(host: String = "127.0.0.1", port: Int = 0) {
            self.host = host
            self.port = port
        }
    }

    /// The sums and counters, behind one lock shared with the server's handler.
    final class Ledger: Sendable {
        struct State {
            var sums: [AuditKey: AuditCounts] = [:]
            var statistics = AuditCollectorStatistics()
        }

        let state = Mutex(State())

        func withLock<Value>(_ body: (inout State) -> Value) -> Value {
            self.state.withLock { body(&$0) }
        }
    }

    public let configuration: Configuration
    private let server: PersistentServer<AuditServerCodec>
    private let ledger = Ledger()

    public init(
        configuration: Configuration = Configuration(),
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger = Logger(label: "inlong.audit.collector")
    ) {
        self.configuration = configuration
        let ledger = self.ledger
        var serverConfiguration = PersistentServer<AuditServerCodec>.Configuration(host: configuration.host, port: configuration.port)
        serverConfiguration.maxFrameLength = AuditFraming.maxFrameLength
        let maxKeys = configuration.maxKeys
        self.server = PersistentServer(codec: AuditServerCodec(), configuration: serverConfiguration, eventLoopGroup: eventLoopGroup, logger: logger) {
            command, responder in
            guard command.type == .auditRequest else {
                ledger.withLock { $0.statistics.otherCommands += 1 }
                return
            }
            let reply = Self.handle(command.auditRequest, ledger: ledger, maxKeys: maxKeys)
            var answer = AuditCommand()
            answer.type = .auditReply
            answer.auditReply = reply
            try? await responder.respond(answer)
        }
    }

    /// Sums a request's bodies, all or none: a body whose audit id is not a number, or keys beyond the bound,
    /// fail the whole request (the reporter sends it again, so a partial sum would count twice).
    static func handle(_ request: AuditRequestMessage, ledger: Ledger, maxKeys: Int) -> AuditReplyMessage {
        var reply = AuditReplyMessage()
        reply.requestID = request.requestID
        let entries = request.msgBody.compactMap(\.entry)
        guard entries.count == request.msgBody.count else {
            ledger.withLock { $0.statistics.refusedRequests += 1 }
            reply.rspCode = .failed
            reply.message = "an audit id is not a number"
            return reply
        }
        let accepted = ledger.withLock { ledger -> Bool in
            let newKeys = Set(entries.map(\.key)).subtracting(ledger.sums.keys).count
            guard ledger.sums.count + newKeys <= maxKeys else {
                ledger.statistics.refusedRequests += 1
                return false
            }
            for entry in entries { ledger.sums[entry.key, default: AuditCounts()] += entry.counts }
            ledger.statistics.requests += 1
            ledger.statistics.entries += entries.count
            return true
        }
        reply.rspCode = accepted ? .success : .failed
        if !accepted { reply.message = "the collector keeps at most \(maxKeys) keys" }
        return reply
    }

    /// The address the collector listens on, once it does.
    public func localAddress() async throws -> SocketAddress {
        try await self.server.localAddress()
    }

    public func run() async throws {
        try await self.server.run()
    }

    /// Stops listening and closes the connections; ``run()`` returns.
    public func stop() {
        self.server.stop()
    }

    /// Adds counts of this process (a receiver's own), as if reported.
    public func add(_ auditID: AuditID, group: String, stream: String, logTime: Int64, count: Int, size: Int, delay: Int64 = 0) {
        guard count > 0 else { return }
        let key = AuditKey(logTime: logTime, group: group, stream: stream, auditID: auditID)
        self.ledger.withLock { $0.sums[key, default: AuditCounts()] += AuditCounts(count: UInt64(count), size: UInt64(max(0, size)), delay: delay) }
    }

    /// Every key's sum so far, ordered by minute, group, stream, audit id.
    public func entries() -> [AuditEntry] {
        self.ledger.withLock { $0.sums.map { AuditEntry(key: $0.key, counts: $0.value) } }.sorted(by: AuditStateMachine.order)
    }

    /// Sent, acked and received per minute, group and stream.
    public func reconciliation() -> AuditReconciliation {
        AuditReconciliation(entries: self.entries())
    }

    public func statistics() -> AuditCollectorStatistics {
        self.ledger.withLock { $0.statistics }
    }
}

/// What an ``AuditCollector`` took.
public struct AuditCollectorStatistics: Sendable, Hashable {
    /// Requests summed, and their bodies.
    public var requests = 0
    public var entries = 0
    /// Requests answered `FAILED`.
    public var refusedRequests = 0
    /// Commands that were not requests (`PONG`, stray replies); `PING`s are answered and not counted.
    public var otherCommands = 0

    public init() {}
}
