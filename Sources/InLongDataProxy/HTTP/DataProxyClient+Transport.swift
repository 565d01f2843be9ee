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
        /// DataProxy's HTTP API: ``Configuration/proxies`` name the proxies' HTTP ports. Needs the package trait
        /// `ManagerDiscovery` (which brings the HTTP client); without it, `run()` refuses it with
        /// `invalidConfiguration`. Records must not hold `\n` (the API's record separator) nor attributes of
        /// their own; such a batch fails with `invalidArgument`. Message attributes given to `send` are not sent,
        /// and there is no compression: the API has neither. The real DataProxy reads the body as UTF-8 text.
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

        public init() {}
    }
}

extension DataProxyClient {
    /// Why the configured transport cannot run, or `nil`: the HTTP transport needs AsyncHTTPClient (the trait
    /// `ManagerDiscovery`) and static proxies (the Manager lists TCP ports).
    func transportConfigurationError() -> DataProxyError? {
        guard self.configuration.transport == .http else { return nil }
        #if !ManagerDiscovery
        return DataProxyError(
            .invalidConfiguration,
            "the HTTP transport needs AsyncHTTPClient: enable swift-inlong's package trait 'ManagerDiscovery'"
        )
        #else
        if self.configuration.manager != nil {
            return DataProxyError(.invalidConfiguration, "the HTTP transport sends to configured proxies only, not to those a Manager lists")
        }
        if self.configuration.proxies.isEmpty {
            return DataProxyError(.invalidConfiguration, "the HTTP transport needs at least one proxy")
        }
        return nil
        #endif
    }
}
