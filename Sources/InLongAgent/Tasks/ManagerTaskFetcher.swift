#if ManagerDiscovery
public import AsyncHTTPClient
import NIOHTTP1
#endif
import Foundation
import InLongWire
public import InLongDataProxy
public import InLongTransport
public import Logging
import NIOCore
public import ServiceLifecycle
import Synchronization

/// Takes an ``Agent``'s tasks from the InLong Manager, as InLong's Agent does: every
/// ``Configuration-swift.struct/fetchInterval`` it asks `getExistTaskConfig` for its whole task set and applies a
/// changed one (``Agent/apply(tasks:)``), and every ``Configuration-swift.struct/heartbeatInterval`` it reports a
/// heartbeat. A Manager that cannot be reached changes nothing: the tasks running go on.
///
/// Run it next to the agent, in the same `ServiceGroup`.
public final class ManagerTaskFetcher: Service, Sendable {
    /// Where the Manager is and who the agent is to it.
    public struct Configuration: Sendable {
        /// The Manager's address, `http(s)://host:port`; the OpenAPI paths are added to it.
        public var managerURL: String
        /// The agent cluster the Manager knows this agent in (InLong's `agent.cluster.name`). Defaults to `default`.
        public var clusterName = "default"
        /// InLong's `agent.cluster.tag`, sent with heartbeats. Defaults to `nil`.
        public var clusterTag: String?
        /// The agent's address as the Manager knows it. Defaults to the first IPv4 address of an interface that is up.
        public var ip = TraceHop.localIPv4
        /// The agent's unique id. Defaults to the host's name.
        public var uuid = ProcessInfo.processInfo.hostName
        /// How often the tasks are asked for. Defaults to 10 s.
        public var fetchInterval: Duration = .seconds(10)
        /// How often a heartbeat is reported. Defaults to 10 s (InLong's default).
        public var heartbeatInterval: Duration = .seconds(10)
        /// Timeout of one request. Defaults to 30 s (InLong's default).
        public var requestTimeout: Duration = .seconds(30)
        /// How long the Manager may go without answering (tasks or heartbeats) before ``ManagerTaskFetcher/health()``
        /// names it: the tasks running go on, but an operator should know. Defaults to 60 s.
        public var unreachableTimeout: Duration = .seconds(60)
        /// Basic-auth `secretId`/`secretKey`, or `nil`. Defaults to `nil`.
        public var credentials: (secretID: String, secretKey: String)?
        /// The `tenant` header, or `nil`. Defaults to `nil`.
        public var tenant: String?
        #if ManagerDiscovery
        /// Settings of the HTTP client (TLS for an `https://` Manager). Defaults to AsyncHTTPClient's defaults.
        public var httpClientConfiguration = HTTPClient.Configuration()
        #endif

        public init(managerURL: String) {
            self.managerURL = Self.baseURL(managerURL)
        }

        /// The Manager's address of a URL that may name one of its OpenAPI paths (as the SDK's proxy-list URL does).
        public static func baseURL(_ url: String) -> String {
            var base = url
            if let range = base.range(of: "/inlong/manager/") { base = String(base[..<range.lowerBound]) }
            while base.hasSuffix("/") { base.removeLast() }
            return base
        }

        /// The Manager's settings of a client configuration (its address, credentials, tenant, TLS).
        public init(manager: DataProxyClient.Configuration.Manager) {
            self.init(managerURL: manager.url)
            self.credentials = manager.credentials
            self.tenant = manager.tenant
            #if ManagerDiscovery
            self.httpClientConfiguration = manager.httpClientConfiguration
            #endif
        }
    }

    /// What the fetcher did so far.
    public struct Statistics: Sendable, Hashable {
        /// Task requests answered (any answer).
        public var fetches = 0
        /// Task sets applied (changed ones).
        public var applied = 0
        /// Requests that failed (not reached, refused, not understood).
        public var failures = 0
        public var heartbeats = 0
        public var heartbeatFailures = 0
        /// The last failure, `nil` once a request succeeded again.
        public var lastError: String?
    }

    public let configuration: Configuration
    let agent: Agent
    let logger: Logger
    private let state: Mutex<(sync: ManagerTaskSync, statistics: Statistics, reachability: ManagerReachability)>

    public init(agent: Agent, configuration: Configuration, logger: Logger = Logger.disabled) {
        self.agent = agent
        self.configuration = configuration
        self.logger = logger
        let reachability = ManagerReachability(managerURL: configuration.managerURL, timeout: configuration.unreachableTimeout, now: .now)
        self.state = Mutex((sync: ManagerTaskSync(), statistics: Statistics(), reachability: reachability))
    }

    public func statistics() -> Statistics { self.state.withLock { $0.statistics } }

    /// Why the agent is unhealthy on the Manager's account, for `/health`: the Manager has not answered for longer
    /// than ``Configuration-swift.struct/unreachableTimeout`` (since the start, or its last answer), named with its
    /// address and the last failure's cause; `nil` otherwise.
    public func health() -> String? {
        self.state.withLock { $0.reachability.problem(now: .now) }
    }

