import Foundation
@testable import InLongAgent
import InLongDataProxy
import InLongTransport
import Testing

/// The `inlong agent --config` file, YAML and JSON, and its errors.
@Suite struct AgentConfigurationFileTests {
    private func withFile<Result>(_ name: String, _ text: String, _ body: (String) throws -> Result) throws -> Result {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("inlong-config-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/" + name
        #expect(FileManager.default.createFile(atPath: path, contents: Data(text.utf8)))
        return try body(path)
    }

    @Test func aYAMLFileGivesSourcesProxiesAndBudgets() throws {
        let yaml = """
            stateDirectory: state
            proxies: ["127.0.0.1:46801", "127.0.0.1:46802"]
            sources:
              - paths: ["/var/log/app/*.log"]
                group: g
                stream: s
                attributes: {env: prod}
                startAt: end
                maxLineLength: 4096
                overlong: skip
            maxUnackedBytes: 1048576
            shutdownTimeout: 2.5
            """
        try self.withFile("agent.yaml", yaml) { path in
            let configuration = try AgentConfigurationFile.load(path: path)
            #expect(configuration.stateDirectory.hasSuffix("/state"))
            #expect(configuration.client.proxies == [Endpoint(host: "127.0.0.1", port: 46801), Endpoint(host: "127.0.0.1", port: 46802)])
            #expect(configuration.sources.count == 1)
            #expect(configuration.sources[0].attributes == ["env": "prod"])
            #expect(configuration.sources[0].startAt == .end)
            #expect(configuration.sources[0].maxLineLength == 4096)
            #expect(configuration.sources[0].overlong == .skip)
            #expect(configuration.maxUnackedBytes == 1 << 20)
            #expect(configuration.shutdownTimeout == .milliseconds(2500))
        }
    }

    @Test func theManagersCacheIsKeptInTheStateDirectoryUnlessConfigured() throws {
        let yaml = """
            stateDirectory: state
            manager: {url: "http://127.0.0.1:8083/list"}
            sources: [{paths: ["logs/*.log"], group: g, stream: s}]
            """
        try self.withFile("agent.yaml", yaml) { path in
            let directory = (path as NSString).deletingLastPathComponent
            let configuration = try AgentConfigurationFile.load(path: path, environment: [:])
            #expect(configuration.client.manager?.cacheFile == directory + "/state/proxy-cache.json")
            let off = try AgentConfigurationFile.load(path: path, environment: ["INLONG_MANAGER_CACHE_FILE": ""])
            #expect(off.client.manager?.cacheFile == nil)
        }
    }

    @Test func anEnvironmentTypoIsRefused() throws {
        let yaml = "stateDirectory: s\nproxies: [\"127.0.0.1:1\"]\nsources: [{paths: [a], group: g, stream: s}]"
        try self.withFile("agent.yaml", yaml) { path in
            #expect(throws: AgentConfigurationError.self) {
                _ = try AgentConfigurationFile.load(path: path, environment: ["INLONG_SHUTDOWN_TIMOUT": "5"])
            }
            do {
                _ = try AgentConfigurationFile.load(path: path, environment: ["INLONG_SHUTDOWN_TIMOUT": "5"])
            } catch {
                #expect("\(error)".contains("unknown variable 'INLONG_SHUTDOWN_TIMOUT' (did you mean 'INLONG_SHUTDOWN_TIMEOUT'?)"), "\(error)")
            }
            let configuration = try AgentConfigurationFile.load(path: path, environment: ["INLONG_SHUTDOWN_TIMEOUT": "5", "INLONG_EXECUTABLE": "x"])
            #expect(configuration.shutdownTimeout == .seconds(5))
        }
    }

    @Test func durationsTakeSecondsOrAUnit() throws {
        let yaml = """
            stateDirectory: s
            proxies: ["127.0.0.1:1"]
            shutdownTimeout: 30s
            scanInterval: 250ms
            releaseAfter: 2
            batching: {linger: 5ms}
            sources: [{paths: [a], group: g, stream: s}]
            """
        try self.withFile("agent.yaml", yaml) { path in
            let configuration = try AgentConfigurationFile.load(path: path, environment: ["INLONG_RETRY_DELIVERY_TIMEOUT": "1m"])
            #expect(configuration.shutdownTimeout == .seconds(30))
            #expect(configuration.scanInterval == .milliseconds(250))
            #expect(configuration.releaseAfter == .seconds(2))
            #expect(configuration.client.batching.linger == .milliseconds(5))
            #expect(configuration.client.retry.deliveryTimeout == .seconds(60))
        }
    }

