import ArgumentParser
import Foundation
import InLongDataProxy
import InLongDataProxyReceiver
import InLongTransport
import InLongWire
import Logging
import Testing

@testable import InLongCLI

/// Client settings from a file, the environment and flags, in that order of precedence (flags win).
/// A temporary settings file named `…-name` holding `text`, removed after `body`.
func withSettingsFile<Result>(_ name: String, _ text: String, _ body: (String) async throws -> Result) async throws -> Result {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("inlong-settings-\(UUID().uuidString)-\(name)").path
    #expect(FileManager.default.createFile(atPath: path, contents: Data(text.utf8)))
    defer { try? FileManager.default.removeItem(atPath: path) }
    return try await body(path)
}

@Suite struct ClientSettingsTests {
    private func withFile<Result>(_ name: String, _ text: String, _ body: (String) async throws -> Result) async throws -> Result {
        try await withSettingsFile(name, text, body)
    }

    private func target(_ arguments: [String] = []) throws -> TargetOptions {
        try TargetOptions.parse(arguments)
    }

    @Test func aYAMLFileGivesTheClientsSettings() async throws {
        let yaml = """
            proxies: ["127.0.0.1:46801", "127.0.0.1:46802"]
            batching:
              linger: 0.02
              maxRecords: 100
              compression: false
            buffer:
              maxBytes: 1048576
              whenFull: fail
            retry:
              deliveryTimeout: 30
            """
        let configuration = try await self.withFile("client.yaml", yaml) { path in
            try await readClientConfiguration(file: path, target: try self.target(), group: "g", environment: [:])
        }
        #expect(configuration.proxies == [Endpoint(host: "127.0.0.1", port: 46801), Endpoint(host: "127.0.0.1", port: 46802)])
        #expect(configuration.batching.linger == .milliseconds(20))
        #expect(configuration.batching.maxRecords == 100)
        #expect(configuration.batching.compressionThreshold == nil)
        #expect(configuration.buffer.maxBytes == 1 << 20)
        #expect(configuration.buffer.whenFull == .fail)
        #expect(configuration.retry.deliveryTimeout == .seconds(30))
    }

    @Test func theEnvironmentGivesTheManagerAndItsSecret() async throws {
        let environment = [
            "INLONG_MANAGER_URL": "http://127.0.0.1:8083/inlong/manager/openapi/dataproxy/getIpList",
            "INLONG_MANAGER_AUTH": "id:key",
            "INLONG_MANAGER_TENANT": "public",
        ]
        let configuration = try await readClientConfiguration(file: nil, target: try self.target(), group: "g", environment: environment)
        #expect(configuration.manager?.url == "http://127.0.0.1:8083/inlong/manager/openapi/dataproxy/getIpList")
        #expect(configuration.manager?.credentials?.secretID == "id")
        #expect(configuration.manager?.credentials?.secretKey == "key")
        #expect(configuration.manager?.tenant == "public")
        #expect(configuration.manager?.groups == ["g"])
    }

    @Test func flagsOverrideTheEnvironmentWhichOverridesTheFile() async throws {
        let json = #"{"proxies": ["127.0.0.1:1"], "batching": {"maxRecords": 7}, "connection": {"maxProxies": 3}}"#
        try await self.withFile("client.json", json) { path in
            let environment = ["INLONG_PROXIES": "127.0.0.1:2", "INLONG_CONNECTION_MAX_PROXIES": "5"]
            let fromEnvironment = try await readClientConfiguration(file: path, target: try self.target(), group: "g", environment: environment)
            #expect(fromEnvironment.proxies == [Endpoint(host: "127.0.0.1", port: 2)])
            #expect(fromEnvironment.connection.maxProxies == 5)
            #expect(fromEnvironment.batching.maxRecords == 7)
            let fromFlags = try await readClientConfiguration(
                file: path,
                target: try self.target(["--proxy", "127.0.0.1:3"]),
                group: "g",
                environment: environment
            )
            #expect(fromFlags.proxies == [Endpoint(host: "127.0.0.1", port: 3)])
            #expect(fromFlags.connection.maxProxies == 5)
        }
    }

    @Test func missingOrBadSettingsAreUsageErrors() async throws {
        await #expect(throws: ValidationError.self) {
            try await readClientConfiguration(file: nil, target: try self.target(), group: "g", environment: [:])
        }
        await #expect(throws: ValidationError.self) {
            try await readClientConfiguration(file: nil, target: try self.target(), group: "g", environment: ["INLONG_PROXIES": "nohost"])
        }
        await #expect(throws: ValidationError.self) {
            try await readClientConfiguration(file: "/nonexistent/client.yaml", target: try self.target(), group: "g", environment: [:])
        }
        await #expect(throws: ValidationError.self) {
            try await readClientConfiguration(
                file: nil,
                target: try self.target(),
                group: "g",
                environment: ["INLONG_PROXIES": "127.0.0.1:1", "INLONG_BUFFER_WHEN_FULL": "sometimes"]
            )
        }
        // A value of the wrong kind is an error naming the key, never the default in silence.
        for (key, value) in [("INLONG_BATCHING_LINGER", "soon"), ("INLONG_BUFFER_MAX_BYTES", "64MiB"), ("INLONG_BATCHING_COMPRESSION", "maybe")] {
            let error = await #expect(throws: ValidationError.self) {
                try await readClientConfiguration(file: nil, target: try self.target(), group: "g", environment: ["INLONG_PROXIES": "127.0.0.1:1", key: value])
            }
            #expect(error?.message.contains("takes") == true, "\(key): \(String(describing: error))")
        }
    }
}

