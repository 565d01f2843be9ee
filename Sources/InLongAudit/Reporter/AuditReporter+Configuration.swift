public import InLongTransport

extension AuditReporter {
    /// Where audit counts go and how they are sent. Either `proxies` or `manager` must be set.
    public struct Configuration: Sendable {
        /// Audit proxies (InLong's `audit-proxy`, TCP port 10081 by default). Defaults to none.
        public var proxies: [Endpoint] = []
        /// Audit proxies from the InLong Manager, as the audit SDK finds them, or `nil`. Defaults to `nil`.
        public var manager: Manager?
        /// Counts are summed and sent once per interval (the audit SDK's 60 s period). Defaults to 60 seconds.
        public var flushInterval: Duration = .seconds(60)
        /// Audit requests kept while proxies do not answer (retries included); beyond it the oldest is dropped
        /// and counted in ``AuditReporterStatistics/droppedRequests``. Defaults to 1000 (100,000 counted keys).
        public var maxPendingRequests = 1000
        /// Counted keys per request (the audit SDK's batch of 100). Defaults to 100.
        public var maxEntriesPerRequest = 100
        /// A request not answered within this is tried again. Defaults to 30 seconds (the audit SDK's socket
        /// timeout).
        public var requestTimeout: Duration = .seconds(30)
        /// Delay before a failed request is sent again. Defaults to 1 s doubling to 60 s, ±20 % jitter.
        public var retryBackoff = ExponentialBackoff(initial: .seconds(1), maximum: .seconds(60))
        /// The header's `ip`: this host's address as InLong should show it. Defaults to `127.0.0.1`.
        public var localIP = "127.0.0.1"
        /// The header's `docker_id`. Defaults to empty.
        public var dockerID = ""

        public init(proxies: [Endpoint]) {
            self.proxies = proxies
        }

        public init(manager: Manager) {
            self.manager = manager
        }
    }

    /// Where the Manager is asked for audit proxies: `GET <url>/inlong/manager/openapi/audit/getAuditProxy?component=…`,
    /// answered `{"success": true, "data": [{"host": "…", "port": 10081}]}` (the audit SDK's `ProxyManager`).
    public struct Manager: Sendable {
        /// The Manager's address, e.g. `http://manager:8083` (a full `…/getAuditProxy` URL is taken as is).
        public var url: String
        /// The component whose proxies are asked for: `Agent`, `DataProxy` or `Sort`. Defaults to `Agent`.
        public var component = "Agent"
        /// Basic-auth `secretId`/`secretKey`, or `nil`. Defaults to `nil`.
        public var credentials: (secretID: String, secretKey: String)?
        /// How often the list is asked again. Defaults to 60 seconds (the audit SDK's update interval).
        public var refreshInterval: Duration = .seconds(60)
        /// Timeout of one Manager request. Defaults to 10 seconds.
        public var requestTimeout: Duration = .seconds(10)

        public init(url: String) {
            self.url = url
        }

        /// The URL asked.
        public var requestURL: String {
            let base = self.url.hasPrefix("http://") || self.url.hasPrefix("https://") ? self.url : "http://" + self.url
            let path = base.hasSuffix("/getAuditProxy") ? base : (base.hasSuffix("/") ? String(base.dropLast()) : base) + AuditReporter.managerPath
            return path + "?component=" + (self.component.addingPercentEncodingForQuery)
        }
    }

    /// The audit SDK's Manager path for audit proxies.
    public static let managerPath = "/inlong/manager/openapi/audit/getAuditProxy"
}

/// What an ``AuditReporter`` did.
public struct AuditReporterStatistics: Sendable, Hashable {
    /// Requests a proxy answered with success, and the records they counted.
    public var acknowledgedRequests = 0
    public var acknowledgedRecords: UInt64 = 0
    /// Attempts that failed (no proxy, no answer, an error, a reply that is not success); each is retried.
    public var failedAttempts = 0
    /// Requests dropped from a full backlog (or unsent at close), and the records they counted.
    public var droppedRequests = 0
    public var droppedRecords: UInt64 = 0
    /// Requests waiting or in flight.
    public var pendingRequests = 0
    /// The proxies in use.
    public var proxies: [Endpoint] = []

    public init() {}
}

extension String {
    var addingPercentEncodingForQuery: String {
        var out = ""
        for byte in self.utf8 {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: "~"):
                out.unicodeScalars.append(Unicode.Scalar(byte))
            default:
                out += "%" + String(byte, radix: 16, uppercase: true).leftPadded(to: 2)
            }
        }
        return out
    }

    private func leftPadded(to width: Int) -> String {
        String(repeating: "0", count: max(0, width - self.count)) + self
    }
}