    @Test func aJSONFileIsReadToo() throws {
        let json = #"{"stateDirectory": "/tmp/s", "manager": {"url": "http://127.0.0.1:8083/x", "auth": "id:key"}, "sources": [{"paths": ["/a/*.log"], "group": "g1", "stream": "s"}]}"#
        try self.withFile("agent.json", json) { path in
            let configuration = try AgentConfigurationFile.load(path: path)
            #expect(configuration.client.manager?.url == "http://127.0.0.1:8083/x")
            #expect(configuration.client.manager?.groups == ["g1"])
            #expect(configuration.client.manager?.credentials?.secretID == "id")
            #expect(configuration.stateDirectory == "/tmp/s")
        }
    }

    @Test(arguments: [
        ("stateDirectory: s\nsources: []\nproxies: [\"127.0.0.1:1\"]", "no sources"),
        ("stateDirectory: s\nsources: [{paths: [a], group: g, stream: s}]", "give proxies"),
        ("stateDirectory: s\nproxies: [\"nohost\"]\nsources: [{paths: [a], group: g, stream: s}]", "not host:port"),
        ("stateDirectory: s\nproxies: [\"127.0.0.1:1\"]\nsources: [{paths: [a], group: g, stream: s, startAt: middle}]", "sources[0].startAt cannot be 'middle'"),
        ("stateDirectory: s\nproxies: [\"127.0.0.1:1\"]\nmaxUnackedBytes: 0\nsources: [{paths: [a], group: g, stream: s}]", "must be positive"),
        // Values of the wrong kind are errors, not silently the defaults.
        ("stateDirectory: s\nproxies: [\"127.0.0.1:1\"]\nmaxUnackedBytes: 256MiB\nsources: [{paths: [a], group: g, stream: s}]", "maxUnackedBytes takes a whole number"),
        ("stateDirectory: s\nproxies: [\"127.0.0.1:1\"]\nmaxOpenFiles: 8.5\nsources: [{paths: [a], group: g, stream: s}]", "maxOpenFiles takes a whole number"),
        ("stateDirectory: s\nproxies: [\"127.0.0.1:1\"]\nshutdownTimeout: soon\nsources: [{paths: [a], group: g, stream: s}]", "shutdownTimeout takes seconds or a duration such as 250ms"),
        ("stateDirectory: s\nproxies: [\"127.0.0.1:1\"]\nbatching: {linger: soon}\nsources: [{paths: [a], group: g, stream: s}]", "batching.linger takes seconds or a duration such as 250ms"),
        ("stateDirectory: s\nproxies: [\"127.0.0.1:1\"]\nshutdownTimeout: 1e300\nsources: [{paths: [a], group: g, stream: s}]", "shutdownTimeout takes seconds or a duration"),
        (": not yaml [", "not a valid agent configuration"),
        // Typos are refused, with the nearest known key, wherever they are.
        ("stateDirectory: s\nproxies: [\"127.0.0.1:1\"]\nshutdownTimout: 5\nsources: [{paths: [a], group: g, stream: s}]", "unknown key 'shutdownTimout' (did you mean 'shutdownTimeout'?)"),
        ("stateDirectory: s\nproxies: [\"127.0.0.1:1\"]\nbatching: {lingr: 0.5}\nsources: [{paths: [a], group: g, stream: s}]", "unknown key 'batching.lingr' (did you mean 'batching.linger'?)"),
        ("stateDirectory: s\nproxies: [\"127.0.0.1:1\"]\nsources: [{paths: [a], group: g, stream: s, atributes: {a: b}}]", "unknown key 'sources[0].atributes' (did you mean 'sources[0].attributes'?)"),
        ("stateDirectory: s\nproxies: [\"127.0.0.1:1\"]\nsources: [{group: g, stream: s}]", "sources[0].paths is missing"),
    ])
    func aBadFileIsAClearError(text: String, expected: String) throws {
        try self.withFile("agent.yaml", text) { path in
            do {
                _ = try AgentConfigurationFile.load(path: path)
                Issue.record("accepted: \(text)")
            } catch {
                #expect("\(error)".contains(expected), "\(error)")
            }
        }
    }
}

/// The agent's settings through swift-configuration: `INLONG_*` variables over the file, the sources from the
/// file alone.
@Suite struct AgentConfigurationEnvironmentTests {

