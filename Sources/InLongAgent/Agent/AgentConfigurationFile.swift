public import Configuration
import Foundation
import InLongDataProxy
import InLongTransport
package import InLongWire
import Yams

#if !YAML || !ManagerDiscovery
#error("InLongAgent reads YAML configuration files and may take its proxies from the Manager: enable swift-inlong's package traits 'YAML' and 'ManagerDiscovery' (both on by default)")
#endif

/// The `inlong agent --config` file, YAML or JSON:
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
///
/// `sources` is read from the file alone; every other key is read through swift-configuration with `INLONG_*`
/// environment variables over the file (see ``AgentConfiguration/init(config:sources:listeners:)``), so that secrets
/// (`INLONG_MANAGER_AUTH`) and per-host settings (`INLONG_STATE_DIRECTORY`) need not be in it. Relative paths in
/// the file are relative to the file.
public enum AgentConfigurationFile {
    struct Source: Decodable, Sendable {
        var paths: [String]
        var group: String
        var stream: String
        var name: String?
        var attributes: [String: String]?
        var startAt: AgentConfiguration.FileSource.StartPosition?
        var maxLineLength: Int?
        var overlong: AgentConfiguration.OverlongPolicy?
        var multiline: Multiline?
        var include: [String]?
        var exclude: [String]?
        var excludeFiles: [String]?
        var ignoreOlder: Double?
        var closeInactive: Double?
        var rateLimit: AgentConfiguration.RateLimit?
        var origin: Origin?

        struct Multiline: Decodable, Sendable {
            var pattern: String
            var negate: Bool?
            var match: AgentConfiguration.FileSource.Multiline.Match?
            var maxLines: Int?
            var maxBytes: Int?
            var timeout: Double?
        }

        struct Origin: Decodable, Sendable {
            var fileName: String?
            var path: String?
            var host: String?
            var offset: String?
            var pathPattern: String?
        }
    }

    /// Keys holding paths, resolved against the file's directory when relative.
    static let pathKeys = ["stateDirectory", "sdkConfig"]

    /// Every key the file may hold: the agent's, the client's and each source's. Any other is refused as a typo.
    package static let settingKeys = SettingKeys([
        "stateDirectory", "maxUnackedBytes", "maxUnackedBytesPerFile", "readSize", "maxOpenFiles", "scanInterval",
        "pollInterval", "checkpointInterval", "releaseAfter", "shutdownTimeout", "resendDelay", "stallAfter", "compression",
        "sources[].paths", "sources[].group", "sources[].stream", "sources[].name", "sources[].attributes.*", "sources[].startAt",
        "sources[].maxLineLength", "sources[].overlong", "sources[].multiline.pattern", "sources[].multiline.negate",
        "sources[].multiline.match", "sources[].multiline.maxLines", "sources[].multiline.maxBytes", "sources[].multiline.timeout",
        "sources[].include", "sources[].exclude", "sources[].excludeFiles", "sources[].ignoreOlder", "sources[].closeInactive", "sources[].origin.fileName",
        "sources[].origin.path", "sources[].origin.host", "sources[].origin.offset", "sources[].origin.pathPattern",
        "sources[].rateLimit.bytesPerSecond", "sources[].rateLimit.linesPerSecond", "sources[].rateLimit.burstBytes",
        "sources[].rateLimit.burstLines", "listeners[].rateLimit.bytesPerSecond", "listeners[].rateLimit.linesPerSecond",
        "listeners[].rateLimit.burstBytes", "listeners[].rateLimit.burstLines", "listeners[].syslogAttributes",
        "listeners[].host", "listeners[].port", "listeners[].transport", "listeners[].format", "listeners[].group",
        "listeners[].stream", "listeners[].name", "listeners[].attributes.*", "listeners[].maxMessageLength", "listeners[].maxBufferedBytes",
    ]).union(DataProxyClient.Configuration.settingKeys)

