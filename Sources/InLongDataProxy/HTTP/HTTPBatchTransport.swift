#if ManagerDiscovery
import AsyncHTTPClient
import NIOHTTP1
#endif
import InLongTransport
import InLongWire
import NIOCore
import NIOPosix
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

#if ManagerDiscovery
/// The HTTP transport's I/O: posts a batch's form to the proxy the ``HTTPProxyPicker`` chose, over
/// AsyncHTTPClient's keep-alive connections, and says how it ended. The picker's lock is held for a pick or an
/// end only.
final class HTTPBatchTransport: Sendable {
    let proxies: [Endpoint]
    private let picker: Mutex<HTTPProxyPicker>
    private let client: Mutex<HTTPClient?> = Mutex(nil)
    /// Per proxy, why its last request did not get DataProxy's answer (`nil`: it did, or none was sent yet).
    private let failures: Mutex<[Endpoint: String]> = Mutex([:])
    private let answered = Atomic<Int>(0)
    private let settings: DataProxyClient.Configuration.HTTP
    private let connection: DataProxyClient.Configuration.Connection

    init(configuration: DataProxyClient.Configuration) {
        self.proxies = configuration.proxies
        self.settings = configuration.http
        self.connection = configuration.connection
        self.picker = Mutex(
            HTTPProxyPicker(
                proxies: configuration.proxies,
                maxInFlightPerProxy: configuration.http.maxRequestsPerProxy,
                pauseAfterFailure: configuration.http.pauseAfterFailure
            )
        )
    }

    /// Makes the HTTP client; ``shutdown()`` ends it.
    func start(eventLoopGroup: any EventLoopGroup) {
        var configuration = HTTPClient.Configuration()
        configuration.timeout.connect = TimeAmount(self.connection.connectTimeout)
        configuration.connectionPool.concurrentHTTP1ConnectionsPerHostSoftLimit = self.settings.maxRequestsPerProxy
        configuration.decompression = .disabled
        // A proxy that cannot be reached fails its requests at once: the delivery machine retries them on another
        // proxy with its own backoff, instead of each waiting for the pool's reconnects until the request timeout.
        configuration.connectionPool.retryConnectionEstablishment = false
        let client = HTTPClient(eventLoopGroupProvider: .shared(eventLoopGroup), configuration: configuration)
        self.client.withLock { $0 = client }
    }

    func shutdown() async {
        guard let client = self.client.withLock({ $0 }) else { return }
        try? await client.shutdown()
    }

    /// Takes a request slot on the best proxy with room, or `nil` when every proxy is at its cap.
    func pick(avoiding: Set<Endpoint>) -> Endpoint? {
        self.picker.withLock { $0.pick(avoiding: avoiding, now: .now) }
    }

    /// Frees the slot a request held; a failure pauses the proxy.
    func finished(_ proxy: Endpoint, succeeded: Bool) {
        self.picker.withLock { $0.finished(proxy, succeeded: succeeded, now: .now) }
    }

    /// What the statistics say of the proxies: those whose last request got DataProxy's answer (or that had none
    /// yet) count as ready, the others with why not.
    func count(into statistics: inout DataProxyClientStatistics) {
        let failures = self.failures.withLock { $0 }
        statistics.answeredRequests += self.answered.load(ordering: .relaxed)
        for proxy in self.proxies {
            if let failure = failures[proxy] {
                statistics.proxyErrors[proxy] = failure
            } else {
                statistics.readyProxies += 1
                statistics.reachableProxies.insert(proxy)
            }
        }
    }

    /// Posts `form` to `proxy` and says how it ended.
    func post(_ form: ByteBuffer, to proxy: Endpoint) async -> DeliveryOutcome {
        let outcome = await self.send(form, to: proxy)
        let failure: String?
        switch outcome {
        case .acked, .rejected:
            self.answered.add(1, ordering: .relaxed)
            failure = nil
        case .transportFailed(let error):
            // One plain line naming the address and the cause, as the TCP path says it.
            failure = error.description
        case .unexpectedReply(let reply):
            failure = reply
        }
        self.failures.withLock { $0[proxy] = failure }
        return outcome
    }

