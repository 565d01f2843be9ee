import Foundation
import InLongWire
import HTTPTypes
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
public import NIOSSL
public import InLongTransport
public import Logging
public import NIOCore
public import NIOPosix
public import ServiceLifecycle
import Synchronization

/// The InLong Manager's proxy-list endpoint (wire-protocol.md §8), so that SDK discovery works without a Manager:
/// `POST /inlong/manager/openapi/dataproxy/getIpList/{groupId}` answers with the configured DataProxy nodes in the
/// Manager's JSON shape, nulls included.
public final class DataProxyManagerServer: Service, Sendable {
    /// The path prefix; the group id follows it.
    public static let pathPrefix = "/inlong/manager/openapi/dataproxy/getIpList"

    /// The path of the audit proxy list (`GET`, `?component=…`), as InLong's audit SDK asks it.
    public static let auditProxyPath = "/inlong/manager/openapi/audit/getAuditProxy"

    /// How the endpoint listens and what it answers.
    public struct Configuration: Sendable {
        /// The address to listen on. Defaults to `127.0.0.1`.
        public var host = "127.0.0.1"
        /// The port; `0` picks a free one. Defaults to 0.
        public var port = 0
        /// The `clusterId` answered. Defaults to 1.
        public var clusterID = 1
        /// The cluster-level `load` threshold answered. Defaults to 20, the Manager's default.
        public var load = 20
        /// The `maxPacketLength` answered; `nil` answers `null`. Defaults to `nil`.
        public var maxPacketLength: Int?
        /// Basic-auth credentials required, or `nil` for none. Defaults to `nil`.
        public var credentials: Credentials?
        /// A `tenant` header value required, as the Manager's filter chain does, or `nil`. Defaults to `nil`.
        public var requiredTenant: String?
        /// Groups known; others get `success:false`. Defaults to `nil`: any.
        public var knownGroups: Set<String>?
        /// Serves `https://` with this configuration, or plain HTTP when `nil`. Defaults to `nil`.
        public var tlsConfiguration: TLSConfiguration?
        /// Whether the listed proxies ack only what they made durable, answered as `data.durableAcks` (beyond the
        /// Manager's shape; SDKs ignore it), or `nil` to leave it out. A receiver sets it from its
        /// ``DataProxyReceiver/Configuration/fsync`` when it is `nil`. Defaults to `nil`.
        public var durableAcks: Bool?
        /// Also serve the agent endpoints (tasks from this file, heartbeats counted): see ``AgentTaskBoard``.
        /// Defaults to `nil`: not served.
        public var agentTasksFile: String?

        public init() {}
    }

    /// The `secretId`/`secretKey` pair of the Manager's Basic auth.
    public struct Credentials: Sendable, Hashable {
        public var secretID: String
        public var secretKey: String
        public init(secretID: String, secretKey: String) {
            self.secretID = secretID
            self.secretKey = secretKey
        }
    }

    /// One DataProxy node in the list.
    public struct Node: Sendable, Hashable {
        public var ip: String
        public var port: Int
        /// The per-node `nodeLoad`; `nil` answers `null`.
        public var load: Int?
        public init(ip: String, port: Int, load: Int? = nil) {
            self.ip = ip
            self.port = port
            self.load = load
        }
    }

    /// Misbehaviour on purpose, for testing discovery.
    public enum Fault: Sendable, Hashable {
        /// Answer normally.
        case none
        /// Answer `success:true` with `clusterId` and `nodeList` null, as for a group without nodes.
        case emptyNodeList
        /// Answer HTTP 200 with a body that is not JSON.
        case malformedBody
        /// Answer `success:false` with this message.
        case failure(String)
        /// Answer HTTP 503.
        case unavailable
    }

    /// What one group is answered instead of the defaults: its own cluster (as a Manager serving several
    /// DataProxy clusters does) and nodes, or a fault.
    public struct GroupAnswer: Sendable, Hashable {
        public var clusterID: Int
        public var nodes: [Node]
        public var fault = Fault.none
        public init(clusterID: Int, nodes: [Node], fault: Fault = .none) {
            self.clusterID = clusterID
            self.nodes = nodes
            self.fault = fault
        }
    }

    private struct State {
        var nodes: [Node]
        var httpNodes: [Node] = []
        var auditProxies: [Node] = []
        var fault = Fault.none
        var groups: [String: GroupAnswer] = [:]
    }

