import Configuration
import InLongTransport
import InLongWire

extension DataProxyClient.Configuration {
    /// The audit keys ``init(config:groups:)`` reads:
    ///
    /// | Key | Environment | Meaning |
    /// |---|---|---|
    /// | `audit.proxies` | `INLONG_AUDIT_PROXIES` | audit proxies, `host:port` (comma-separated in the environment) |
    /// | `audit.manager` | `INLONG_AUDIT_MANAGER` | the Manager to ask for audit proxies, `http://host:port` |
    /// | `audit.managerComponent` | `INLONG_AUDIT_MANAGER_COMPONENT` | the component asked for (`Agent`) |
    /// | `audit.flushInterval` | `INLONG_AUDIT_FLUSH_INTERVAL` | seconds between reports (60) |
    /// | `audit.maxPendingRequests` | `INLONG_AUDIT_MAX_PENDING_REQUESTS` | requests kept while proxies are away (1000) |
    /// | `audit.localIP` | `INLONG_AUDIT_LOCAL_IP` | the address the audit header names |
    ///
    /// Audit is on when `audit.proxies` or `audit.manager` is given.
    static let auditSettingKeys = SettingKeys([
        "audit.proxies", "audit.manager", "audit.managerComponent", "audit.flushInterval", "audit.maxPendingRequests",
        "audit.localIP",
    ])

    mutating func readAudit(_ config: ConfigReader, _ invalid: (String) -> DataProxyError) throws(DataProxyError) {
        let proxies = config.stringArray(forKey: "audit.proxies") ?? []
        var endpoints: [Endpoint] = []
        for proxy in proxies {
            guard let endpoint = Endpoint(proxy) else { throw invalid("audit.proxies: '\(proxy)' is not host:port") }
            endpoints.append(endpoint)
        }
        let manager = config.string(forKey: "audit.manager")
        guard !endpoints.isEmpty || manager != nil else { return }
        var audit = Audit(proxies: endpoints)
        audit.managerURL = manager
        if let component = config.string(forKey: "audit.managerComponent") { audit.managerComponent = component }
        if let duration = try config.duration("audit.flushInterval", invalid) {
            guard duration > .zero else { throw invalid("audit.flushInterval must be positive") }
            audit.flushInterval = duration
        }
        if let value = try config.wholeNumber("audit.maxPendingRequests", invalid) {
            guard value > 0 else { throw invalid("audit.maxPendingRequests must be positive") }
            audit.maxPendingRequests = value
        }
        if let ip = config.string(forKey: "audit.localIP") { audit.localIP = ip }
        self.audit = audit
    }
}