    @Test func environmentVariablesOverrideTheFileAndCarryTheSecret() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("inlong-config-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/agent.yaml"
        let yaml = """
            stateDirectory: state
            manager: {url: "http://127.0.0.1:8083/list", cacheFile: "cache/proxies.json"}
            shutdownTimeout: 2
            maxOpenFiles: 8
            batching: {linger: 0.25}
            sources:
              - {paths: ["logs/*.log"], group: g1, stream: s}
              - {paths: ["/abs/*.log"], group: g2, stream: s}
            """
        #expect(FileManager.default.createFile(atPath: path, contents: Data(yaml.utf8)))
        let fromFile = try AgentConfigurationFile.load(path: path, environment: [:])
        #expect(fromFile.stateDirectory == directory + "/state")
        #expect(fromFile.sources.map(\.paths) == [[directory + "/logs/*.log"], ["/abs/*.log"]])
        #expect(fromFile.client.manager?.groups == ["g1", "g2"])
        #expect(fromFile.client.manager?.credentials == nil)
        #expect(fromFile.client.manager?.cacheFile == directory + "/cache/proxies.json")
        #expect(fromFile.client.batching.linger == .milliseconds(250))
        #expect(fromFile.shutdownTimeout == .seconds(2))
        #expect(fromFile.maxOpenFiles == 8)

        let overridden = try AgentConfigurationFile.load(path: path, environment: [
            "INLONG_MANAGER_AUTH": "id:key",
            "INLONG_STATE_DIRECTORY": "/var/lib/agent",
            "INLONG_SHUTDOWN_TIMEOUT": "7.5",
            "INLONG_MAX_OPEN_FILES": "3",
        ])
        #expect(overridden.client.manager?.credentials?.secretID == "id")
        #expect(overridden.client.manager?.credentials?.secretKey == "key")
        #expect(overridden.stateDirectory == "/var/lib/agent")
        #expect(overridden.shutdownTimeout == .milliseconds(7500))
        #expect(overridden.maxOpenFiles == 3)
        #expect(overridden.sources.count == 2)

        #expect(throws: AgentConfigurationError.self) {
            _ = try AgentConfigurationFile.load(path: path, environment: ["INLONG_MAX_OPEN_FILES": "0"])
        }
        #expect(throws: AgentConfigurationError.self) {
            _ = try AgentConfigurationFile.load(path: path, environment: ["INLONG_MANAGER_AUTH": "nocolon"])
        }
        #expect(throws: AgentConfigurationError.self) {
            _ = try AgentConfigurationFile.load(path: path, environment: ["INLONG_MAX_OPEN_FILES": "abc"])
        }
    }
}