    public let configuration: Configuration
    private let eventLoopGroup: any EventLoopGroup
    private let logger: Logger
    private let state: Mutex<State>
    private let address = ListeningAddress()
    private let requests = Atomic<Int>(0)
    /// The agent endpoints, when ``Configuration-swift.struct/agentTasksFile`` is set.
    public let agentTasks: AgentTaskBoard?

    public init(
        configuration: Configuration,
        nodes: [Node],
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger = Logger.disabled
    ) {
        self.configuration = configuration
        self.eventLoopGroup = eventLoopGroup
        self.logger = logger
        self.state = Mutex(State(nodes: nodes))
        self.agentTasks = configuration.agentTasksFile.map { AgentTaskBoard(file: $0) }
    }

    /// The nodes answered.
    public var nodes: [Node] { self.modify { $0.nodes } }

    /// Replaces the nodes answered.
    public func setNodes(_ nodes: [Node]) { self.modify { $0.nodes = nodes } }

    /// The nodes answered for `protocolType=HTTP` (DataProxy's HTTP API), to every group.
    public var httpNodes: [Node] { self.modify { $0.httpNodes } }

    /// Replaces the nodes answered for `protocolType=HTTP` (none at first: such a request is answered with no
    /// node, as the Manager does for a cluster without HTTP nodes).
    public func setHTTPNodes(_ nodes: [Node]) { self.modify { $0.httpNodes = nodes } }

    /// The audit proxies answered at ``auditProxyPath`` (to every component).
    public var auditProxies: [Node] { self.modify { $0.auditProxies } }

    /// Replaces the audit proxies answered (none at first: an empty list, which the audit SDK asks again after).
    public func setAuditProxies(_ proxies: [Node]) { self.modify { $0.auditProxies = proxies } }

    /// Sets the fault injected into every following answer.
    public func setFault(_ fault: Fault) { self.modify { $0.fault = fault } }

    /// Answers `group` with its own cluster and nodes (or fault) from now on; `nil` goes back to the defaults.
    public func setAnswer(_ answer: GroupAnswer?, for group: String) { self.modify { $0.groups[group] = answer } }

    /// Every access to the answers, under their lock.
    private func modify<Value>(_ body: (inout State) -> Value) -> Value {
        self.state.withLock { body(&$0) }
    }

    /// Requests answered so far (any outcome).
    public var requestCount: Int { self.requests.load(ordering: .relaxed) }

    /// The address it listens on, once it does.
    public func localAddress() async throws -> SocketAddress {
        try await self.address.value()
    }

    /// The base URL SDKs are configured with (without the group id), once it listens.
    public func baseURL() async throws -> String {
        let address = try await self.localAddress()
        let scheme = self.configuration.tlsConfiguration == nil ? "http" : "https"
        return "\(scheme)://\(address.ipAddress ?? self.configuration.host):\(address.port ?? 0)\(Self.pathPrefix)"
    }

