#if ManagerDiscovery
import AsyncHTTPClient
import InLongTransportTLS
import NIOHTTP1
import NIOSSL
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
    /// Where the next request goes: the picker's slots and pauses, and each group's proxies.
    private struct State {
        var picker: HTTPProxyPicker
        var routes: HTTPRoutes
    }

    private let state: Mutex<State>
    private let client: Mutex<HTTPClient?> = Mutex(nil)
    /// Per proxy, why its last request did not get DataProxy's answer (`nil`: it did, or none was sent yet).
    private let failures: Mutex<[Endpoint: String]> = Mutex([:])
    private let answered = Atomic<Int>(0)
    private let settings: DataProxyClient.Configuration.HTTP
    private let connection: DataProxyClient.Configuration.Connection

    init(configuration: DataProxyClient.Configuration) {
        self.settings = configuration.http
        self.connection = configuration.connection
        self.state = Mutex(
            State(
                picker: HTTPProxyPicker(
                    proxies: configuration.proxies,
                    maxInFlightPerProxy: configuration.http.maxRequestsPerProxy,
                    pauseAfterFailure: configuration.http.pauseAfterFailure
                ),
                routes: HTTPRoutes(configured: configuration.proxies, discovers: configuration.manager != nil)
            )
        )
    }

    /// Every proxy a request may go to now.
    var proxies: [Endpoint] { self.state.withLock { $0.routes.endpoints } }

    /// Makes the HTTP client; ``shutdown()`` ends it.
    func start(eventLoopGroup: any EventLoopGroup) {
        var configuration = HTTPClient.Configuration()
        configuration.timeout.connect = TimeAmount(self.connection.connectTimeout)
        configuration.connectionPool.concurrentHTTP1ConnectionsPerHostSoftLimit = self.settings.maxRequestsPerProxy
        configuration.decompression = .disabled
        // A proxy that cannot be reached fails its requests at once: the delivery machine retries them on another
        // proxy with its own backoff, instead of each waiting for the pool's reconnects until the request timeout.
        configuration.connectionPool.retryConnectionEstablishment = false
        if self.settings.useTLS {
            configuration.tlsConfiguration = self.settings.tlsConfiguration ?? TLSConfiguration.makeClientConfiguration()
        }
        let client = HTTPClient(eventLoopGroupProvider: .shared(eventLoopGroup), configuration: configuration)
        self.client.withLock { $0 = client }
    }

    func shutdown() async {
        guard let client = self.client.withLock({ $0 }) else { return }
        try? await client.shutdown()
    }

    /// Takes a request slot on the best proxy with room among `group`'s.
    func pick(group: String, avoiding: Set<Endpoint>) -> HTTPPick {
        self.state.withLock { state in
            let (route, newlyUnrouted) = state.routes.route(for: group)
            let candidates: Set<Endpoint>?
            switch route {
            case .every: candidates = nil
            case .among(let endpoints): candidates = endpoints
            case .none: return .noRoute(newlyUnrouted: newlyUnrouted)
            }
            guard let proxy = state.picker.pick(among: candidates, avoiding: avoiding, now: .now) else { return .full }
            return .picked(proxy, newlyUnrouted: newlyUnrouted)
        }
    }

    /// The Manager listed `endpoints` for `group`; returns whether its proxies changed.
    func apply(_ endpoints: [Endpoint], for group: String) -> Bool {
        self.state.withLock { state in
            state.picker.add(endpoints)
            return state.routes.apply(endpoints, for: group)
        }
    }

    /// Whether the Manager listed proxies for `group`.
    func isRouted(_ group: String) -> Bool { self.state.withLock { $0.routes.isRouted(group) } }

    /// Groups met with no list of their own yet.
    var unroutedGroups: [String] { self.state.withLock { Array($0.routes.unrouted) } }

    /// Frees the slot a request held; a failure pauses the proxy.
    func finished(_ proxy: Endpoint, succeeded: Bool) {
        self.state.withLock { $0.picker.finished(proxy, succeeded: succeeded, now: .now) }
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

    /// Posts `form` to `proxy` and says how it ended, and whether the request head was written (`onWritten` is
    /// called then, once): until then nothing can have reached the proxy, so a failure before it is not sent. The
    /// request ends at the request timeout, or at `deadline` (its records') if sooner, connecting included.
    func post(
        _ form: ByteBuffer,
        to proxy: Endpoint,
        deadline: ContinuousClock.Instant,
        onWritten: @escaping @Sendable () -> Void
    ) async -> (outcome: DeliveryOutcome, written: Bool) {
        let timeout = min(self.connection.requestTimeout, max(deadline - .now, .zero))
        let (outcome, written) = await self.send(form, to: proxy, timeout: timeout, onWritten: onWritten)
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
        return (outcome, written)
    }

    private func send(_ form: ByteBuffer, to proxy: Endpoint, timeout: Duration, onWritten: @escaping @Sendable () -> Void) async -> (DeliveryOutcome, Bool) {
        guard let client = self.client.withLock({ $0 }) else {
            return (.transportFailed(TransportError(.shutDown, endpoint: proxy)), false)
        }
        let scheme = self.settings.useTLS ? "https" : "http"
        let host = proxy.host.contains(":") ? "[\(proxy.host)]" : proxy.host
        let delegate = FormPostDelegate(onWritten: onWritten)
        do {
            let request = try HTTPClient.Request(
                url: "\(scheme)://\(host):\(proxy.port)\(InLongHTTPForm.messagePath)",
                method: .POST,
                headers: ["Content-Type": InLongHTTPForm.contentType],
                body: .byteBuffer(form)
            )
            let task = client.execute(request: request, delegate: delegate, deadline: .now() + TimeAmount(timeout))
            let response = try await withTaskCancellationHandler {
                try await task.futureResult.get()
            } onCancel: {
                task.cancel()
            }
            return (HTTPBatchEncoding.outcome(status: response.status, body: response.body, proxy: proxy), true)
        } catch {
            var failure = Self.transportError(error, proxy: proxy)
            // Before the head was written nothing reached the proxy, whatever the error says (a deadline passed
            // while connecting, a cancellation).
            if !delegate.written { failure.mayHaveBeenDelivered = false }
            return (.transportFailed(failure), delegate.written)
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
        // A failed handshake: nothing was sent; the cause in plain words ("certificate verify failed").
        if error is NIOSSLError || error is BoringSSLError {
            return TransportError(.connectFailed, endpoint: proxy, underlying: TLSHandshakeError(underlying: error))
        }
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
/// Collects DataProxy's answer to a form, and tells when the request head was written: from then on the proxy may
/// have the records.
private final class FormPostDelegate: HTTPClientResponseDelegate {
    typealias Response = (status: Int, body: ByteBuffer)

    /// An answer is a few dozen bytes; a larger one is not DataProxy's (what is past this is left out).
    private static let maxBody = 64 << 10
    private let state = Mutex<(written: Bool, status: Int, body: ByteBuffer)>((false, 0, ByteBuffer()))
    private let onWritten: @Sendable () -> Void

    init(onWritten: @escaping @Sendable () -> Void) {
        self.onWritten = onWritten
    }

    var written: Bool { self.state.withLock { $0.written } }

    func didSendRequestHead(task: HTTPClient.Task<Response>, _ head: HTTPRequestHead) {
        self.state.withLock { $0.written = true }
        self.onWritten()
    }

    func didReceiveHead(task: HTTPClient.Task<Response>, _ head: HTTPResponseHead) -> EventLoopFuture<Void> {
        self.state.withLock { $0.status = Int(head.status.code) }
        return task.eventLoop.makeSucceededVoidFuture()
    }

    func didReceiveBodyPart(task: HTTPClient.Task<Response>, _ buffer: ByteBuffer) -> EventLoopFuture<Void> {
        self.state.withLock { state in
            let room = Self.maxBody - state.body.readableBytes
            if room > 0 { state.body.writeImmutableBuffer(buffer.getSlice(at: buffer.readerIndex, length: min(room, buffer.readableBytes))!) }
        }
        return task.eventLoop.makeSucceededVoidFuture()
    }

    func didFinishRequest(task: HTTPClient.Task<Response>) throws -> Response {
        self.state.withLock { ($0.status, $0.body) }
    }
}
#else
/// The HTTP transport needs AsyncHTTPClient, which comes with the trait `ManagerDiscovery`; without it `run()`
/// refuses ``DataProxyClient/Transport/http`` before anything is sent, so none of this is reached.
final class HTTPBatchTransport: Sendable {
    init(configuration: DataProxyClient.Configuration) {}

    var proxies: [Endpoint] { [] }

    func start(eventLoopGroup: any EventLoopGroup) {}

    func shutdown() async {}

    func pick(group: String, avoiding: Set<Endpoint>) -> HTTPPick {
        preconditionFailure("the HTTP transport is refused without the trait ManagerDiscovery")
    }

    func apply(_ endpoints: [Endpoint], for group: String) -> Bool { false }

    func isRouted(_ group: String) -> Bool { false }

    var unroutedGroups: [String] { [] }

    func finished(_ proxy: Endpoint, succeeded: Bool) {}

    func count(into statistics: inout DataProxyClientStatistics) {}

    func post(
        _ form: ByteBuffer,
        to proxy: Endpoint,
        deadline: ContinuousClock.Instant,
        onWritten: @escaping @Sendable () -> Void
    ) async -> (outcome: DeliveryOutcome, written: Bool) {
        preconditionFailure("the HTTP transport is refused without the trait ManagerDiscovery")
    }
}
#endif

/// Where the HTTP transport's next request goes.
enum HTTPPick: Sendable {
    /// A slot on this proxy is taken; `newlyUnrouted`: its group was met for the first time without proxies of its
    /// own (it went to a configured one), so discovery looks for it.
    case picked(Endpoint, newlyUnrouted: Bool)
    /// Every proxy of the group has its cap of requests in flight.
    case full
    /// The group has no proxy yet: its batches wait for the Manager.
    case noRoute(newlyUnrouted: Bool)
}

/// An error reduced to its description, for errors that are not `Sendable`.
struct SendableDescription: Error, Sendable, CustomStringConvertible {
    let description: String
    init(_ error: any Error) { self.description = "\(error)" }
}
