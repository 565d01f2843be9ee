import HTTPTypes
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import InLongWire
import Logging
import NIOCore
import NIOSSL
import ServiceLifecycle

/// A request's context with the client's address, which the answers and the sink's messages name.
struct HTTPSourceContext: RequestContext {
    var coreContext: CoreRequestContextStorage
    let remoteAddress: SocketAddress?

    init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
        self.remoteAddress = source.channel.remoteAddress
    }
}

/// DataProxy's HTTP source next to the receiver's TCP port: `POST`/`GET` `/dataproxy/message` with form fields
/// (``InLongHTTPForm``), judged by ``HTTPMessageProcessor``, stored through the receiver's sink and counted with
/// its TCP traffic. Injected faults apply as on TCP (an error code instead of storing, reading stopped), plus
/// ``DataProxyReceiver/Faults/httpStatus``.
final class DataProxyHTTPServer: Service, Sendable {
    private let core: ReceiverCore
    private let host: String
    private let port: Int
    private let tlsConfiguration: TLSConfiguration?
    private let processor: HTTPMessageProcessor
    private let eventLoopGroup: any EventLoopGroup
    let address = ListeningAddress()

    /// Told the address once the server listens, before anyone else learns it.
    private let listening: @Sendable (SocketAddress) -> Void

    init(
        core: ReceiverCore,
        host: String,
        port: Int,
        tlsConfiguration: TLSConfiguration?,
        eventLoopGroup: any EventLoopGroup,
        listening: @escaping @Sendable (SocketAddress) -> Void = { _ in }
    ) {
        self.core = core
        self.listening = listening
        self.tlsConfiguration = tlsConfiguration
        self.eventLoopGroup = eventLoopGroup
        self.host = host
        self.port = port
        self.processor = HTTPMessageProcessor(
            knownGroups: core.configuration.knownGroups,
            maxBodyLength: core.configuration.maxFrameSize
        )
    }

    func run() async throws {
        let responder = CallbackResponder<HTTPSourceContext> { request, context in
            await self.respond(to: request, context: context)
        }
        let server: HTTPServerBuilder = try self.tlsConfiguration.map { try .tls(.http1(), tlsConfiguration: $0) } ?? .http1()
        let application = Application(
            responder: responder,
            server: server,
            configuration: .init(address: .hostname(self.host, port: self.port)),
            onServerRunning: { channel in
                guard let address = channel.localAddress else { return }
                self.listening(address)
                self.address.settle(.success(address))
            },
            eventLoopGroupProvider: .shared(self.eventLoopGroup),
            logger: self.core.logger
        )
        defer { self.address.settle(.failure(ReceiverError.stopped)) }
        do {
            try await application.run()
        } catch let error as IOError {
            throw ReceiverError.cannotListen(on: "\(self.host):\(self.port) (the HTTP source)", because: error)
        }
    }

    private func respond(to request: Request, context: HTTPSourceContext) async -> Response {
        guard await self.core.faults.admit() else {
            return Response(status: .serviceUnavailable, headers: [.connection: "close"])
        }
        let counters = self.core.counters
        let faults = self.core.faults.current
        var request = request
        // Percent-encoding triples a byte at worst: a body that cannot hold an acceptable `body` field is refused
        // before it is buffered.
        let limit = self.processor.maxBodyLength * 3 + 64 << 10
        let body: ByteBuffer
        do {
            body = try await request.collectBody(upTo: limit)
        } catch {
            counters.protocolError()
            return Response(status: .contentTooLarge, headers: [.connection: "close"])
        }
        counters.frameRead(bytes: body.readableBytes)
        if let status = faults.httpStatus {
            return Response(status: HTTPResponse.Status(code: status), headers: [.connection: "close"])
        }
        let client = context.remoteAddress.map { "\($0.ipAddress ?? "?"):\($0.port ?? 0)" } ?? "unknown"
        let input = HTTPMessageProcessor.Request(
            method: request.method.rawValue,
            path: request.uri.path,
            query: request.uri.query,
            contentType: request.headers[.contentType],
            contentLength: request.headers[.contentLength].flatMap { Int($0) },
            close: request.headers[.connection]?.lowercased() == "close",
            body: body
        )
        let answer: HTTPMessageProcessor.Answer
        switch self.processor.process(input, receivedAt: currentTimeMillis(), clientAddress: client, decodesRecords: self.core.sink.needsRecords) {
        case .notFound:
            return Response(status: .notFound)
        case .answer(let judged):
            if judged.code == .success {
                counters.heartbeat()
            } else {
                counters.error(judged.code)
            }
            answer = judged
        case .deliver(let message, let callback, let close):
            if let code = faults.errorCode, self.core.faults.injectsError() {
                counters.error(code)
                answer = .init(code: code, message: "injected error", callback: callback, close: true)
            } else {
                do {
                    try await self.core.sink.write(message)
                    counters.delivered(message)
                    answer = .success(callback: callback, close: close)
                } catch {
                    counters.error(.putEventToChannelFailure)
                    answer = .init(code: .putEventToChannelFailure, message: "Put event to channel failure: \(error)", callback: callback, close: true)
                }
            }
        }
        if let delay = faults.ackDelay { try? await Task.sleep(for: delay) }
        var headers: HTTPFields = [.contentType: InLongHTTPForm.answerContentType]
        if answer.close { headers[.connection] = "close" }
        return Response(status: .ok, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(string: answer.body)))
    }
}
