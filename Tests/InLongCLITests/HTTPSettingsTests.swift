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

    /// HTTPS to the proxies: `--https` and the `--proxy-*` TLS flags (each implying HTTPS and the HTTP transport),
    /// `INLONG_PROXY_TLS_*`, and the file's `proxy.tls.*` give the same settings, shown by `--check`.
    @Test func httpsSettingsComeFromFlagsTheEnvironmentAndAFile() async throws {
        let https = try await readClientConfiguration(file: nil, target: try TargetOptions.parse(["--https", "--proxy", "127.0.0.1:1"]), group: "g", environment: [:])
        #expect(https.transport == .http && https.http.useTLS)
        #expect(effectiveSettings(https).contains("proxy.tls: verify full, trusted roots system, client certificate none"))
        let verify = try await readClientConfiguration(file: nil, target: try TargetOptions.parse(["--proxy-verify", "noHostname", "--proxy", "127.0.0.1:1"]), group: "g", environment: [:])
        #expect(verify.transport == .http && verify.http.useTLS)
        #expect(effectiveSettings(verify).contains("proxy.tls: verify noHostname, trusted roots system, client certificate none"))
        let environment = try await readClientConfiguration(
            file: nil,
            target: try TargetOptions.parse(["--http", "--proxy", "127.0.0.1:1"]),
            group: "g",
            environment: ["INLONG_PROXY_TLS_ENABLED": "true"]
        )
        #expect(environment.http.useTLS)
        let plain = try await readClientConfiguration(file: nil, target: try TargetOptions.parse(["--http", "--proxy", "127.0.0.1:1"]), group: "g", environment: [:])
        #expect(!plain.http.useTLS)
        let plainTLS = effectiveSettings(plain).filter { $0.hasPrefix("proxy.tls") }
        #expect(plainTLS.isEmpty)
        try await withSettingsFile("https.yaml", "proxies: [\"127.0.0.1:1\"]\nproxy:\n  protocol: http\n  tls:\n    verify: none\n") { path in
            let configuration = try await readClientConfiguration(file: path, target: try TargetOptions.parse([]), group: "g", environment: [:])
            #expect(configuration.http.useTLS)
            #expect(effectiveSettings(configuration).contains("proxy.tls: verify none, trusted roots system, client certificate none"))
        }
        let error = await #expect(throws: ValidationError.self) {
            try await readClientConfiguration(file: nil, target: try TargetOptions.parse(["--proxy-ca", "/nonexistent/ca.pem", "--proxy", "127.0.0.1:1"]), group: "g", environment: [:])
        }
        #expect(error?.message.hasPrefix("proxy.tls.caFile: cannot read PEM certificates from /nonexistent/ca.pem") == true)
    }

    @Test func theReceiverServesHTTPSWithACertificateAndKey() async throws {
        let missing = await #expect(throws: ValidationError.self) {
            try await ReceiveCommand.parse(["--count-only", "--http-port", "0", "--http-cert", "/nonexistent/cert.pem", "--http-key", "/nonexistent/key.pem"])
                .receiverConfiguration(environment: [:])
        }
        #expect(missing?.message.hasPrefix("--http-cert: cannot read PEM certificates from /nonexistent/cert.pem") == true)
        #expect(throws: (any Error).self) { try ReceiveCommand.parse(["--count-only", "--http-port", "0", "--http-cert", "/x.pem"]) }
    }
}
