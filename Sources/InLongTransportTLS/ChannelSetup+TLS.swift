public import InLongTransport
public import NIOSSL
import NIOCore
import NIOTLS

extension ChannelSetup {
    /// TLS on a client's connections (``PersistentConnection/Configuration/channelSetup``, also for a
    /// ``PersistentConnectionPool``'s): a connection counts as connected once the handshake completed, and one
    /// that fails (an untrusted certificate, a peer that does not speak TLS) fails like a refused connect, with a
    /// ``TLSHandshakeError``.
    ///
    /// - Parameters:
    ///   - configuration: The TLS settings, e.g. `TLSConfiguration.makeClientConfiguration()` with
    ///     `trustRoots` and, for mutual TLS, `certificateChain` and `privateKey`.
    ///   - serverHostname: The name sent in SNI and checked against the certificate; `nil` uses each endpoint's
    ///     host, or for an IP address sends no SNI and checks the address.
    /// - Throws: `NIOSSLError` if the configuration cannot make a TLS context (a bad key, unreadable files).
    public static func tlsClient(_ configuration: TLSConfiguration, serverHostname: String? = nil) throws -> ChannelSetup {
        let context = try NIOSSLContext(configuration: configuration)
        return ChannelSetup { channel, endpoint in
            let hostname = serverHostname ?? endpoint.map(\.host).flatMap { host in
                // SNI carries names only; for an address, NIOSSL checks the certificate against the peer's address.
                (try? SocketAddress(ipAddress: host, port: 0)) == nil ? host : nil
            }
            let readiness = HandshakeReadiness(promise: channel.eventLoop.makePromise())
            try channel.pipeline.syncOperations.addHandlers(
                try NIOSSLClientHandler(context: context, serverHostname: hostname),
                readiness
            )
            return readiness.promise.futureResult
        }
    }

    /// TLS on a server's accepted connections (``PersistentServer/Configuration/channelSetup``): frames flow once
    /// the handshake completed; a client that fails it is closed. Set `certificateVerification` to
    /// `.fullVerification` with `trustRoots` to require client certificates (mutual TLS).
    ///
    /// - Parameter configuration: The TLS settings, e.g. `TLSConfiguration.makeServerConfiguration(
    ///   certificateChain:privateKey:)`.
    /// - Throws: `NIOSSLError` if the configuration cannot make a TLS context.
    public static func tlsServer(_ configuration: TLSConfiguration) throws -> ChannelSetup {
        let context = try NIOSSLContext(configuration: configuration)
        return ChannelSetup { channel, _ in
            let readiness = HandshakeReadiness(promise: channel.eventLoop.makePromise())
            try channel.pipeline.syncOperations.addHandlers(NIOSSLServerHandler(context: context), readiness)
            return readiness.promise.futureResult
        }
    }
}

/// Why a TLS connection could not be set up, in plain words (`TLS handshake failed: certificate verify failed`).
public struct TLSHandshakeError: Error, CustomStringConvertible {
    /// NIOSSL's error, or `nil` when the connection closed before the handshake ended.
    public let underlying: (any Error)?

    /// The error for a handshake that ended with NIOSSL's `underlying` error (`nil`: the connection closed), for
    /// other clients of TLS (an HTTP client's) to say it in the same words.
    public init(underlying: (any Error)?) {
        self.underlying = underlying
    }

    public var description: String {
        guard let underlying else { return "TLS handshake failed: the connection closed" }
        return "TLS handshake failed: " + Self.plain(underlying)
    }

    private static func plain(_ error: any Error) -> String {
        switch error {
        case NIOSSLError.handshakeFailed(.sslError(let errors)) where !errors.isEmpty:
            // BoringSSL says "Error: 268435581 error:1000007d:SSL routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED
            // at /path/handshake.cc:320": the reason is the last field before the source location.
            return errors.map { error in
                let text = "\(error)"
                let message = text.ranges(of: " at ").last.map { text[..<$0.lowerBound] } ?? text[...]
                let reason = message.split(separator: ":").last.map(String.init) ?? text
                return String(reason.lowercased().map { $0 == "_" ? " " : $0 })
            }.joined(separator: "; ")
        case NIOSSLError.uncleanShutdown:
            return "the peer closed the connection"
        default:
            return "\(error)"
        }
    }
}

/// Succeeds its promise when the TLS handshake completes and then leaves the pipeline; fails it with a
/// ``TLSHandshakeError`` on an error or a close before that.
private final class HandshakeReadiness: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny

    let promise: EventLoopPromise<Void>

    init(promise: EventLoopPromise<Void>) {
        self.promise = promise
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .handshakeCompleted = event as? TLSUserEvent {
            self.promise.succeed()
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        self.promise.fail(TLSHandshakeError(underlying: error))
        context.fireErrorCaught(error)
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.promise.fail(TLSHandshakeError(underlying: nil))
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.promise.fail(TLSHandshakeError(underlying: nil))
    }
}
