import InLongTestUtils
import InLongTransport
import InLongTransportTLS
import NIOCore
import NIOSSL
import Testing

/// TLS on both sides of the transport (``ChannelSetup``), with the test CA's certificate for 127.0.0.1.
@Suite(.timeLimit(.minutes(2))) struct TLSTests {
    private static func certificate(_ pem: String) throws -> NIOSSLCertificateSource {
        .certificate(try NIOSSLCertificate(bytes: Array(pem.utf8), format: .pem))
    }

    private static func key(_ pem: String) throws -> NIOSSLPrivateKeySource {
        .privateKey(try NIOSSLPrivateKey(bytes: Array(pem.utf8), format: .pem))
    }

    private static func serverTLS(requireClientCertificate: Bool = false) throws -> ChannelSetup {
        var tls = TLSConfiguration.makeServerConfiguration(
            certificateChain: [try self.certificate(TestCertificates.serverCertificatePEM)],
            privateKey: try self.key(TestCertificates.serverKeyPEM)
        )
        if requireClientCertificate {
            tls.certificateVerification = .noHostnameVerification
            tls.trustRoots = .certificates([try NIOSSLCertificate(bytes: Array(TestCertificates.clientCAPEM.utf8), format: .pem)])
        }
        return try .tlsServer(tls)
    }

    private static func clientTLS(trusting caPEM: String = TestCertificates.caPEM, withCertificate: Bool = false) throws -> ChannelSetup {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.trustRoots = .certificates([try NIOSSLCertificate(bytes: Array(caPEM.utf8), format: .pem)])
        if withCertificate {
            tls.certificateChain = [try self.certificate(TestCertificates.clientCertificatePEM)]
            tls.privateKey = try self.key(TestCertificates.clientKeyPEM)
        }
        return try .tlsClient(tls)
    }

    @Test func requestsAreAnsweredOverTLS() async throws {
        let serverSetup = try Self.serverTLS()
        try await withPersistentServer(configure: { $0.channelSetup = serverSetup }) { server, endpoint in
            let setup = try Self.clientTLS()
            try await withConnection(endpoints: [endpoint], configure: { $0.channelSetup = setup }) { connection in
                let echoed = try await connection.echoedConcurrently(200)
                #expect(echoed == 200)
                #expect(connection.statistics().connectFailures == 0)
            }
            #expect(server.statistics().requestsHandled == 200)
        }
    }

    @Test func anUntrustedServerIsAFailedConnectThatSaysWhyAndIsRetried() async throws {
        let serverSetup = try Self.serverTLS()
        try await withPersistentServer(configure: { $0.channelSetup = serverSetup }) { server, endpoint in
            // The client trusts another CA than the one that signed the server's certificate.
            let setup = try Self.clientTLS(trusting: TestCertificates.clientCAPEM)
            try await withConnection(endpoints: [endpoint], configure: { $0.channelSetup = setup }, waitUntilReady: false) { connection in
                let retried = await eventually { connection.statistics().connectFailures >= 2 }
                #expect(retried)
                let error = connection.statistics().lastConnectError ?? ""
                #expect(error.contains("TLS handshake failed: certificate verify failed"), "\(error)")
                #expect(error.contains("127.0.0.1:\(endpoint.port)"), "\(error)")
                #expect(connection.connectivityState != .ready)
            }
            #expect(server.statistics().requestsHandled == 0)
        }
    }

    @Test func aClientWithoutTLSIsNotServedAndATLSClientStillIs() async throws {
        let serverSetup = try Self.serverTLS()
        try await withPersistentServer(configure: { $0.channelSetup = serverSetup }) { server, endpoint in
            _ = try await withConnection(endpoints: [endpoint], configure: { $0.reconnect = false }) { connection in
                await #expect(throws: (any Error).self) {
                    try await connection.request(.request(1, "plain"), timeout: .seconds(30))
                }
            }
            let setup = try Self.clientTLS()
            try await withConnection(endpoints: [endpoint], configure: { $0.channelSetup = setup }) { connection in
                let answer = try await connection.request(.request(2, "tls"))
                #expect(answer.payload == "tls")
            }
            #expect(server.statistics().requestsHandled == 1)
        }
    }

    @Test func aTLSClientOfAPlainServerFailsToConnect() async throws {
        try await withPersistentServer { server, endpoint in
            let setup = try Self.clientTLS()
            try await withConnection(endpoints: [endpoint], configure: { $0.channelSetup = setup }, waitUntilReady: false) { connection in
                let failed = await eventually { connection.statistics().connectFailures >= 1 }
                #expect(failed)
                #expect(connection.statistics().lastConnectError?.contains("TLS handshake failed") == true)
                #expect(connection.connectivityState != .ready)
            }
            #expect(server.statistics().requestsHandled == 0)
        }
    }

    @Test func aServerThatRequiresClientCertificatesServesOnlyClientsWithOne() async throws {
        let serverSetup = try Self.serverTLS(requireClientCertificate: true)
        try await withPersistentServer(configure: { $0.channelSetup = serverSetup }) { server, endpoint in
            let anonymous = try Self.clientTLS()
            _ = try await withConnection(endpoints: [endpoint], configure: { $0.channelSetup = anonymous; $0.reconnect = false }, waitUntilReady: false) { connection in
                await #expect(throws: (any Error).self) {
                    try await connection.request(.request(1, "anonymous"), timeout: .seconds(30))
                }
            }
            let identified = try Self.clientTLS(withCertificate: true)
            try await withConnection(endpoints: [endpoint], configure: { $0.channelSetup = identified }) { connection in
                let answer = try await connection.request(.request(2, "identified"))
                #expect(answer.payload == "identified")
            }
            #expect(server.statistics().requestsHandled == 1)
        }
    }
}