/// A source's record settings in the configuration file: multiline, filters, files, origin, and their errors.
@Suite struct AgentRecordConfigurationTests {
    private func withFile<Result>(_ name: String, _ text: String, _ body: (String) throws -> Result) throws -> Result {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("inlong-config-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/" + name
        #expect(FileManager.default.createFile(atPath: path, contents: Data(text.utf8)))
        return try body(path)
    }

    @Test func multilineFiltersAndOriginAreReadPerSource() throws {
        let yaml = #"""
            stateDirectory: state
            proxies: ["127.0.0.1:46801"]
            sources:
              - paths: ["/var/log/*/app.log"]
                group: g
                stream: s
                multiline: {pattern: '^\d{4}-', negate: true, match: after, maxLines: 200, maxBytes: 65536, timeout: 2.5}
                include: ['ERROR', 'WARN']
                exclude: ['^DEBUG']
                excludeFiles: ['*.gz', 'old/*']
                ignoreOlder: 86400
                origin: {fileName: file, host: host, offset: offset, pathPattern: '/var/log/(?<app>[^/]+)/'}
            """#
        try self.withFile("agent.yaml", yaml) { path in
            let source = try AgentConfigurationFile.load(path: path, environment: [:]).sources[0]
            #expect(source.multiline?.pattern == "^\\d{4}-")
            #expect(source.multiline?.negate == true)
            #expect(source.multiline?.match == .after)
            #expect(source.multiline?.maxLines == 200)
            #expect(source.multiline?.maxBytes == 65536)
            #expect(source.multiline?.timeout == .milliseconds(2500))
            #expect(source.include == ["ERROR", "WARN"])
            #expect(source.exclude == ["^DEBUG"])
            #expect(source.excludeFiles == ["*.gz", "old/*"])
            #expect(source.ignoreOlder == .seconds(86400))
            #expect(source.origin.fileName == "file")
            #expect(source.origin.offset == "offset")
            #expect(source.origin.pathPattern == "/var/log/(?<app>[^/]+)/")
        }
    }

    @Test func aBadPatternIsATypedErrorNamingIt() throws {
        for (key, value) in [("multiline", "{pattern: '(unclosed'}"), ("include", "['a{2,1}']"), ("exclude", "['[z-a]']"), ("origin", "{pathPattern: '(?<x>'}")] {
            let yaml = """
                stateDirectory: state
                proxies: ["127.0.0.1:46801"]
                sources: [{paths: ["a.log"], group: g, stream: s, \(key): \(value)}]
                """
            try self.withFile("agent.yaml", yaml) { path in
                do {
                    _ = try AgentConfigurationFile.load(path: path, environment: [:])
                    Issue.record("\(key): \(value) was taken")
                } catch let error as AgentConfigurationError {
                    #expect(error.code == .invalidPattern, "\(key)")
                    #expect(error.pattern != nil && value.contains(error.pattern!), "\(key)")
                    #expect(error.description.contains("g/s"), "\(key)")
                }
            }
        }
    }

    @Test func badRecordSettingsAreRefused() throws {
        for setting in [
            "multiline: {pattern: x, maxLines: 0}", "multiline: {pattern: x, match: middle}", "multiline: {pattern: x, timeout: 0}",
            "multiline: {pattern: x, colour: red}", "ignoreOlder: -1", "origin: {host: groupId}", "origin: {pathPattern: '(?<dt>.*)'}",
        ] {
            let yaml = """
                stateDirectory: state
                proxies: ["127.0.0.1:46801"]
                sources: [{paths: ["a.log"], group: g, stream: s, \(setting)}]
                """
            try self.withFile("agent.yaml", yaml) { path in
                #expect(throws: AgentConfigurationError.self, "\(setting)") { _ = try AgentConfigurationFile.load(path: path, environment: [:]) }
            }
        }
    }

    @Test func namesAndCloseInactiveAreReadAndTheirErrorsNameTheKey() throws {
        let yaml = """
            stateDirectory: state
            proxies: ["127.0.0.1:46801"]
            sources:
              - {paths: ["a.log"], group: g, stream: s, name: app, closeInactive: 300}
              - {paths: ["b.log"], group: g, stream: s}
            listeners:
              - {port: 5514, group: g, stream: syslog, name: syslog-in}
            """
        try self.withFile("agent.yaml", yaml) { path in
            let configuration = try AgentConfigurationFile.load(path: path, environment: [:])
            #expect(configuration.sources[0].name == "app")
            #expect(configuration.sources[0].metricsName == "app")
            #expect(configuration.sources[0].closeInactive == .seconds(300))
            #expect(configuration.sources[1].closeInactive == nil)
            #expect(configuration.sources[1].metricsName == (path as NSString).deletingLastPathComponent + "/b.log")
            #expect(configuration.listeners[0].metricsName == "syslog-in")
        }
        for (setting, key) in [
            ("sources: [{paths: [a.log], group: g, stream: s}, {paths: [b.log], group: g, stream: s, closeInactive: 0}]", "sources[1].closeInactive"),
            ("sources: [{paths: [a.log], group: g, stream: s, closeInactive: -2}]", "sources[0].closeInactive"),
            ("sources: [{paths: [a.log], group: g, stream: s, name: x}, {paths: [b.log], group: g, stream: s, name: x}]", "sources[1].name"),
            ("sources: [{paths: [a.log], group: g, stream: s, name: x}]\nlisteners: [{port: 1, group: g, stream: s, name: x}]", "listeners[0].name"),
            ("sources: [{paths: [a.log], group: g, stream: s, name: ''}]", "sources[0].name"),
        ] {
            let yaml = """
                stateDirectory: state
                proxies: ["127.0.0.1:46801"]
                \(setting)
                """
            try self.withFile("agent.yaml", yaml) { path in
                do {
                    _ = try AgentConfigurationFile.load(path: path, environment: [:])
                    Issue.record("\(setting) was taken")
                } catch let error as AgentConfigurationError {
                    #expect(error.code == .invalidSetting, "\(setting)")
                    #expect(error.key == key, "\(setting): \(error)")
                    #expect(error.description.contains(key), "\(setting): \(error)")
                }
            }
        }
    }

    @Test func rateLimitsAreReadPerSourceAndListenerAndTheirErrorsNameTheKey() throws {
        let yaml = """
            stateDirectory: state
            proxies: ["127.0.0.1:46801"]
            sources:
              - {paths: ["a.log"], group: g, stream: s, rateLimit: {bytesPerSecond: 1048576, burstBytes: 65536, linesPerSecond: 1000}}
            listeners:
              - {port: 5514, group: g, stream: syslog, rateLimit: {linesPerSecond: 500}}
            """
        try self.withFile("agent.yaml", yaml) { path in
            let configuration = try AgentConfigurationFile.load(path: path, environment: [:])
            var expected = AgentConfiguration.RateLimit(bytesPerSecond: 1 << 20, linesPerSecond: 1000)
            expected.burstBytes = 65536
            #expect(configuration.sources[0].rateLimit == expected)
            #expect(configuration.listeners[0].rateLimit == AgentConfiguration.RateLimit(linesPerSecond: 500))
        }
        for (setting, key) in [
            ("sources: [{paths: [a.log], group: g, stream: s, rateLimit: {bytesPerSecond: 0}}]", "sources[0].rateLimit.bytesPerSecond"),
            ("sources: [{paths: [a.log], group: g, stream: s, rateLimit: {burstLines: 10}}]", "sources[0].rateLimit"),
            ("sources: [{paths: [a.log], group: g, stream: s, rateLimit: {bytesPerSecond: 10, burstLines: 10}}]", "sources[0].rateLimit.burstLines"),
            ("listeners: [{port: 1, group: g, stream: s}, {port: 2, group: g, stream: s, rateLimit: {linesPerSecond: -5}}]", "listeners[1].rateLimit.linesPerSecond"),
        ] {
            let yaml = """
                stateDirectory: state
                proxies: ["127.0.0.1:46801"]
                \(setting)
                """
            try self.withFile("agent.yaml", yaml) { path in
                do {
                    _ = try AgentConfigurationFile.load(path: path, environment: [:])
                    Issue.record("\(setting) was taken")
                } catch let error as AgentConfigurationError {
                    #expect(error.key == key, "\(setting): \(error)")
                    #expect(error.description.contains(key), "\(setting): \(error)")
                }
            }
        }
        // A typo in a rate limit's keys is refused, named.
        let typo = """
            stateDirectory: state
            proxies: ["127.0.0.1:46801"]
            sources: [{paths: [a.log], group: g, stream: s, rateLimit: {bytesPerSec: 10}}]
            """
        _ = try self.withFile("agent.yaml", typo) { path in
            #expect(throws: AgentConfigurationError.self) { _ = try AgentConfigurationFile.load(path: path, environment: [:]) }
        }
    }

    @Test func originAttributesComeFromThePathAndTheHost() {
        var source = AgentConfiguration.FileSource(paths: ["/var/log/*/*.log"], group: "g", stream: "s")
        source.attributes = ["env": "prod"]
        source.origin.fileName = "file"
        source.origin.host = "host"
        source.origin.pathPattern = "/var/log/(?<app>[^/]+)/(?<kind>[a-z]+)"
        let attributes = source.attributes(path: "/var/log/pay=1&2/access.log", host: "h1")
        #expect(attributes.map(\.0) == ["env", "file", "app", "kind", "host"])
        #expect(attributes.map(\.1) == ["prod", "access.log", "pay%3D1%262", "access", "h1"])
    }

    @Test func excludedFilesAndOldFiles() {
        var source = AgentConfiguration.FileSource(paths: ["/var/log/*"], group: "g", stream: "s")
        source.excludeFiles = ["*.gz", "/var/log/secret/*"]
        #expect(source.excludes("/var/log/a.log.gz"))
        #expect(source.excludes("/var/log/secret/x.log"))
        #expect(!source.excludes("/var/log/a.log"))
        #expect(source.start(.beginning, modified: .seconds(1000), now: .seconds(5000)) == .beginning)
        source.ignoreOlder = .seconds(3600)
        #expect(source.start(.beginning, modified: .seconds(1000), now: .seconds(4000)) == .beginning)
        #expect(source.start(.beginning, modified: .seconds(1000), now: .seconds(4601)) == .end)
        // A file with a checkpoint resumes there, however old.
        #expect(source.start(.at(10), modified: .seconds(0), now: .seconds(100_000)) == .at(10))
    }
}
