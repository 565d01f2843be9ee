#if ManagerDiscovery
public import AsyncHTTPClient
#endif
public import CoreMetrics
public import InLongTransport
public import InLongWire

extension DataProxyClient {
    /// Everything a ``DataProxyClient`` needs. Either `proxies` or `manager` must be set.
    public struct Configuration: Sendable {
        /// Static proxy endpoints, used when no Manager is configured (and as the fallback before discovery).
        /// Defaults to none.
        public var proxies: [Endpoint] = []
        /// Proxy discovery through the InLong Manager, or `nil` for the static list. Defaults to `nil`. Needs the
        /// package trait `ManagerDiscovery` (on by default); without it, `run()` refuses a Manager with
        /// `invalidConfiguration`.
        public var manager: Manager?
        /// Record batching. See ``Batching``.
        public var batching = Batching()
        /// Memory bounds. See ``Buffer``.
        public var buffer = Buffer()
        /// Retries. See ``Retry``.
        public var retry = Retry()
        /// Connections. See ``Connection``.
        public var connection = Connection()
        /// How batches travel: DataProxy's TCP protocol or its HTTP API. Defaults to ``Transport/tcp``.
        public var transport = Transport.tcp
        /// Settings of the HTTP transport. See ``HTTP``.
        public var http = HTTP()
        /// A crash-safe spool on disk, or `nil` (the default) to hold accepted records in memory only. See
        /// ``Spool``.
        public var spool: Spool?
        /// Per-minute counts to InLong Audit, or `nil` (the default) to count nothing. See ``Audit``.
        public var audit: Audit?
        /// Where metrics go: the default observability delegate, ``DataProxyClientMetrics``, creates its
        /// instruments here. Defaults to `nil`: the bootstrapped `MetricsSystem.factory` (nothing, when none is
        /// bootstrapped). The connections' transport metrics use it too.
        public var metricsFactory: (any MetricsFactory)?
        /// Hears of every event the client counts (records accepted, sent, acked, failed; batches retried; buffer
        /// full; held bytes). Defaults to `nil`: ``DataProxyClientMetrics`` over ``metricsFactory``.
        public var observabilityDelegate: (any DataProxyClientObservabilityDelegate)?
        /// Keys of a C++ SDK configuration that were read but are not supported; filled by
        /// ``init(cppSDKConfiguration:)``.
        public internal(set) var unsupportedKeys: [String] = []

        public init(proxies: [Endpoint]) {
            self.proxies = proxies
        }

        public init(manager: Manager) {
            self.manager = manager
        }
    }

    /// How records are packed into type-7 messages.
    public struct Batching: Sendable {
        /// A batch is sent once it is this old. Defaults to 10 ms.
        public var linger: Duration = .milliseconds(10)
        /// Records per batch. Defaults to 5000.
        public var maxRecords = 5000
        /// Record-block bytes per batch (before compression), capped so that the frame fits ``maxFrameSize``.
        /// Defaults to 60 KiB.
        public var maxBytes = 60 << 10
        /// The largest frame sent, length prefix included; the Manager's `maxPacketLength` lowers it.
        /// Defaults to 65,536, the DataProxy's code default.
        public var maxFrameSize = InLongWireConstants.defaultMaxFrameSize
        /// Blocks longer than this are snappy-compressed; `nil` never compresses. Defaults to 512, as the C++ SDK.
        public var compressionThreshold: Int? = 512
        /// Extended-field bits added to every message (bit 1: trace). Defaults to none.
        public var extendedField: InLongExtendedField = []
        public init() {}
    }

    /// What happens when the client holds too much.
    public struct Buffer: Sendable {
        public enum WhenFull: Sendable, Hashable {
            /// `send` suspends until acks free space.
            case wait
            /// `send` throws ``DataProxyError/Code/bufferFull``. A call of many records holds the room for them
            /// while it writes them (without the client's lock): a `send` that finds room held only by such calls
            /// waits for them to end (microseconds), rather than fail.
            case fail
        }

        /// Bytes of records held (batching, queued and in flight). Defaults to 64 MiB.
        public var maxBytes = 64 << 20
        /// Records held. Defaults to 1,000,000.
        public var maxRecords = 1_000_000
        /// Defaults to ``WhenFull/wait``.
        public var whenFull = WhenFull.wait
        public init() {}
    }

    /// How failed batches are retried.
    public struct Retry: Sendable {
        /// Attempts per batch, the first included, when capped. Defaults to `nil`: a batch is retried with
        /// backoff until its delivery deadline. Requests refused before anything was written are not attempts.
        public var maxAttempts: Int?
        /// Delay before a retry. Defaults to 100 ms doubling to 5 s, ±20 % jitter.
        public var backoff = ExponentialBackoff(initial: .milliseconds(100), maximum: .seconds(5), multiplier: 2, jitter: 0.2)
        /// A record not acked this long after `send` fails with ``DataProxyError/Code/deliveryTimeout``.
        /// Defaults to 2 minutes.
        public var deliveryTimeout: Duration = .seconds(120)
        public init() {}
    }

}

