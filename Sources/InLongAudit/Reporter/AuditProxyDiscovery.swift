import Foundation
import InLongWire
import InLongTransport
import Logging

/// The Manager's answer for audit proxies (`Response<List<AuditProxy>>`).
enum AuditProxyList {
    private struct Reply: Decodable {
        struct Proxy: Decodable {
            var host: String
            var port: Int
        }

        var success: Bool
        var errMsg: String?
        var data: [Proxy]?
    }

    /// The proxies a Manager reply lists; throws for a failure, malformed JSON, or an empty list.
    static func parse(_ body: String) throws -> [Endpoint] {
        let reply: Reply
        do {
            reply = try JSONDecoder().decode(Reply.self, from: Data(body.utf8))
        } catch {
            throw AuditError("the Manager's audit proxy list is not valid: \(error)")
        }
        guard reply.success else { throw AuditError("the Manager refused the audit proxy list: \(reply.errMsg ?? "no message")") }
        let proxies = (reply.data ?? []).filter { !$0.host.isEmpty && (1...65535).contains($0.port) }
        guard !proxies.isEmpty else { throw AuditError("the Manager lists no audit proxy") }
        return proxies.map { Endpoint(host: $0.host, port: $0.port) }
    }
}

#if ManagerDiscovery
import AsyncHTTPClient
import NIOCore
import NIOHTTP1

extension AuditReporter {
    /// Asks the Manager for audit proxies until it answers, then every refresh interval (the audit SDK retries
    /// from 10 s doubling; here the reporter's retry backoff).
    func discover(from manager: Manager) async {
        var backoff = self.configuration.retryBackoff.makeIterator()
        var said = false
        while !Task.isCancelled {
            do {
                let proxies = try await Self.fetchProxies(manager)
                self.proxiesDiscovered(proxies)
                said = false
                backoff = self.configuration.retryBackoff.makeIterator()
                try? await Task.sleep(for: manager.refreshInterval)
            } catch {
                if !said {
                    self.logger.warning("cannot get audit proxies from the Manager", metadata: ["inlong.error": "\(error)"])
                    said = true
                }
                try? await Task.sleep(for: min(backoff.next(), manager.refreshInterval))
            }
        }
    }

    /// One Manager request.
    static func fetchProxies(_ manager: Manager, httpClient: HTTPClient = .shared) async throws -> [Endpoint] {
        var request = HTTPClientRequest(url: manager.requestURL)
        if let credentials = manager.credentials {
            request.headers.add(name: "Authorization", value: ManagerAuthorization.basic(secretID: credentials.secretID, secretKey: credentials.secretKey))
        }
        let response = try await httpClient.execute(request, timeout: .init(manager.requestTimeout))
        let body = try await response.body.collect(upTo: 1 << 20)
        guard response.status == .ok else { throw AuditError("the Manager answered HTTP \(response.status.code) for audit proxies") }
        return try AuditProxyList.parse(String(buffer: body))
    }
}
#else
extension AuditReporter {
    /// Without the `ManagerDiscovery` trait there is no HTTP client: says so once and waits.
    func discover(from manager: Manager) async {
        self.logger.error("audit proxies from a Manager need the package trait 'ManagerDiscovery'")
    }
}
#endif