    public func run() async throws {
        let router = Router()
        router.post("\(Self.pathPrefix)/:groupId") { request, context -> Response in
            try await self.respond(to: request, context: context)
        }
        router.get(RouterPath(Self.auditProxyPath)) { request, _ -> Response in
            self.requests.add(1, ordering: .relaxed)
            if let denied = self.refusal(request) { return denied }
            // `Response<List<AuditProxy>>`: each proxy's host and port.
            let proxies = self.modify { $0.auditProxies }.map { #"{"host":"\#($0.ip)","port":\#($0.port)}"# }
            return Self.json(.ok, #"{"success":true,"errMsg":null,"data":[\#(proxies.joined(separator: ","))]}"#)
        }
        if let agentTasks = self.agentTasks { self.route(agentTasks, on: router) }
        let server: HTTPServerBuilder = try self.configuration.tlsConfiguration.map { try .tls(.http1(), tlsConfiguration: $0) } ?? .http1()
        let application = Application(
            router: router,
            server: server,
            configuration: .init(address: .hostname(self.configuration.host, port: self.configuration.port)),
            onServerRunning: { channel in
                guard let address = channel.localAddress else { return }
                self.address.settle(.success(address))
            },
            eventLoopGroupProvider: .shared(self.eventLoopGroup),
            logger: self.logger
        )
        // A server that ends before it listened never will.
        defer { self.address.settle(.failure(ReceiverError.stopped)) }
        do {
            try await application.run()
        } catch let error as IOError {
            throw ReceiverError.cannotListen(on: "\(self.configuration.host):\(self.configuration.port) (the Manager endpoint)", because: error)
        }
    }

    /// The answer to a request without the configured credentials or tenant, or `nil` when it has them.
    private func refusal(_ request: Request) -> Response? {
        if let credentials = self.configuration.credentials {
            let expected = ManagerAuthorization.basic(secretID: credentials.secretID, secretKey: credentials.secretKey)
            guard request.headers[.authorization] == expected else {
                return Self.json(.unauthorized, #"{"success":false,"errMsg":"authentication failed","data":null}"#)
            }
        }
        if let tenant = self.configuration.requiredTenant {
            guard let name = HTTPField.Name("tenant"), request.headers[name] == tenant else {
                return Self.json(.forbidden, #"{"success":false,"errMsg":"tenant is required","data":null}"#)
            }
        }
        return nil
    }

    private func respond(to request: Request, context: BasicRequestContext) async throws -> Response {
        self.requests.add(1, ordering: .relaxed)
        if let denied = self.refusal(request) { return denied }
        let group = context.parameters.get("groupId") ?? ""
        var request = request
        let body = try await request.collectBody(upTo: 64 << 10)
        var protocolType = request.uri.queryParameters.get("protocolType")
        for pair in String(buffer: body).split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1)
            if parts.count == 2, parts[0] == "protocolType" { protocolType = String(parts[1]) }
        }
        let (fault, nodes, httpNodes, clusterID) = self.modify { state in
            if let answer = state.groups[group] { return (answer.fault, answer.nodes, state.httpNodes, answer.clusterID) }
            return (state.fault, state.nodes, state.httpNodes, self.configuration.clusterID)
        }
        switch fault {
        case .none: break
        case .emptyNodeList: return Self.json(.ok, self.payload(nodes: nil, clusterID: clusterID))
        case .malformedBody: return Self.json(.ok, #"{"success":true,"data":{"nodeList":[{"ip":"#)
        case .failure(let message): return Self.json(.ok, Self.failure(message))
        case .unavailable: return Self.json(.serviceUnavailable, "Service Unavailable")
        }
        if let knownGroups = self.configuration.knownGroups, !knownGroups.contains(group) {
            return Self.json(.ok, Self.failure("inlong group \(group) not found"))
        }
        // The Manager filters its nodes by the protocol asked for; none asked lists the TCP nodes.
        switch protocolType?.uppercased() ?? "TCP" {
        case "TCP": return Self.json(.ok, self.payload(nodes: nodes.isEmpty ? nil : nodes, clusterID: clusterID))
        case "HTTP": return Self.json(.ok, self.payload(nodes: httpNodes.isEmpty ? nil : httpNodes, clusterID: clusterID, protocolType: "HTTP"))
        default: return Self.json(.ok, self.payload(nodes: nil, clusterID: clusterID))
        }
    }

    private func payload(nodes: [Node]?, clusterID: Int, protocolType: String = "TCP") -> String {
        let list = nodes.map { nodes in
            "[" + nodes.enumerated().map { index, node in
                #"{"id":\#(index + 1),"ip":"\#(node.ip)","port":\#(node.port),"protocolType":"\#(protocolType)","nodeLoad":\#(node.load.map(String.init) ?? "null")}"#
            }.joined(separator: ",") + "]"
        } ?? "null"
        let cluster = nodes == nil ? "null" : String(clusterID)
        let maxPacketLength = self.configuration.maxPacketLength.map(String.init) ?? "null"
        let durableAcks = self.configuration.durableAcks.map { #","durableAcks":\#($0)"# } ?? ""
        return #"{"success":true,"errMsg":null,"data":{"clusterId":\#(cluster),"reportSourceType":null,"isIntranet":null,"isSwitch":null,"load":\#(self.configuration.load),"maxPacketLength":\#(maxPacketLength),"nodeList":\#(list)\#(durableAcks)}}"#
    }

    private static func failure(_ message: String) -> String {
        var escaped: [UInt8] = []
        JSONLinesSink.appendString(message, to: &escaped)
        return #"{"success":false,"errMsg":\#(String(decoding: escaped, as: UTF8.self)),"data":null}"#
    }

    private static func json(_ status: HTTPResponse.Status, _ body: String) -> Response {
        Response(
            status: status,
            headers: [.contentType: "application/json"],
            body: ResponseBody(byteBuffer: ByteBuffer(string: body))
        )
    }
}