    /// Reads `path` (JSON is read as the YAML it is) with `environment`'s `INLONG_*` variables (the process's
    /// when `nil`) over it.
    public static func load(path: String, environment: [String: String]? = nil) throws(AgentConfigurationError) -> AgentConfiguration {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw AgentConfigurationError("cannot read \(path)")
        }
        let environment = environment ?? ProcessInfo.processInfo.environment
        let typos = Self.settingKeys.environmentTypos(in: environment, prefix: "INLONG")
        guard typos.isEmpty else { throw AgentConfigurationError(typos.map(\.description).joined(separator: "; ")) }
        let directory = (path as NSString).deletingLastPathComponent
        let sources: [Source]
        let listeners: [Listener]
        let settings: YAMLSnapshot
        do {
            let text = String(decoding: data, as: UTF8.self)
            guard case .mapping(var mapping)? = try Yams.compose(yaml: text) else {
                throw AgentConfigurationError("\(path) is not a valid agent configuration: not a mapping of settings")
            }
            let unknown = Self.settingKeys.unknownKeys(in: try Yams.load(yaml: text) ?? [:])
            guard unknown.isEmpty else {
                throw AgentConfigurationError("\(path): " + unknown.map(\.description).joined(separator: "; "))
            }
            do {
                sources = try mapping["sources"].map { try YAMLDecoder().decode([Source].self, from: $0) } ?? []
            } catch let error as DecodingError {
                throw AgentConfigurationError("\(path): \(plainDescription(of: error, under: "sources"))")
            }
            do {
                listeners = try mapping["listeners"].map { try YAMLDecoder().decode([Listener].self, from: $0) } ?? []
            } catch let error as DecodingError {
                throw AgentConfigurationError("\(path): \(plainDescription(of: error, under: "listeners"))")
            }
            // swift-configuration holds scalars and lists of scalars only: the sources stay out of it.
            mapping["sources"] = nil
            mapping["listeners"] = nil
            for key in Self.pathKeys {
                if let value = mapping[key]?.string { mapping[key] = Node(Self.resolve(value, directory)) }
            }
            if case .mapping(var manager)? = mapping["manager"], let cacheFile = manager["cacheFile"]?.string, !cacheFile.isEmpty {
                manager["cacheFile"] = Node(Self.resolve(cacheFile, directory))
                mapping["manager"] = .mapping(manager)
            }
            let bytes = Array(try Yams.serialize(node: .mapping(mapping)).utf8)
            settings = try YAMLSnapshot(
                data: bytes.span.bytes,
                providerName: path,
                parsingOptions: .init(secretsSpecifier: .specific(["manager.auth"]))
            )
        } catch let error as AgentConfigurationError {
            throw error
        } catch {
            throw AgentConfigurationError("\(path) is not a valid agent configuration: \(error)")
        }
        let reader = ConfigReader(providers: [
            DataProxyClient.Configuration.environmentProvider(environment),
            SnapshotProvider(snapshot: settings),
        ])
        return try AgentConfiguration(
            config: reader,
            sources: try sources.enumerated().map { index, source throws(AgentConfigurationError) in
                try source.fileSource(relativeTo: directory, key: "sources[\(index)]")
            },
            listeners: try listeners.enumerated().map { index, listener throws(AgentConfigurationError) in
                try listener.listener(key: "listeners[\(index)]")
            }
        )
    }

    /// A listener as the file writes it.
    struct Listener: Decodable, Sendable {
        var host: String?
        /// Needed but with `transport: stdin`.
        var port: Int?
        var transport: AgentConfiguration.Listener.Transport?
        var format: AgentConfiguration.Listener.Format?
        var group: String
        var stream: String
        var name: String?
        var attributes: [String: String]?
        var maxMessageLength: Int?
        var maxBufferedBytes: Int?
        var rateLimit: AgentConfiguration.RateLimit?
        var syslogAttributes: Bool?

        func listener(key: String = "listeners") throws(AgentConfigurationError) -> AgentConfiguration.Listener {
            guard self.transport == .stdin || self.port != nil else {
                throw AgentConfigurationError(key: "\(key).port", "\(key).port: give the port to listen on")
            }
            var listener = AgentConfiguration.Listener(port: self.port ?? 0, group: self.group, stream: self.stream)
            if let host = self.host { listener.host = host }
            if let transport = self.transport { listener.transport = transport }
            if let format = self.format { listener.format = format }
            listener.name = self.name
            listener.attributes = self.attributes ?? [:]
            if let length = self.maxMessageLength { listener.maxMessageLength = length }
            if let bytes = self.maxBufferedBytes { listener.maxBufferedBytes = bytes }
            try self.rateLimit?.validate(key: "\(key).rateLimit")
            listener.rateLimit = self.rateLimit
            if let syslogAttributes = self.syslogAttributes {
                guard !syslogAttributes || listener.format == .syslog else {
                    throw AgentConfigurationError(key: "\(key).syslogAttributes", "\(key).syslogAttributes needs format syslog")
                }
                listener.syslogAttributes = syslogAttributes
            }
            try listener.validate()
            return listener
        }
    }

    /// Relative paths in a configuration file are relative to the file.
    static func resolve(_ path: String, _ directory: String) -> String {
        path.hasPrefix("/") || directory.isEmpty ? path : directory + "/" + path
    }
}

