import Foundation
import InLongDataProxy
import InLongTransport
import Yams

/// The `inlong agent --config` file, JSON or YAML:
/// ```yaml
/// stateDirectory: /var/lib/inlong-agent
/// proxies: ["10.0.0.1:46801", "10.0.0.2:46801"]   # or manager: {url: ..., auth: "id:key", tenant: t}
/// # sdkConfig: /etc/inlong/sdk.json               # or a C++ SDK configuration file
/// sources:
///   - paths: ["/var/log/app/*.log"]
///     group: g
///     stream: s
///     attributes: {env: prod}
///     startAt: beginning          # or end
///     maxLineLength: 1048576
///     overlong: truncate          # or skip
/// maxUnackedBytes: 268435456
/// shutdownTimeout: 30             # seconds, as every interval here
/// ```
public struct AgentConfigurationFile: Decodable, Sendable {
    public struct Source: Decodable, Sendable {
        var paths: [String]
        var group: String
        var stream: String
        var attributes: [String: String]?
        var startAt: AgentConfiguration.FileSource.StartPosition?
        var maxLineLength: Int?
        var overlong: AgentConfiguration.LineSplitterPolicy?
    }

    public struct Manager: Decodable, Sendable {
        var url: String
        var auth: String?
        var tenant: String?
    }

    var stateDirectory: String
    var proxies: [String]?
    var manager: Manager?
    var sdkConfig: String?
    var compression: Bool?
    var sources: [Source]
    var maxUnackedBytes: Int?
    var maxUnackedBytesPerFile: Int?
    var readSize: Int?
    var maxOpenFiles: Int?
    var scanInterval: Double?
    var pollInterval: Double?
    var checkpointInterval: Double?
    var releaseAfter: Double?
    var shutdownTimeout: Double?
    var resendDelay: Double?

    /// Reads `path`: JSON when it ends in `.json`, YAML otherwise.
    public static func load(path: String) throws(AgentConfigurationError) -> AgentConfiguration {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw AgentConfigurationError("cannot read \(path)")
        }
        let file: Self
        do {
            if path.hasSuffix(".json") {
                file = try JSONDecoder().decode(Self.self, from: data)
            } else {
                file = try YAMLDecoder().decode(Self.self, from: data)
            }
        } catch {
            throw AgentConfigurationError("\(path) is not a valid agent configuration: \(error)")
        }
        return try file.configuration(relativeTo: (path as NSString).deletingLastPathComponent)
    }

    public func configuration(relativeTo directory: String = "") throws(AgentConfigurationError) -> AgentConfiguration {
        guard !self.sources.isEmpty else { throw AgentConfigurationError("no sources") }
        var client: DataProxyClient.Configuration
        if let sdkConfig = self.sdkConfig {
            do {
                client = try DataProxyClient.Configuration(cppSDKConfigurationFile: Self.resolve(sdkConfig, directory))
            } catch {
                throw AgentConfigurationError("sdkConfig \(sdkConfig): \(error)")
            }
        } else if let manager = self.manager {
            var configuration = DataProxyClient.Manager(url: manager.url, groups: Array(Set(self.sources.map(\.group))).sorted())
            if let auth = manager.auth {
                guard let credentials = DataProxyClient.Manager.credentials(parsing: auth) else {
                    throw AgentConfigurationError("manager.auth takes secretId:secretKey")
                }
                configuration.credentials = credentials
            }
            configuration.tenant = manager.tenant
            client = DataProxyClient.Configuration(manager: configuration)
        } else if let proxies = self.proxies, !proxies.isEmpty {
            var endpoints: [Endpoint] = []
            for proxy in proxies {
                guard let endpoint = Endpoint(proxy) else { throw AgentConfigurationError("proxy '\(proxy)' is not host:port") }
                endpoints.append(endpoint)
            }
            client = DataProxyClient.Configuration(proxies: endpoints)
        } else {
            throw AgentConfigurationError("give proxies, manager or sdkConfig")
        }
        if self.compression == false { client.batching.compressionThreshold = nil }
        var sources: [AgentConfiguration.FileSource] = []
        for source in self.sources {
            guard !source.paths.isEmpty else { throw AgentConfigurationError("a source without paths (\(source.group)/\(source.stream))") }
            var fileSource = AgentConfiguration.FileSource(
                paths: source.paths.map { Self.resolve($0, directory) },
                group: source.group,
                stream: source.stream
            )
            fileSource.attributes = source.attributes ?? [:]
            fileSource.startAt = source.startAt ?? .beginning
            fileSource.maxLineLength = source.maxLineLength ?? fileSource.maxLineLength
            fileSource.overlong = source.overlong ?? .truncate
            guard fileSource.maxLineLength > 0 else { throw AgentConfigurationError("maxLineLength must be positive") }
            sources.append(fileSource)
        }
        var configuration = AgentConfiguration(sources: sources, stateDirectory: Self.resolve(self.stateDirectory, directory), client: client)
        if let value = self.maxUnackedBytes { configuration.maxUnackedBytes = value }
        if let value = self.maxUnackedBytesPerFile { configuration.maxUnackedBytesPerFile = value }
        if let value = self.readSize { configuration.readSize = value }
        if let value = self.maxOpenFiles { configuration.maxOpenFiles = value }
        func duration(_ seconds: Double?, _ name: String) throws(AgentConfigurationError) -> Duration? {
            guard let seconds else { return nil }
            guard seconds >= 0, seconds.isFinite else { throw AgentConfigurationError("\(name) must be a number of seconds") }
            return .milliseconds(Int64(seconds * 1000))
        }
        if let value = try duration(self.scanInterval, "scanInterval") { configuration.scanInterval = value }
        if let value = try duration(self.pollInterval, "pollInterval") { configuration.pollInterval = value }
        if let value = try duration(self.checkpointInterval, "checkpointInterval") { configuration.checkpointInterval = value }
        if let value = try duration(self.releaseAfter, "releaseAfter") { configuration.releaseAfter = value }
        if let value = try duration(self.shutdownTimeout, "shutdownTimeout") { configuration.shutdownTimeout = value }
        if let value = try duration(self.resendDelay, "resendDelay") { configuration.resendDelay = value }
        guard configuration.maxUnackedBytes > 0, configuration.maxUnackedBytesPerFile > 0, configuration.readSize > 0, configuration.maxOpenFiles > 0 else {
            throw AgentConfigurationError("budgets, readSize and maxOpenFiles must be positive")
        }
        return configuration
    }

    /// Relative paths in a configuration file are relative to the file.
    private static func resolve(_ path: String, _ directory: String) -> String {
        path.hasPrefix("/") || directory.isEmpty ? path : directory + "/" + path
    }
}

/// The agent's configuration cannot be used.
public struct AgentConfigurationError: Error, CustomStringConvertible, Sendable {
    public var description: String
    init(_ description: String) { self.description = description }
}
