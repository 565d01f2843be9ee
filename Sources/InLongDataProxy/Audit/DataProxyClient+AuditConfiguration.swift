public import InLongTransport

extension DataProxyClient.Configuration {
    /// Per-minute counts to InLong Audit (``DataProxyClient/Configuration/audit``): the records each minute of
    /// data time handed to the client ("sent", counted as batches are sealed) and acked, per group and stream,
    /// sent to audit proxies as InLong's audit SDK sends them. A batch's records are counted in the minute of the
    /// batch's data time, the `dt` the DataProxy sees, so that its counts and the client's fall in the same
    /// minute. Needs the package trait `Audit` (on by default); without it, `run()` refuses an audit
    /// configuration with `invalidConfiguration`.
    public struct Audit: Sendable {
        /// Audit proxies, `host:port` (InLong's audit proxy listens on 10081). Defaults to none.
        public var proxies: [Endpoint] = []
        /// The Manager to ask for audit proxies (`http://manager:8083`; the audit SDK's
        /// `/inlong/manager/openapi/audit/getAuditProxy` is appended), or `nil`. Defaults to `nil`.
        public var managerURL: String?
        /// The component whose proxies the Manager is asked for. Defaults to `Agent`.
        public var managerComponent = "Agent"
        /// Basic-auth `secretId`/`secretKey` for the Manager, or `nil`. Defaults to `nil`.
        public var managerCredentials: (secretID: String, secretKey: String)?
        /// How often counts are sent. Defaults to 60 seconds.
        public var flushInterval: Duration = .seconds(60)
        /// Audit requests kept while proxies do not answer; beyond it the oldest is dropped. Defaults to 1000.
        public var maxPendingRequests = 1000
        /// The audit id of records handed to the client. Defaults to 1 (InLong's `SDK_INPUT`); the agent uses 4.
        public var sentAuditID = 1
        /// The audit id of records acked. Defaults to 2 (InLong's `SDK_OUTPUT`).
        public var ackedAuditID = 2
        /// The audit id of records that failed for good, or `nil` to not count them. Defaults to 524290
        /// (`SDK_OUTPUT` with InLong's failure bit).
        public var failedAuditID: Int? = 2 | (1 << 19)
        /// The address the audit header names for this host. Defaults to `127.0.0.1`.
        public var localIP = "127.0.0.1"
        /// How long the client's close waits for the last counts to reach a proxy. Defaults to 5 seconds.
        public var closeDeadline: Duration = .seconds(5)

        public init(proxies: [Endpoint]) {
            self.proxies = proxies
        }

        public init(managerURL: String) {
            self.managerURL = managerURL
        }
    }
}