extension AgentConfigurationFile.Source {
    /// The source; `key` names it in errors (`sources[2]`).
    func fileSource(relativeTo directory: String, key: String = "sources") throws(AgentConfigurationError) -> AgentConfiguration.FileSource {
        guard !self.paths.isEmpty else { throw AgentConfigurationError("a source without paths (\(self.group)/\(self.stream))") }
        var source = AgentConfiguration.FileSource(
            paths: self.paths.map { AgentConfigurationFile.resolve($0, directory) },
            group: self.group,
            stream: self.stream
        )
        source.name = self.name
        source.attributes = self.attributes ?? [:]
        source.startAt = self.startAt ?? .beginning
        source.maxLineLength = self.maxLineLength ?? source.maxLineLength
        source.overlong = self.overlong ?? .truncate
        guard source.maxLineLength > 0 else { throw AgentConfigurationError("maxLineLength must be positive") }
        if let multiline = self.multiline {
            var rules = AgentConfiguration.FileSource.Multiline(pattern: multiline.pattern)
            rules.negate = multiline.negate ?? rules.negate
            rules.match = multiline.match ?? rules.match
            rules.maxLines = multiline.maxLines ?? rules.maxLines
            rules.maxBytes = multiline.maxBytes ?? rules.maxBytes
            if let timeout = multiline.timeout {
                guard let duration = Duration(settingSeconds: timeout) else {
                    throw AgentConfigurationError("sources: multiline.timeout must be a number of seconds")
                }
                rules.timeout = duration
            }
            source.multiline = rules
        }
        source.include = self.include ?? []
        source.exclude = self.exclude ?? []
        // Matched against whole paths, as written: `*.gz` is any file ending in .gz.
        source.excludeFiles = self.excludeFiles ?? []
        if let ignoreOlder = self.ignoreOlder {
            guard let duration = Duration(settingSeconds: ignoreOlder) else {
                throw AgentConfigurationError("sources: ignoreOlder must be a number of seconds")
            }
            source.ignoreOlder = duration
        }
        if let closeInactive = self.closeInactive {
            guard let duration = Duration(settingSeconds: closeInactive), duration > .zero else {
                throw AgentConfigurationError(key: "\(key).closeInactive", "\(key).closeInactive must be a positive number of seconds")
            }
            source.closeInactive = duration
        }
        try self.rateLimit?.validate(key: "\(key).rateLimit")
        source.rateLimit = self.rateLimit
        if let origin = self.origin {
            source.origin.fileName = origin.fileName
            source.origin.path = origin.path
            source.origin.host = origin.host
            source.origin.offset = origin.offset
            source.origin.pathPattern = origin.pathPattern
        }
        try source.validate()
        return source
    }
}