    /// Asks for the tasks, then again every interval, and reports heartbeats, until a graceful shutdown or
    /// cancellation.
    public func run() async throws {
        #if ManagerDiscovery
        var http = self.configuration.httpClientConfiguration
        // A Manager that cannot be reached fails the request at once (the next interval tries again), with the
        // cause, rather than after the request timeout of the pool's reconnects.
        http.connectionPool.retryConnectionEstablishment = false
        let client = HTTPClient(eventLoopGroupProvider: .shared(self.agent.eventLoopGroup), configuration: http)
        await withDiscardingTaskGroup { group in
            group.addTask { await self.every(self.configuration.fetchInterval) { await self.fetch(client) } }
            group.addTask { await self.every(self.configuration.heartbeatInterval) { await self.reportHeartbeat(client) } }
        }
        try? await client.shutdown()
        #else
        throw ManagerTaskError("taking tasks from the Manager needs swift-inlong's package trait 'ManagerDiscovery'")
        #endif
    }

    /// Runs `body` now and then every `interval`, until a graceful shutdown or cancellation (which also ends a
    /// request under way: a Manager that does not answer must not hold up the agent's stop).
    private func every(_ interval: Duration, _ body: @escaping @Sendable () async -> Void) async {
        while !Task.isCancelled, !Task.isShuttingDownGracefully {
            await cancelWhenGracefulShutdown { await body() }
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: interval) }
        }
    }

    #if ManagerDiscovery
    /// One task request; a changed task set is applied.
    func fetch(_ client: HTTPClient) async {
        let md5 = self.state.withLock { $0.sync.md5 }
        let request = ManagerAgentMessages.TaskRequest(agentIp: self.configuration.ip, uuid: self.configuration.uuid, clusterName: self.configuration.clusterName, md5: md5)
        do {
            let body = try await self.post(client, path: ManagerAgentMessages.taskPath, JSONEncoder().encode(request))
            let result = try ManagerAgentMessages.taskResult(from: body)
            let update = self.state.withLock { state in
                state.statistics.fetches += 1
                state.statistics.lastError = nil
                state.reachability.answered(now: .now)
                let update = state.sync.received(result)
                state.statistics.applied = state.sync.applied
                return update
            }
            guard let update else { return }
            for error in update.errors {
                self.logger.warning("a Manager task is left out", metadata: ["inlong.error": "\(error)"])
            }
            let rejected = self.agent.apply(tasks: update.tasks)
            self.logger.notice(
                "tasks from the Manager: \(update.tasks.count - rejected.count) run",
                metadata: ["inlong.tasks": "\(update.tasks.map(\.id).joined(separator: ", "))"]
            )
        } catch {
            self.failed(error, heartbeat: false)
        }
    }

    /// One heartbeat.
    func reportHeartbeat(_ client: HTTPClient) async {
        let heartbeat = ManagerAgentMessages.Heartbeat(
            ip: self.configuration.ip,
            reportTime: Int64((Date().timeIntervalSince1970 * 1_000).rounded(.down)),
            clusterName: self.configuration.clusterName,
            clusterTag: self.configuration.clusterTag
        )
        do {
            let body = try await self.post(client, path: ManagerAgentMessages.heartbeatPath, JSONEncoder().encode(heartbeat))
            let envelope = try JSONDecoder().decode(ManagerAgentMessages.Envelope<Bool>.self, from: Data(body))
            guard envelope.success else { throw ManagerTaskError("the Manager refused the heartbeat: \(envelope.errMsg ?? "no reason given")") }
            self.state.withLock { state in
                state.statistics.heartbeats += 1
                state.reachability.answered(now: .now)
            }
        } catch {
            self.failed(error, heartbeat: true)
        }
    }

    private func failed(_ error: any Error, heartbeat: Bool) {
        guard !(error is CancellationError) else { return }
        // The cause in a few plain words ("connection refused"), not the HTTP client's dump.
        let cause = TransportError.plainCause(error)
        let first = self.state.withLock { state in
            if heartbeat { state.statistics.heartbeatFailures += 1 } else { state.statistics.failures += 1 }
            defer { state.statistics.lastError = cause }
            state.reachability.failed(cause)
            return state.statistics.lastError == nil
        }
        // Said once at warning until a request succeeds again: a Manager that is down keeps the tasks as they are.
        self.logger.log(level: first ? .warning : .debug, "cannot reach the Manager; the tasks running go on", metadata: ["inlong.error": "\(cause)"])
    }

    private func post(_ client: HTTPClient, path: String, _ body: Data) async throws -> [UInt8] {
        var request = HTTPClientRequest(url: self.configuration.managerURL + path)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        if let credentials = self.configuration.credentials {
            request.headers.add(name: "Authorization", value: ManagerAuthorization.basic(secretID: credentials.secretID, secretKey: credentials.secretKey))
        }
        if let tenant = self.configuration.tenant { request.headers.add(name: "tenant", value: tenant) }
        request.body = .bytes(ByteBuffer(bytes: body))
        let response = try await client.execute(request, timeout: .init(self.configuration.requestTimeout))
        let answer = try await response.body.collect(upTo: 16 << 20)
        guard response.status == .ok else { throw ManagerTaskError("the Manager answered HTTP \(response.status.code) at \(path)") }
        return Array(buffer: answer)
    }
    #endif
}
