import Configuration
import Foundation
import InLongDataProxy
import InLongDataProxyReceiver
import InLongTestUtils
import InLongTransport
import NIOCore
import NIOSSL
import Testing

/// The HTTP transport over HTTPS against the receiver's HTTP API served with a certificate of the test CA: the CA
/// given by settings (`proxy.tls.caFile`), records arrive byte for byte; a server the client does not trust gets
/// nothing, and the client says which address failed and why.
@Suite(.timeLimit(.minutes(3))) struct DataProxyClientHTTPSTests {
    static func receiverConfiguration() throws -> DataProxyReceiver.Configuration {
        var configuration = DataProxyReceiver.Configuration.loopback
        configuration.httpPort = 0
        let certificate = try NIOSSLCertificate(bytes: Array(TestCertificates.serverCertificatePEM.utf8), format: .pem)
        let key = try NIOSSLPrivateKey(bytes: Array(TestCertificates.serverKeyPEM.utf8), format: .pem)
        configuration.httpTLSConfiguration = .makeServerConfiguration(certificateChain: [.certificate(certificate)], privateKey: .privateKey(key))
        return configuration
    }

    /// A client configuration read from settings as a file or the environment give them.
    static func configuration(port: Int, tls: [AbsoluteConfigKey: ConfigValue]) throws -> DataProxyClient.Configuration {
        var values = tls
        values["proxies"] = .init(.stringArray(["127.0.0.1:\(port)"]), isSecret: false)
        values["proxy.protocol"] = .init(.string("http"), isSecret: false)
        let settings = try DataProxyClient.Configuration(config: ConfigReader(provider: InMemoryProvider(values: values)))
        var configuration = clientConfiguration(ports: [port])
        configuration.transport = settings.transport
        configuration.http = settings.http
        configuration.batching.maxRecords = 100
        return configuration
    }

    @Test func recordsOverHTTPSArriveByteForByte() async throws {
        try await withTemporaryDirectory { directory in
            let caFile = directory.appendingPathComponent("ca.pem").path
            try TestCertificates.caPEM.write(toFile: caFile, atomically: true, encoding: .utf8)
            try await withReceiver(try Self.receiverConfiguration()) { receiver in
                let port = try await receiver.httpLocalAddress().port!
                let configuration = try Self.configuration(port: port, tls: ["proxy.tls.caFile": .init(.string(caFile), isSecret: false)])
                #expect(configuration.http.useTLS)
                try await withDataProxyClient(configuration: configuration) { client in
                    let reports = ReportCollector(client)
                    // Bytes the form must escape, spaces, UTF-8, and a record of every byte but the separator.
                    var sent = (0..<2_000).map { "r\($0) a+b&c=d%e é" }
                    sent.append(String(decoding: (UInt8(0)...UInt8(127)).filter { $0 != UInt8(ascii: "\n") }, as: UTF8.self))
                    for body in sent { try await client.send(body, group: "g", stream: "s") }
                    #expect(await client.flush(timeout: .seconds(120)))
                    // Every record ended once, acked. (The counters are read once they caught up with the reports: a
                    // completion counted on another thread may trail the flush.)
                    #expect(await eventually { reports.acked == sent.count })
                    #expect(reports.failed == 0 && reports.duplicateIDs == 0)
                    #expect(reports.seenIDs == Set(0..<UInt64(sent.count)))
                    #expect(await eventually { client.statistics().acked == sent.count })
                    #expect(receiver.memorySink.records.map { String(buffer: $0.body) }.sorted() == sent.sorted())
                    reports.stop()
                }
            }
        }
    }

    @Test func anUntrustedServerFailsNamingTheAddressAndTheTLSCause() async throws {
        try await withReceiver(try Self.receiverConfiguration()) { receiver in
            let port = try await receiver.httpLocalAddress().port!
            // HTTPS with the system's roots, which do not hold the test CA.
            var configuration = try Self.configuration(port: port, tls: ["proxy.tls.enabled": .init(.bool(true), isSecret: false)])
            // Long enough for attempts to be made and fail on a loaded machine (a debug TLS handshake is slow), so
            // that each record's failure carries the last one.
            configuration.retry.deliveryTimeout = .seconds(30)
            let proxy = Endpoint(host: "127.0.0.1", port: port)
            let expected = "cannot connect to \(proxy): TLS handshake failed: certificate verify failed"
            try await withDataProxyClient(configuration: configuration) { client in
                let reports = ReportCollector(client)
                let sent = try await sendAll(client, count: 50)
                #expect(await eventually(timeout: .seconds(120)) { client.statistics().proxyErrors[proxy] != nil })
                #expect(client.statistics().proxyErrors[proxy] == expected)
                #expect(await eventually(timeout: .seconds(120)) { reports.failed == sent.count })
                #expect(reports.acked == 0)
                #expect(reports.duplicateIDs == 0)
                // Each failure names the address and the TLS cause. (Whether a record counts as sent depends on
                // whether an attempt was under way at the deadline; the receiver below shows none arrived.)
                #expect(reports.failures.allSatisfy { $0.code == .deliveryTimeout && $0.detail.contains(expected) }, "\(reports.failures.first.map { "\($0)" } ?? "")")
                #expect(reports.failures.allSatisfy { $0.lastFailure == .connectionLost })
                reports.stop()
            }
            #expect(receiver.memorySink.recordCount == 0)
        }
    }

    @Test func badProxyTLSSettingsAreTypedErrorsNamingTheSetting() {
        func error(_ values: [AbsoluteConfigKey: ConfigValue], protocol name: String = "http") -> String? {
            var all = values
            all["proxies"] = .init(.stringArray(["127.0.0.1:1"]), isSecret: false)
            all["proxy.protocol"] = .init(.string(name), isSecret: false)
            do {
                _ = try DataProxyClient.Configuration(config: ConfigReader(provider: InMemoryProvider(values: all)))
                return nil
            } catch {
                return error.code == .invalidConfiguration ? error.detail : "\(error.code)"
            }
        }
        let missing = "/nonexistent/ca.pem"
        #expect(error(["proxy.tls.caFile": .init(.string(missing), isSecret: false)])?.hasPrefix("proxy.tls.caFile: cannot read PEM certificates from \(missing)") == true)
        #expect(error(["proxy.tls.verify": .init(.string("ful"), isSecret: false)]) == "proxy.tls.verify takes full, noHostname or none, not 'ful'")
        #expect(error(["proxy.tls.keyFile": .init(.string(missing), isSecret: false)]) == "proxy.tls.certificateFile and proxy.tls.keyFile go together: give both or neither")
        #expect(error(["proxy.tls.enabled": .init(.bool(true), isSecret: false)], protocol: "tcp") == "proxy.tls settings need proxy.protocol: http (DataProxy's TCP port has no TLS)")
        #expect(
            error(["proxy.tls.enabled": .init(.bool(false), isSecret: false), "proxy.tls.verify": .init(.string("full"), isSecret: false)])
                == "proxy.tls.enabled is false, yet other proxy.tls settings are given"
        )
        #expect(error(["proxy.tls.enabled": .init(.bool(true), isSecret: false)]) == nil)
    }
}