/// Every configuration file refuses keys it does not know, naming the key and the nearest known one.
@Suite struct UnknownKeyTests {
    private func withFile<Result>(_ name: String, _ text: String, _ body: (String) async throws -> Result) async throws -> Result {
        try await withSettingsFile(name, text, body)
    }

    @Test(arguments: [
        ("client.yaml", "proxies: [\"127.0.0.1:1\"]\nbatching:\n  lingr: 0.5\n", "unknown key 'batching.lingr' (did you mean 'batching.linger'?)"),
        ("client.json", #"{"proxies": ["127.0.0.1:1"], "retry": {"deliveryTimout": 5}}"#, "unknown key 'retry.deliveryTimout' (did you mean 'retry.deliveryTimeout'?)"),
        ("client.yaml", "proxies: [\"127.0.0.1:1\"]\ncolour: blue\n", "unknown key 'colour'"),
    ])
    func aClientFileWithATypoIsRefused(name: String, text: String, expected: String) async throws {
        try await self.withFile(name, text) { path in
            let error = await #expect(throws: ValidationError.self) {
                try await readClientConfiguration(file: path, target: try TargetOptions.parse([]), group: "g", environment: [:])
            }
            #expect(error?.message.hasSuffix(expected) == true, "\(String(describing: error))")
            #expect(error?.message.contains(path) == true)
        }
    }

    @Test func aReceiverFileWithATypoIsRefused() async throws {
        try await self.withFile("receiver.yaml", "port: 0\nfaults:\n  ackDelai: 0.1\n") { path in
            let error = await #expect(throws: ValidationError.self) {
                try await ReceiveCommand.parse(["--config", path, "--count-only"]).receiverConfiguration(environment: [:])
            }
            #expect(error?.message.hasSuffix("unknown key 'faults.ackDelai' (did you mean 'faults.ackDelay'?)") == true, "\(String(describing: error))")
        }
    }

    @Test func anEnvironmentVariableOneLetterOffIsRefusedAndOthersAreLeftAlone() async throws {
        let target = try TargetOptions.parse(["--proxy", "127.0.0.1:1"])
        let error = await #expect(throws: ValidationError.self) {
            try await readClientConfiguration(file: nil, target: target, group: "g", environment: ["INLONG_BATCHING_LINGR": "0.5"])
        }
        #expect(error?.message == "unknown variable 'INLONG_BATCHING_LINGR' (did you mean 'INLONG_BATCHING_LINGER'?)")
        // Other tools' variables, far from every setting, are not ours to refuse.
        let configuration = try await readClientConfiguration(
            file: nil,
            target: target,
            group: "g",
            environment: ["INLONG_EXECUTABLE": "/usr/bin/inlong", "INLONG_BATCHING_LINGER": "250ms"]
        )
        #expect(configuration.batching.linger == .milliseconds(250))
        let receiver = await #expect(throws: ValidationError.self) {
            try await ReceiveCommand.parse(["--count-only"]).receiverConfiguration(environment: ["INLONG_RECEIVER_MAX_FRAM_SIZE": "1"])
        }
        #expect(receiver?.message.contains("'INLONG_RECEIVER_MAX_FRAME_SIZE'") == true, "\(String(describing: receiver))")
        #expect(SettingKeys.environmentName(of: "batching.maxRecords", prefix: "INLONG") == "INLONG_BATCHING_MAX_RECORDS")
    }

    @Test func everyKeyTheReadersTakeIsKnown() {
        let client: [String: Any] = [
            "sdkConfig": "x", "proxies": ["a:1"],
            "manager": ["url": "u", "groups": ["g"], "auth": "a:b", "tenant": "t", "cacheFile": "f", "refreshInterval": 1],
            "batching": ["linger": 1, "maxRecords": 1, "maxBytes": 1, "compression": true],
            "buffer": ["maxBytes": 1, "maxRecords": 1, "whenFull": "wait"],
            "retry": ["deliveryTimeout": 1],
            "connection": ["maxProxies": 1, "requestTimeout": 1, "heartbeatInterval": 1],
        ]
        #expect(DataProxyClient.Configuration.settingKeys.unknownKeys(in: client).isEmpty)
        let nested: [String: Any] = ["sources": [["paths": ["a"], "attributes": ["anything": "x"]], ["group": "g", "pahts": ["b"]]]]
        let keys = SettingKeys(["sources[].paths", "sources[].group", "sources[].attributes.*"])
        #expect(keys.unknownKeys(in: nested) == [.init(key: "sources[1].pahts", suggestion: "sources[1].paths")])
    }
}

