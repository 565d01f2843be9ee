#if ManagerDiscovery
public import AsyncHTTPClient
import Foundation
import InLongWire
public import InLongTransport
public import Logging
import NIOCore
import NIOHTTP1
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Asks the InLong Manager for proxy lists (wire-protocol.md §8) and keeps the last good answers in a cache file.
struct ProxyDiscovery: Sendable {
    let configuration: DataProxyClient.Configuration.Manager
    let httpClient: HTTPClient
    let logger: Logger
    /// The nodes asked for: `TCP` (DataProxy's TCP port) or `HTTP` (its HTTP API), as the Manager's
    /// `protocolType` filter names them.
    var protocolType = "TCP"

    private struct Reply: Decodable {
        struct Payload: Decodable {
            var clusterId: Int?
            var maxPacketLength: Int?
            var load: Int?
            var nodeList: [Node]?
        }

        struct Node: Decodable {
            var id: Int?
            var ip: String
            var port: Port
            var protocolType: String?
            var nodeLoad: Int?
        }

        /// The C++ parser also takes the port as a string.
        struct Port: Decodable {
            var value: Int
            init(from decoder: any Decoder) throws {
                let container = try decoder.singleValueContainer()
                if let number = try? container.decode(Int.self) {
                    self.value = number
                } else if let text = try? container.decode(String.self), let number = Int(text) {
                    self.value = number
                } else {
                    throw DecodingError.dataCorruptedError(in: container, debugDescription: "port is not a number")
                }
            }
        }

        var success: Bool
        var errMsg: String?
        var data: Payload?
    }

    /// Parses a Manager reply; throws for a failure, malformed JSON, or an empty node list. For `HTTP` nodes, a
    /// node the Manager says is of another protocol is skipped (a Manager that ignores the filter would hand out
    /// TCP ports); a node with no type is taken, as for TCP.
    static func parse(_ body: String, group: String, protocolType: String = "TCP") throws -> ProxyList {
        let reply: Reply
        do {
            reply = try JSONDecoder().decode(Reply.self, from: Data(body.utf8))
        } catch {
            throw DataProxyError(.discoveryFailed, "the Manager's reply for \(group) is not valid: \(error)", isRetriable: true, group: group)
        }
        guard reply.success else {
            throw DataProxyError(.discoveryFailed, "the Manager refused \(group): \(reply.errMsg ?? "no message")", isRetriable: true, group: group)
        }
        // Like the C++ and Java SDKs, skip nodes without an id.
        let listed = (reply.data?.nodeList ?? []).filter { node in
            node.id != nil && (1...65535).contains(node.port.value)
                && (protocolType == "TCP" || node.protocolType.map { $0.uppercased() == protocolType } ?? true)
        }
        guard !listed.isEmpty else {
            let nodes = protocolType == "TCP" ? "proxy" : "\(protocolType) proxy"
            throw DataProxyError(.discoveryFailed, "the Manager lists no \(nodes) for \(group)", isRetriable: true, group: group)
        }
        let maxPacketLength = reply.data?.maxPacketLength.flatMap { $0 > 0 ? $0 : nil }
        return ProxyList(
            endpoints: listed.map { Endpoint(host: $0.ip, port: $0.port.value) },
            clusterID: reply.data?.clusterId,
            maxPacketLength: maxPacketLength,
            load: reply.data?.load,
            nodes: listed.map { .init(id: $0.id!, host: $0.ip, port: $0.port.value, protocolType: $0.protocolType, load: $0.nodeLoad) }
        )
    }

    /// Asks the Manager for `group`, with the configured attempts (for a one-time look such as `inlong discover`;
    /// the client's discovery runs the attempts on its ``DiscoverySchedule``); the raw reply is returned for
    /// caching.
    func fetch(group: String) async throws -> (ProxyList, String) {
        var lastError: any Error = DataProxyError(.discoveryFailed, "no attempt made", group: group)
        for attempt in 0..<max(self.configuration.attempts, 1) {
            if attempt > 0 { try await Task.sleep(for: DiscoverySchedule.attemptDelay(after: attempt)) }
            switch await self.ask(group: group) {
            case .success(let answer): return answer
            case .failure(let error as CancellationError): throw error
            case .failure(let error): lastError = error
            }
        }
        throw lastError
    }