    private func send(_ form: ByteBuffer, to proxy: Endpoint) async -> DeliveryOutcome {
        guard let client = self.client.withLock({ $0 }) else {
            return .transportFailed(TransportError(.shutDown, endpoint: proxy))
        }
        let scheme = self.settings.useTLS ? "https" : "http"
        let host = proxy.host.contains(":") ? "[\(proxy.host)]" : proxy.host
        var request = HTTPClientRequest(url: "\(scheme)://\(host):\(proxy.port)\(InLongHTTPForm.messagePath)")
        request.method = .POST
        request.headers.add(name: "Content-Type", value: InLongHTTPForm.contentType)
        request.body = .bytes(form)
        do {
            let response = try await client.execute(request, timeout: TimeAmount(self.connection.requestTimeout))
            // An answer is a few dozen bytes; a larger one is not DataProxy's.
            let body = (try? await response.body.collect(upTo: 64 << 10)) ?? ByteBuffer()
            return HTTPBatchEncoding.outcome(status: Int(response.status.code), body: body, proxy: proxy)
        } catch {
            return .transportFailed(Self.transportError(error, proxy: proxy))
        }
    }

    /// A failure of AsyncHTTPClient as the delivery machine reads transport failures: whether the request may
    /// have reached the proxy decides whether a failure report says "possibly sent".
    static func transportError(_ error: any Error, proxy: Endpoint) -> TransportError {
        if let error = error as? HTTPClientError {
            switch error {
            case .connectTimeout: return TransportError(.connectTimeout, endpoint: proxy, underlying: error)
            case .deadlineExceeded, .readTimeout: return TransportError(.requestTimeout, mayHaveBeenDelivered: true, endpoint: proxy, underlying: error)
            case .getConnectionFromPoolTimeout: return TransportError(.notConnected, endpoint: proxy, underlying: error)
            case .alreadyShutdown: return TransportError(.shutDown, endpoint: proxy, underlying: error)
            default: break
            }
        }
        if Self.isConnectFailure(error) { return TransportError(.connectFailed, endpoint: proxy, underlying: error) }
        if error is CancellationError { return TransportError(.cancelled, mayHaveBeenDelivered: true, endpoint: proxy) }
        return TransportError(.connectionClosed, mayHaveBeenDelivered: true, endpoint: proxy, underlying: SendableDescription(error))
    }

    /// Whether connecting failed, so that nothing was written.
    private static func isConnectFailure(_ error: any Error) -> Bool {
        if error is NIOConnectionError { return true }
        if let error = error as? IOError { return [ECONNREFUSED, EHOSTUNREACH, ENETUNREACH].contains(error.errnoCode) }
        if case ChannelError.connectTimeout? = error as? ChannelError { return true }
        return false
    }
}
#else
/// The HTTP transport needs AsyncHTTPClient, which comes with the trait `ManagerDiscovery`; without it `run()`
/// refuses ``DataProxyClient/Transport/http`` before anything is sent, so none of this is reached.
final class HTTPBatchTransport: Sendable {
    let proxies: [Endpoint]

    init(configuration: DataProxyClient.Configuration) {
        self.proxies = configuration.proxies
    }

    func start(eventLoopGroup: any EventLoopGroup) {}

    func shutdown() async {}

    func pick(avoiding: Set<Endpoint>) -> Endpoint? {
        preconditionFailure("the HTTP transport is refused without the trait ManagerDiscovery")
    }

    func finished(_ proxy: Endpoint, succeeded: Bool) {}

    func count(into statistics: inout DataProxyClientStatistics) {}

    func post(_ form: ByteBuffer, to proxy: Endpoint) async -> DeliveryOutcome {
        preconditionFailure("the HTTP transport is refused without the trait ManagerDiscovery")
    }
}
#endif

/// An error reduced to its description, for errors that are not `Sendable`.
struct SendableDescription: Error, Sendable, CustomStringConvertible {
    let description: String
    init(_ error: any Error) { self.description = "\(error)" }
}
