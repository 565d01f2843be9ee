public import Configuration
import InLongTransport
package import InLongWire

extension DataProxyClient.Configuration {
    /// The keys ``init(config:groups:)`` reads: a file with any other is refused (see `SettingKeys`).
    package static let settingKeys = SettingKeys([
        "sdkConfig", "proxies", "proxy.protocol",
        "proxy.tls.enabled", "proxy.tls.caFile", "proxy.tls.certificateFile", "proxy.tls.keyFile", "proxy.tls.verify",
        "manager.url", "manager.groups", "manager.auth", "manager.tenant", "manager.cacheFile", "manager.refreshInterval",
        "manager.tls.caFile", "manager.tls.certificateFile", "manager.tls.keyFile", "manager.tls.verify",
        "batching.linger", "batching.maxRecords", "batching.maxBytes", "batching.compression",
        "buffer.maxBytes", "buffer.maxRecords", "buffer.whenFull",
        "retry.deliveryTimeout",
        "connection.maxProxies", "connection.requestTimeout", "connection.heartbeatInterval",
        "spool.directory", "spool.sync", "spool.segmentBytes", "spool.maxBytes",
    ]).union(Self.auditSettingKeys)

    /// Reads a configuration through swift-configuration, from whatever providers the reader combines (a JSON or
    /// YAML file, environment variables, ...). Keys, all optional but one of `proxies`, `manager.url` and
    /// `sdkConfig`:
    ///
    /// Environment names are the keys under ``environmentPrefix``, upper-cased, with `_` between words.
    ///
    /// | Key | Environment | Meaning |
    /// |---|---|---|
    /// | `sdkConfig` | `INLONG_SDK_CONFIG` | a C++ SDK JSON configuration file to start from |
    /// | `proxies` | `INLONG_PROXIES` | `host:port` list (comma-separated in the environment) |
    /// | `proxy.protocol` | `INLONG_PROXY_PROTOCOL` | `tcp` (default) or `http`: DataProxy's HTTP API on the `proxies` (see ``DataProxyClient/Transport``) |
    /// | `proxy.tls.enabled` | `INLONG_PROXY_TLS_ENABLED` | `true` for `https://` to the proxies (HTTP transport only: DataProxy's TCP port has no TLS) |
    /// | `proxy.tls.caFile`, `proxy.tls.certificateFile`, `proxy.tls.keyFile`, `proxy.tls.verify` | `INLONG_PROXY_TLS_CA_FILE`, ... | as `manager.tls.*`, for the proxies; any of them turns `https://` on |
    /// | `manager.url` | `INLONG_MANAGER_URL` | the Manager's proxy-list URL |
    /// | `manager.groups` | `INLONG_MANAGER_GROUPS` | groups to discover at start |
    /// | `manager.auth` | `INLONG_MANAGER_AUTH` | `secretId:secretKey` (secret) |
    /// | `manager.tenant` | `INLONG_MANAGER_TENANT` | the `tenant` header |
    /// | `manager.cacheFile` | `INLONG_MANAGER_CACHE_FILE` | the proxy-list cache file |
    /// | `manager.refreshInterval` | `INLONG_MANAGER_REFRESH_INTERVAL` | seconds |
    /// | `manager.tls.caFile` | `INLONG_MANAGER_TLS_CA_FILE` | PEM certificates to trust for an `https://` Manager (instead of the system's) |
    /// | `manager.tls.certificateFile`, `manager.tls.keyFile` | ... | a PEM client certificate chain and its key |
    /// | `manager.tls.verify` | `INLONG_MANAGER_TLS_VERIFY` | `full` (default), `noHostname` or `none` |
    /// | `batching.linger` | `INLONG_BATCHING_LINGER` | seconds |
    /// | `batching.maxRecords`, `batching.maxBytes` | `INLONG_BATCHING_MAX_RECORDS`, ... | batch limits |
    /// | `batching.compression` | `INLONG_BATCHING_COMPRESSION` | `false` to never compress |
    /// | `buffer.maxBytes`, `buffer.maxRecords` | `INLONG_BUFFER_MAX_BYTES`, ... | the quota |
    /// | `buffer.whenFull` | `INLONG_BUFFER_WHEN_FULL` | `wait` or `fail` |
    /// | `retry.deliveryTimeout` | `INLONG_RETRY_DELIVERY_TIMEOUT` | seconds |
    /// | `connection.maxProxies` | `INLONG_CONNECTION_MAX_PROXIES` | proxies per cluster |
    /// | `connection.requestTimeout`, `connection.heartbeatInterval` | ... | seconds |
    /// | `spool.directory` | `INLONG_SPOOL_DIRECTORY` | the crash-safe spool's directory (see ``Spool``) |
    /// | `spool.sync` | `INLONG_SPOOL_SYNC` | `always`, `never`, or seconds between fsyncs |
    /// | `spool.segmentBytes` | `INLONG_SPOOL_SEGMENT_BYTES` | bytes per segment file |
    /// | `spool.maxBytes` | `INLONG_SPOOL_MAX_BYTES` | the most the spool holds of records beyond the memory quota |
    ///
    /// `groups` completes `manager.groups` when the reader has none (the groups a command sends to).
    public init(config: ConfigReader, groups: [String] = []) throws(DataProxyError) {
        func invalid(_ detail: String) -> DataProxyError { DataProxyError(.invalidConfiguration, detail) }
        if let path = config.string(forKey: "sdkConfig") {
            self = try DataProxyClient.Configuration(cppSDKConfigurationFile: path)
        } else {
            self.init(proxies: [])
        }
        if let proxies = config.stringArray(forKey: "proxies") {
            var endpoints: [Endpoint] = []
            for proxy in proxies {
                guard let endpoint = Endpoint(proxy) else { throw invalid("proxies: '\(proxy)' is not host:port") }
                endpoints.append(endpoint)
            }
            self.proxies = endpoints
        }
        if let name = config.string(forKey: "proxy.protocol") {
            guard let transport = DataProxyClient.Transport(name) else { throw invalid("proxy.protocol takes tcp or http, not '\(name)'") }
            self.transport = transport
        }
        let proxyTLSKeys: [ConfigKey] = ["proxy.tls.enabled", "proxy.tls.caFile", "proxy.tls.certificateFile", "proxy.tls.keyFile", "proxy.tls.verify"]
        if proxyTLSKeys.contains(where: { config.hasValue($0) }) {
            guard self.transport == .http else {
                throw invalid("proxy.tls settings need proxy.protocol: http (DataProxy's TCP port has no TLS)")
            }
            try self.http.applyTLS(
                enabled: try config.flag("proxy.tls.enabled", invalid),
                caFile: config.string(forKey: "proxy.tls.caFile"),
                certificateFile: config.string(forKey: "proxy.tls.certificateFile"),
                keyFile: config.string(forKey: "proxy.tls.keyFile"),
                verify: config.string(forKey: "proxy.tls.verify")
            )
        }
        if let url = config.string(forKey: "manager.url") {
            var manager = DataProxyClient.Configuration.Manager(url: url, groups: config.stringArray(forKey: "manager.groups") ?? groups)
            if let auth = config.string(forKey: "manager.auth", isSecret: true) {
                guard let credentials = DataProxyClient.Configuration.Manager.credentials(parsing: auth) else { throw invalid("manager.auth takes secretId:secretKey") }
                manager.credentials = credentials
            }
            manager.tenant = config.string(forKey: "manager.tenant")
            if let cacheFile = config.string(forKey: "manager.cacheFile") { manager.cacheFile = cacheFile.isEmpty ? nil : cacheFile }
            if let duration = try config.duration("manager.refreshInterval", invalid) { manager.refreshInterval = duration }
            try manager.applyTLS(
                caFile: config.string(forKey: "manager.tls.caFile"),
                certificateFile: config.string(forKey: "manager.tls.certificateFile"),
                keyFile: config.string(forKey: "manager.tls.keyFile"),
                verify: config.string(forKey: "manager.tls.verify")
            )
            self.manager = manager
        }
        guard !self.proxies.isEmpty || self.manager != nil else { throw invalid("give proxies, manager.url or sdkConfig") }
        if let duration = try config.duration("batching.linger", invalid) { self.batching.linger = duration }
        if let value = try config.wholeNumber("batching.maxRecords", invalid) { self.batching.maxRecords = try Self.positive(value, "batching.maxRecords") }
        if let value = try config.wholeNumber("batching.maxBytes", invalid) { self.batching.maxBytes = try Self.positive(value, "batching.maxBytes") }
        if try config.flag("batching.compression", invalid) == false { self.batching.compressionThreshold = nil }
        if let value = try config.wholeNumber("buffer.maxBytes", invalid) { self.buffer.maxBytes = try Self.positive(value, "buffer.maxBytes") }
        if let value = try config.wholeNumber("buffer.maxRecords", invalid) { self.buffer.maxRecords = try Self.positive(value, "buffer.maxRecords") }
        if let whenFull = config.string(forKey: "buffer.whenFull") {
            switch whenFull {
            case "wait": self.buffer.whenFull = .wait
            case "fail": self.buffer.whenFull = .fail
            default: throw invalid("buffer.whenFull takes wait or fail, not '\(whenFull)'")
            }
        }
        if let duration = try config.duration("retry.deliveryTimeout", invalid) { self.retry.deliveryTimeout = duration }
        if let value = try config.wholeNumber("connection.maxProxies", invalid) { self.connection.maxProxies = try Self.positive(value, "connection.maxProxies") }
        if let duration = try config.duration("connection.requestTimeout", invalid) { self.connection.requestTimeout = duration }
        if let duration = try config.duration("connection.heartbeatInterval", invalid) { self.connection.heartbeatInterval = duration }
        if let directory = config.string(forKey: "spool.directory") {
            var spool = Spool(directory: directory)
            switch config.string(forKey: "spool.sync") {
            case "always": spool.sync = .always
            case "never": spool.sync = .never
            default:
                if let interval = try config.duration("spool.sync", { _ in invalid("spool.sync takes always, never or seconds") }) {
                    guard interval > .zero else { throw invalid("spool.sync takes always, never or seconds above 0") }
                    spool.sync = .interval(interval)
                }
            }
            if let value = try config.wholeNumber("spool.segmentBytes", invalid) { spool.segmentBytes = try Self.positive(value, "spool.segmentBytes") }
            if let value = try config.wholeNumber("spool.maxBytes", invalid) { spool.maxBytes = try Self.positive(value, "spool.maxBytes") }
            self.spool = spool
        }
        try self.readAudit(config, invalid)
    }

    /// The prefix of the environment variables the command-line tools read settings from: `manager.url` is
    /// `INLONG_MANAGER_URL`.
    public static let environmentPrefix: ConfigKey = "inlong"

    /// `environment`'s `INLONG_*` variables as a provider of these keys, `INLONG_MANAGER_AUTH` kept secret.
    public static func environmentProvider(_ environment: [String: String]) -> some ConfigProvider {
        EnvironmentVariablesProvider(environmentVariables: environment, secretsSpecifier: .specific(["INLONG_MANAGER_AUTH"]))
            .prefixKeys(with: Self.environmentPrefix)
    }

    private static func positive(_ value: Int, _ key: String) throws(DataProxyError) -> Int {
        guard value > 0 else { throw DataProxyError(.invalidConfiguration, "\(key) must be positive") }
        return value
    }
}