extension AgentConfiguration {
    /// Reads the agent's settings through swift-configuration; the sources come apart, as swift-configuration
    /// holds no lists of objects. Keys (environment names are the keys under `INLONG_`, upper-cased, `_` between
    /// words):
    ///
    /// | Key | Environment | Meaning |
    /// |---|---|---|
    /// | `stateDirectory` | `INLONG_STATE_DIRECTORY` | checkpoint and dead-letter directory (required) |
    /// | `maxUnackedBytes`, `maxUnackedBytesPerFile` | `INLONG_MAX_UNACKED_BYTES`, ... | read-ahead budgets |
    /// | `readSize`, `maxOpenFiles` | `INLONG_READ_SIZE`, `INLONG_MAX_OPEN_FILES` | reading |
    /// | `scanInterval`, `pollInterval`, `checkpointInterval` | `INLONG_SCAN_INTERVAL`, ... | seconds |
    /// | `releaseAfter`, `shutdownTimeout`, `resendDelay`, `stallAfter` | `INLONG_RELEASE_AFTER`, ... | seconds |
    /// | `compression` | `INLONG_COMPRESSION` | `false` to never compress |
    ///
    /// and every key of `DataProxyClient.Configuration(config:groups:)` for the client (`proxies`, `manager.url`,
    /// `manager.auth`, `sdkConfig`, `batching.linger`, ...), whose Manager groups default to the sources' groups.
    public init(config: ConfigReader, sources: [FileSource], listeners: [Listener] = []) throws(AgentConfigurationError) {
        guard !sources.isEmpty || !listeners.isEmpty else { throw AgentConfigurationError("no sources") }
        try Self.checkNames(sources: sources, listeners: listeners)
        guard let stateDirectory = config.string(forKey: "stateDirectory") else { throw AgentConfigurationError("give stateDirectory") }
        var client: DataProxyClient.Configuration
        do {
            client = try DataProxyClient.Configuration(config: config, groups: Array(Set(sources.map(\.group) + listeners.map(\.group))).sorted())
        } catch {
            throw AgentConfigurationError(error.detail)
        }
        if try config.flag("compression", AgentConfigurationError.init) == false { client.batching.compressionThreshold = nil }
        if config.string(forKey: "manager.cacheFile") == nil { client.manager?.cacheFile = AgentConfiguration.proxyCacheFile(in: stateDirectory) }
        self.init(sources: sources, stateDirectory: stateDirectory, client: client)
        self.listeners = listeners
        func positive(_ key: ConfigKey, _ value: inout Int) throws(AgentConfigurationError) {
            guard let read = try config.wholeNumber(key, AgentConfigurationError.init) else { return }
            guard read > 0 else { throw AgentConfigurationError("\(key) must be positive") }
            value = read
        }
        func seconds(_ key: ConfigKey, _ value: inout Duration) throws(AgentConfigurationError) {
            guard let duration = try config.duration(key, AgentConfigurationError.init) else { return }
            value = duration
        }
        try positive("maxUnackedBytes", &self.maxUnackedBytes)
        try positive("maxUnackedBytesPerFile", &self.maxUnackedBytesPerFile)
        try positive("readSize", &self.readSize)
        try positive("maxOpenFiles", &self.maxOpenFiles)
        try seconds("scanInterval", &self.scanInterval)
        try seconds("pollInterval", &self.pollInterval)
        try seconds("checkpointInterval", &self.checkpointInterval)
        try seconds("releaseAfter", &self.releaseAfter)
        try seconds("shutdownTimeout", &self.shutdownTimeout)
        try seconds("resendDelay", &self.resendDelay)
        try seconds("stallAfter", &self.stallAfter)
    }
}

extension AgentConfiguration {
    /// Throws when a source or listener is named twice, or with an empty name: their metrics would be summed under
    /// one label, or have none. The error names the second key (`sources[1].name`).
    static func checkNames(sources: [FileSource], listeners: [Listener]) throws(AgentConfigurationError) {
        var seen: [String: String] = [:]
        let named = sources.enumerated().map { ("sources[\($0.offset)].name", $0.element.name) }
            + listeners.enumerated().map { ("listeners[\($0.offset)].name", $0.element.name) }
        for case let (key, name?) in named {
            guard !name.isEmpty else { throw AgentConfigurationError(key: key, "\(key) must not be empty") }
            if let first = seen[name] { throw AgentConfigurationError(key: key, "\(key) '\(name)' is also the name of \(first.dropLast(5))") }
            seen[name] = key
        }
        // One process has one standard input: two readers would split its lines between them.
        let stdin = listeners.indices.filter { listeners[$0].transport == .stdin }
        if stdin.count > 1 {
            throw AgentConfigurationError(key: "listeners[\(stdin[1])].transport", "listeners[\(stdin[1])]: standard input can be read by one listener only")
        }
    }
}