extension DataProxyClient.Configuration {
    /// How proxies are connected.
    public struct Connection: Sendable {
        /// Proxies of one cluster this client connects to: a random subset of the Manager's list, kept while its
        /// members stay listed. Defaults to 8 (C++ `max_proxy_num`).
        public var maxProxies = 8
        /// The seed of this client's choice of proxies, to reproduce it; `nil` (the default) picks one at random,
        /// so that clients spread over a cluster.
        public var subsetSeed: UInt64?
        /// A batch not acked within this is retried. Defaults to 10 seconds (the Java SDK's request timeout).
        public var requestTimeout: Duration = .seconds(10)
        /// Connect timeout. Defaults to 5 seconds.
        public var connectTimeout: Duration = .seconds(5)
        /// Type-8 heartbeat after this long without a write; well under the server's 180 s read-idle limit.
        /// Defaults to 30 seconds.
        public var heartbeatInterval: Duration = .seconds(30)
        /// Batches in flight per connection. Defaults to 1024.
        public var maxInFlight = 1024
        /// Reopen connections after this age, for load balancers. Defaults to `nil` (never).
        public var maxConnectionAge: Duration?
        /// Reopen a connection that carried no records for this long (heartbeats aside), as the C++ SDK's
        /// `tcp_idle_time`: a long-idle connection may have been dropped silently by a middlebox. Defaults to
        /// 10 minutes; `nil` keeps idle connections.
        public var maxIdleTime: Duration? = .seconds(600)
        /// Weigh proxies by the load they report in type-8 heartbeat replies, on top of the batches in flight
        /// (C++ `enable_balance`). Proxies that report none (the stock server) are weighed by batches in flight
        /// only. Defaults to `true`.
        public var balanceByReportedLoad = true
        /// A proxy is avoided after this many consecutive failed batches (transport failures or retriable
        /// errors) and tried again after ``avoidPause``, which doubles (up to 30 times) while it keeps failing.
        /// The last usable proxy is never avoided. Defaults to 3.
        public var ejectAfterFailures = 3
        /// How long a failing proxy is first avoided. Defaults to 1 second.
        public var avoidPause: Duration = .seconds(1)
        /// Reconnect backoff. Defaults to 100 ms doubling to 10 s.
        public var backoff = ExponentialBackoff()
        public init() {}
    }

    /// Where and how the Manager is asked for proxies (wire-protocol.md §8).
    public struct Manager: Sendable {
        /// The proxy-list URL without the group id, e.g.
        /// `http://manager:8083/inlong/manager/openapi/dataproxy/getIpList`.
        public var url: String
        /// Groups whose proxies are used; the first is asked first. Required.
        public var groups: [String]
        /// Basic-auth `secretId`/`secretKey`, or `nil`. Defaults to `nil`.
        public var credentials: (secretID: String, secretKey: String)?
        /// The `tenant` header, required by the Manager's OpenAPI filter; `nil` sends none. Defaults to `nil`.
        public var tenant: String?
        /// How often the list is refreshed. Defaults to 2 minutes (C++ `manager_update_interval`).
        public var refreshInterval: Duration = .seconds(120)
        /// Timeout of one Manager request. Defaults to 5 seconds.
        public var requestTimeout: Duration = .seconds(5)
        /// Attempts per refresh. Defaults to 3.
        public var attempts = 3
        #if ManagerDiscovery
        /// The application's own `HTTPClient` for the Manager, or `nil` (the default) for one the client makes
        /// from ``httpClientConfiguration``.
        public var httpClient: HTTPClient?
        /// Settings of the `HTTPClient` the client makes: TLS for an `https://` Manager with a private CA
        /// (`tlsConfiguration`), proxies, timeouts. Defaults to AsyncHTTPClient's defaults.
        public var httpClientConfiguration = HTTPClient.Configuration()
        #endif
        /// A file that keeps the last good answer for a start while the Manager is down, or `nil`.
        /// Defaults to `nil`: nothing is written unless asked (the agent keeps one in its state directory).
        public var cacheFile: String?

        public init(url: String, groups: [String]) {
            self.url = url
            self.groups = groups
        }

        /// Credentials written `secretId:secretKey` (the key may contain `:`), or `nil` when there is no `:`.
        public static func credentials(parsing text: String) -> (secretID: String, secretKey: String)? {
            let parts = text.split(separator: ":", maxSplits: 1)
            guard parts.count == 2 else { return nil }
            return (String(parts[0]), String(parts[1]))
        }
    }
}