    /// One request to the Manager for `group`: its proxy list and the raw reply (for the cache), or why not.
    func ask(group: String) async -> Result<(ProxyList, String), any Error> {
        do {
            let body = try await self.request(group: group)
            return .success((try Self.parse(body, group: group, protocolType: self.protocolType), body))
        } catch {
            if !(error is CancellationError) {
                self.logger.debug("Manager request failed", metadata: ["inlong.group": "\(group)", "inlong.error": "\(error)"])
            }
            return .failure(error)
        }
    }

    private func request(group: String) async throws -> String {
        var request = HTTPClientRequest(url: "\(self.configuration.url)/\(group)")
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/x-www-form-urlencoded")
        if let credentials = self.configuration.credentials {
            request.headers.add(name: "Authorization", value: ManagerAuthorization.basic(secretID: credentials.secretID, secretKey: credentials.secretKey))
        }
        if let tenant = self.configuration.tenant { request.headers.add(name: "tenant", value: tenant) }
        request.body = .bytes(ByteBuffer(string: "protocolType=\(self.protocolType)"))
        let response = try await self.httpClient.execute(request, timeout: .init(self.configuration.requestTimeout))
        let body = try await response.body.collect(upTo: 4 << 20)
        guard response.status == .ok else {
            throw DataProxyError(
                .discoveryFailed,
                "the Manager answered HTTP \(response.status.code) for \(group)",
                isRetriable: true,
                group: group
            )
        }
        return String(buffer: body)
    }

    // MARK: Cache

    /// The cached replies by group.
    func readCache() -> [String: String] {
        guard let path = self.configuration.cacheFile,
            let data = FileManager.default.contents(atPath: path),
            let cache = try? JSONDecoder().decode([String: String].self, from: data)
        else { return [:] }
        return cache
    }

    /// Writers of cache files in this process, one at a time: clients of several groups (the agent's) share one
    /// file, and each rewrites it whole.
    private static let cacheWriters = Mutex(())

    /// Stores a group's reply, atomically and durably (``AtomicFile``): a crash never leaves half a file, and
    /// writers never take each other's temporary file.
    /// The key of `group`'s reply in the cache: the group for TCP nodes (as before HTTP), `HTTP:group` for HTTP
    /// nodes, so that clients of both transports can share one file.
    private func cacheKey(_ group: String) -> String {
        self.protocolType == "TCP" ? group : "\(self.protocolType):\(group)"
    }

    func writeCache(group: String, reply: String) {
        guard let path = self.configuration.cacheFile else { return }
        Self.cacheWriters.withLock { _ in
            var cache = self.readCache()
            cache[self.cacheKey(group)] = reply
            do {
                try FileManager.default.createDirectory(atPath: AtomicFile.directory(of: path), withIntermediateDirectories: true)
                AtomicFile.removeLeftovers(of: path)
                try AtomicFile.write(try JSONEncoder().encode(cache), to: path)
            } catch {
                self.logger.warning("cannot write the proxy cache", metadata: ["inlong.path": "\(path)", "inlong.error": "\(error)"])
            }
        }
    }

    /// `group`'s cached proxy list, if the cache has a valid one.
    func cachedList(group: String) -> ProxyList? {
        self.readCache()[self.cacheKey(group)].flatMap { try? Self.parse($0, group: group, protocolType: self.protocolType) }
    }
}

extension DataProxyClient {
    /// Asks the Manager once for the proxies of `group` (for tools such as `inlong discover`).
    public static func discoverProxies(
        manager: Configuration.Manager,
        group: String,
        httpClient: HTTPClient = .shared,
        logger: Logger = Logger.disabled
    ) async throws -> [Endpoint] {
        try await Self.discoverProxyDirectory(manager: manager, group: group, httpClient: httpClient, logger: logger).nodes
            .map { Endpoint(host: $0.host, port: $0.port) }
    }

    /// Asks the Manager once for everything it says about `group`'s proxies (for `inlong discover --json`).
    public static func discoverProxyDirectory(
        manager: Configuration.Manager,
        group: String,
        httpClient: HTTPClient = .shared,
        logger: Logger = Logger.disabled
    ) async throws -> ProxyDirectory {
        let discovery = ProxyDiscovery(configuration: manager, httpClient: httpClient, logger: logger)
        let list = try await discovery.fetch(group: group).0
        return ProxyDirectory(group: group, clusterID: list.clusterID, load: list.load, maxPacketLength: list.maxPacketLength, nodes: list.nodes)
    }
}
#endif