/// A provider of one snapshot taken once: the agent file's settings without its sources.
struct SnapshotProvider: ConfigProvider {
    let snapshotValue: any ConfigSnapshot

    init(snapshot: any ConfigSnapshot) {
        self.snapshotValue = snapshot
    }

    var providerName: String { self.snapshotValue.providerName }

    func value(forKey key: AbsoluteConfigKey, type: ConfigType) throws -> LookupResult {
        try self.snapshotValue.value(forKey: key, type: type)
    }

    func fetchValue(forKey key: AbsoluteConfigKey, type: ConfigType) async throws -> LookupResult {
        try self.snapshotValue.value(forKey: key, type: type)
    }

    func watchValue<Return: ~Copyable>(
        forKey key: AbsoluteConfigKey,
        type: ConfigType,
        updatesHandler: (_ updates: ConfigUpdatesAsyncSequence<Result<LookupResult, any Error>, Never>) async throws -> Return
    ) async throws -> Return {
        try await self.watchValueFromValue(forKey: key, type: type, updatesHandler: updatesHandler)
    }

    func snapshot() -> any ConfigSnapshot { self.snapshotValue }

    func watchSnapshot<Return: ~Copyable>(
        updatesHandler: (_ updates: ConfigUpdatesAsyncSequence<any ConfigSnapshot, Never>) async throws -> Return
    ) async throws -> Return {
        try await self.watchSnapshotFromSnapshot(updatesHandler: updatesHandler)
    }
}

/// The agent's configuration cannot be used.
public struct AgentConfigurationError: Error, CustomStringConvertible, Sendable {
    /// What kind of problem it is.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: Hashable, Sendable {
            case invalidSetting
            case invalidPattern
        }

        private let base: Base

        /// A setting is missing, of the wrong type, or out of range.
        public static let invalidSetting = Code(base: .invalidSetting)
        /// A regular expression (multiline, include, exclude, path pattern) does not compile; see
        /// ``AgentConfigurationError/pattern``.
        public static let invalidPattern = Code(base: .invalidPattern)

        public var description: String {
            switch self.base {
            case .invalidSetting: "invalid setting"
            case .invalidPattern: "invalid pattern"
            }
        }
    }

    public var code: Code
    /// The pattern that does not compile, with ``Code-swift.struct/invalidPattern``.
    public var pattern: String?
    /// The key of the setting, when one setting is at fault (`sources[1].rateLimit.bytesPerSecond`).
    public var key: String?
    public var description: String

    init(_ description: String) {
        self.code = .invalidSetting
        self.description = description
    }

    init(key: String, _ description: String) {
        self.code = .invalidSetting
        self.key = key
        self.description = description
    }

    init(invalidPattern pattern: String, _ description: String) {
        self.code = .invalidPattern
        self.pattern = pattern
        self.description = description
    }
}

/// A decoding error in plain words, naming the key: `sources[0].paths is missing`.
func plainDescription(of error: DecodingError, under root: String) -> String {
    func path(_ codingPath: [any CodingKey]) -> String {
        codingPath.reduce(root) { path, key in key.intValue.map { "\(path)[\($0)]" } ?? "\(path).\(key.stringValue)" }
    }
    switch error {
    case .keyNotFound(let key, let context):
        return "\(path(context.codingPath + [key])) is missing"
    case .typeMismatch(let type, let context):
        return "\(path(context.codingPath)) must be \(type == String.self ? "text" : type == [String].self ? "a list of text" : "\(type)")"
    case .valueNotFound(_, let context):
        return "\(path(context.codingPath)) has no value"
    case .dataCorrupted(let context):
        // An enumeration's unknown value: `Cannot initialize X from invalid String value middle`.
        if let range = context.debugDescription.range(of: "invalid String value ") {
            return "\(path(context.codingPath)) cannot be '\(context.debugDescription[range.upperBound...])'"
        }
        return "\(path(context.codingPath)): \(context.debugDescription)"
    @unknown default:
        return "\(error)"
    }
}

