import ArgumentParser
import Foundation
import InLongDataProxy
import InLongDataProxyReceiver
import Testing

@testable import InLongCLI

/// The HTTP path's settings: `inlong send --http` and `proxy.protocol`, `inlong receive --http-port` and `httpPort`.
@Suite struct HTTPSettingsTests {
    @Test func theFlagTheEnvironmentAndAFileChooseTheTransport() async throws {
        let flagged = try await readClientConfiguration(file: nil, target: try TargetOptions.parse(["--http", "--proxy", "127.0.0.1:1"]), group: "g", environment: [:])
        #expect(flagged.transport == .http)
        #expect(effectiveSettings(flagged).contains("proxy.protocol: http"))
        let plain = try await readClientConfiguration(file: nil, target: try TargetOptions.parse(["--proxy", "127.0.0.1:1"]), group: "g", environment: [:])
        #expect(plain.transport == .tcp)
        let environment = try await readClientConfiguration(
            file: nil,
            target: try TargetOptions.parse(["--proxy", "127.0.0.1:1"]),
            group: "g",
            environment: ["INLONG_PROXY_PROTOCOL": "HTTP"]
        )
        #expect(environment.transport == .http)
        try await withSettingsFile("http.yaml", "proxies: [\"127.0.0.1:1\"]\nproxy:\n  protocol: http\n") { path in
            let configuration = try await readClientConfiguration(file: path, target: try TargetOptions.parse([]), group: "g", environment: [:])
            #expect(configuration.transport == .http)
        }
        let error = await #expect(throws: ValidationError.self) {
            try await readClientConfiguration(file: nil, target: try TargetOptions.parse(["--proxy", "127.0.0.1:1"]), group: "g", environment: ["INLONG_PROXY_PROTOCOL": "udp"])
        }
        #expect(error?.message == "proxy.protocol takes tcp or http, not 'udp'")
    }

    @Test func theReceiverServesHTTPWhenAsked() async throws {
        let configuration = try await ReceiveCommand.parse(["--count-only", "--http-port", "0"]).receiverConfiguration(environment: [:])
        #expect(configuration.httpPort == 0)
        #expect(ReceiveCommand.settings(configuration).contains("httpPort: 0"))
        let none = try await ReceiveCommand.parse(["--count-only"]).receiverConfiguration(environment: ["INLONG_RECEIVER_HTTP_PORT": "8080"])
        #expect(none.httpPort == 8080)
    }
}