/// `inlong receive`'s settings from a file and the environment, under its flags.
@Suite struct ReceiverSettingsTests {
    @Test func aFileTheEnvironmentAndFlagsMakeTheReceiversConfiguration() async throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("inlong-receiver-\(UUID().uuidString).yaml").path
        let yaml = """
            host: 127.0.0.1
            port: 47001
            knownGroups: [g1, g2]
            maxFrameSize: 65536
            manager:
              port: 8083
            faults:
              ackDelay: 0.25
              errorCode: 1
              errorRate: 0.5
            """
        #expect(FileManager.default.createFile(atPath: path, contents: Data(yaml.utf8)))
        defer { try? FileManager.default.removeItem(atPath: path) }
        let fromFile = try await ReceiveCommand.parse(["--config", path, "--count-only"]).receiverConfiguration(environment: [:])
        #expect(fromFile.port == 47001)
        #expect(fromFile.knownGroups == ["g1", "g2"])
        #expect(fromFile.maxFrameSize == 65536)
        #expect(fromFile.manager?.port == 8083)
        #expect(fromFile.faults.ackDelay == .milliseconds(250))
        #expect(fromFile.faults.errorCode == .sinkServiceUnready)
        #expect(fromFile.faults.errorRate == 0.5)
        let overridden = try await ReceiveCommand.parse(["--config", path, "--count-only", "--listen", "127.0.0.1:47003", "--drop-acks"])
            .receiverConfiguration(environment: ["INLONG_RECEIVER_PORT": "47002", "INLONG_RECEIVER_MAX_FRAME_SIZE": "131072"])
        #expect(overridden.port == 47003)
        #expect(overridden.maxFrameSize == 131072)
        #expect(overridden.faults.dropAcks)
        let defaults = try await ReceiveCommand.parse(["--count-only"]).receiverConfiguration(environment: [:])
        #expect(defaults.port == 46801)
        #expect(defaults.host == "127.0.0.1")
        await #expect(throws: ValidationError.self) {
            try await ReceiveCommand.parse(["--count-only"]).receiverConfiguration(environment: ["INLONG_RECEIVER_PORT": "70000"])
        }
        await #expect(throws: ValidationError.self) {
            try await ReceiveCommand.parse(["--count-only"]).receiverConfiguration(environment: ["INLONG_RECEIVER_MAX_CONNECTIONS": "many"])
        }
    }

    @Test func fsyncComesFromTheFlagTheEnvironmentOrTheFileAndNeedsAnOutputFile() async throws {
        #expect(try await ReceiveCommand.parse(["--out", "/tmp/x.jsonl", "--overwrite"]).receiverConfiguration(environment: [:]).fsync == false)
        let durable = try await ReceiveCommand.parse(["--out", "/tmp/x.jsonl", "--overwrite", "--fsync"]).receiverConfiguration(environment: [:])
        #expect(durable.fsync)
        #expect(durable.maxConcurrentRequests == 16)
        #expect(try await ReceiveCommand.parse(["--count-only"]).receiverConfiguration(environment: ["INLONG_RECEIVER_FSYNC": "true"]).fsync)
        #expect(ReceiveCommand.settings(try await ReceiveCommand.parse(["--fsync", "--out", "/tmp/x.jsonl", "--overwrite"]).receiverConfiguration(environment: [:])).contains("fsync: true"))
        #expect(throws: (any Error).self) { try ReceiveCommand.parse(["--fsync", "--count-only"]) }
        #expect(throws: (any Error).self) { try ReceiveCommand.parse(["--fsync", "--out", "-"]) }
    }
}

/// `inlong discover` reads the Manager as `send` does: flags over `INLONG_*` variables over `--config`.
@Suite struct DiscoverSettingsTests {
    @Test func theManagerAndItsSecretComeFromTheEnvironment() async throws {
        let command = try DiscoverCommand.parse(["--group", "g", "--log-level", "debug"])
        let manager = try await command.managerConfiguration(environment: [
            "INLONG_MANAGER_URL": "http://127.0.0.1:1/getIpList",
            "INLONG_MANAGER_AUTH": "id:key",
        ])
        #expect(manager.url == "http://127.0.0.1:1/getIpList")
        #expect(manager.credentials?.secretID == "id")
        #expect(manager.credentials?.secretKey == "key")
        #expect(manager.cacheFile == nil)
        #expect(command.logLevel == .debug)
    }

    @Test func theFlagWinsAndAMissingManagerIsAUsageError() async throws {
        let flagged = try DiscoverCommand.parse(["--group", "g", "--manager", "http://127.0.0.1:2/list"])
        let manager = try await flagged.managerConfiguration(environment: ["INLONG_MANAGER_URL": "http://127.0.0.1:1/list"])
        #expect(manager.url == "http://127.0.0.1:2/list")
        let bare = try DiscoverCommand.parse(["--group", "g"])
        await #expect(throws: ValidationError.self) { _ = try await bare.managerConfiguration(environment: [:]) }
        await #expect(throws: ValidationError.self) {
            _ = try await bare.managerConfiguration(environment: ["INLONG_PROXIES": "127.0.0.1:46801"])
        }
    }
}
