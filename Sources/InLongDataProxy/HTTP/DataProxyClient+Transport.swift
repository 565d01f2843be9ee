#if ManagerDiscovery
public import NIOSSL
#endif

extension DataProxyClient {
    /// How batches travel to the proxies: DataProxy's TCP protocol (type-7 messages over persistent connections),
    /// or its HTTP API (form posts to `/dataproxy/message`, as InLong's Java SDK sends), for networks where only
    /// HTTP passes. Batching, delivery reports, retries on another proxy and delivery deadlines are the same; only
    /// the wire differs.
    public struct Transport: Sendable, Hashable, CustomStringConvertible {
        private enum Base: Hashable, Sendable { case tcp, http }
        private let base: Base

        /// DataProxy's TCP protocol.
        public static let tcp = Transport(base: .tcp)
        /// DataProxy's HTTP API: ``Configuration/proxies`` name the proxies' HTTP ports; with a
        /// ``Configuration/manager``, the client asks it for the group's HTTP nodes (`protocolType=HTTP`), and
        /// takes only nodes it lists as HTTP (or with no type). Needs the package trait
        /// `ManagerDiscovery` (which brings the HTTP client); without it, `run()` refuses it with
        /// `invalidConfiguration`. Records must not hold `\n` (the API's record separator) nor attributes of
        /// their own; such a batch fails with `invalidArgument`. Message attributes given to `send` are not sent,
        /// and there is no compression: the API has neither. The real DataProxy reads the body as UTF-8 text. A
        /// request counts as sent once its head is written: records whose request was still connecting when it
        /// failed or their deadline passed end as ``DataProxyError/Persistence/notSent``.
        public static let http = Transport(base: .http)

        /// `tcp` or `http`, as the `proxy.protocol` setting spells it.
        public var description: String {
            switch self.base {
            case .tcp: "tcp"
            case .http: "http"
            }
        }

        /// The transport a setting names (`tcp` or `http`, any case), or `nil`.
        public init?(_ name: String) {
            switch name.lowercased() {
            case "tcp": self = .tcp
            case "http": self = .http
            default: return nil
            }
        }

        private init(base: Base) { self.base = base }
    }
}

extension DataProxyClient.Configuration {
    /// Settings of the HTTP transport (``DataProxyClient/Transport/http``); the request and connect
    /// timeouts are ``Connection``'s.
    public struct HTTP: Sendable {
        /// Requests in flight to one proxy at once; beyond this, batches wait for an answer. Defaults to 8.
        public var maxRequestsPerProxy = 8
        /// How long a proxy that failed (not reachable, not DataProxy's answer, a retriable code) is passed over
        /// while another has room. Defaults to 1 second.
        public var pauseAfterFailure: Duration = .seconds(1)
        /// Whether requests go over `https://`. Defaults to `false`.
        public var useTLS = false
        #if ManagerDiscovery
        /// TLS of `https://` requests (``useTLS``): the roots to trust, a client certificate and key, how the
        /// proxy's certificate is checked. `nil` (the default) trusts the system's roots and checks the chain and
        /// the host name. The `proxy.tls.*` settings fill it.
        public var tlsConfiguration: TLSConfiguration?
        #endif

        public init() {}
    }
}

extension DataProxyClient {
    /// Why the configured transport cannot run, or `nil`: the HTTP transport needs AsyncHTTPClient (the trait
    /// `ManagerDiscovery`) and proxies, configured or from a Manager.
    func transportConfigurationError() -> DataProxyError? {
        guard self.configuration.transport == .http else { return nil }
        #if !ManagerDiscovery
        return DataProxyError(
            .invalidConfiguration,
            "the HTTP transport needs AsyncHTTPClient: enable swift-inlong's package trait 'ManagerDiscovery'"
        )
        #else
        if self.configuration.manager == nil, self.configuration.proxies.isEmpty {
            return DataProxyError(.invalidConfiguration, "the HTTP transport needs at least one proxy, or a Manager")
        }
        return nil
        #endif
    }
}
