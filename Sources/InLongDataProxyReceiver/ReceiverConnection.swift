import InLongTransport
import InLongWire
import Logging
import NIOCore
import Synchronization

/// What every connection of a receiver shares: the sink, the counters, the faults, and the acks held back by
/// ``DataProxyReceiver/Faults/ackDelay``. Kept apart from the receiver so that its server's handlers do not hold
/// the receiver (which holds the server).
final class ReceiverCore: Sendable {
    typealias Server = PersistentServer<DataProxyServerCodec>

    /// An ack held back until `due`.
    struct DelayedAck: Sendable {
        var due: ContinuousClock.Instant
        var reply: ByteBuffer
        var responder: Server.Responder
    }

    let configuration: DataProxyReceiver.Configuration
    let sink: any DataProxyReceiverSink
    let counters: ReceiverObservation
    let faults: FaultSwitch
    let logger: Logger
    let delayedAcks: (stream: AsyncStream<DelayedAck>, continuation: AsyncStream<DelayedAck>.Continuation)

    init(configuration: DataProxyReceiver.Configuration, sink: any DataProxyReceiverSink, logger: Logger) {
        self.configuration = configuration
        self.sink = sink
        self.logger = logger
        self.faults = FaultSwitch(configuration.faults)
        self.counters = ReceiverObservation(delegate: ReceiverObservation.delegate(for: configuration))
        self.delayedAcks = AsyncStream.makeStream()
    }

    /// A new connection's handler: its requests are processed by the DataProxy's rules, in the order they arrive
    /// unless ``DataProxyReceiver/Configuration/maxConcurrentRequests`` allows more at once.
    func connectionOpened(_ connection: Server.Connection) -> Server.ConnectionHandler {
        let state = ReceiverConnection(core: self, connection: connection)
        self.counters.connectionOpened()
        return Server.ConnectionHandler(
            request: { frame, responder in await state.handle(frame, responder: responder) },
            closed: { self.counters.connectionClosed() },
            framingError: { error in
                self.counters.protocolError()
                state.logger.debug("closing connection on a malformed frame", metadata: ["inlong.error": "\(error)"])
            }
        )
    }

    /// Sends the delayed acks when they are due, until cancelled; a closed connection's are dropped.
    func sendDelayedAcks() async {
        for await ack in self.delayedAcks.stream {
            do {
                try await Task.sleep(until: ack.due)
            } catch {
                return
            }
            try? await ack.responder.respond(ack.reply)
        }
    }
}

/// One connection's state: how many data requests it delivered (for ``DataProxyReceiver/Faults/closeAfterFrames``)
/// and whether it is closing.
final class ReceiverConnection: Sendable {
    private let core: ReceiverCore
    private let connection: ReceiverCore.Server.Connection
    private let template: RequestProcessor
    private let client: String
    let logger: Logger
    /// Data requests delivered; once closing, requests read ahead are neither stored nor answered.
    private let delivered = Atomic<Int>(0)
    private let closing = Atomic<Bool>(false)

    init(core: ReceiverCore, connection: ReceiverCore.Server.Connection) {
        self.core = core
        self.connection = connection
        let configuration = core.configuration
        self.template = RequestProcessor(
            proxyIP: configuration.advertisedIP ?? connection.local?.ipAddress ?? configuration.host,
            localPort: connection.local?.port ?? configuration.port,
            knownGroups: configuration.knownGroups,
            decodesRecords: core.sink.needsRecords,
            load: nil,
            maxUncompressedLength: configuration.maxUncompressedLength
        )
        self.client = connection.peer.map { "\($0.ipAddress ?? "?"):\($0.port ?? 0)" } ?? "unknown"
        var logger = core.logger
        logger[metadataKey: "inlong.client"] = "\(self.client)"
        self.logger = logger
    }

    func handle(_ frame: ByteBuffer, responder: ReceiverCore.Server.Responder) async {
        guard !self.closing.load(ordering: .relaxed), await self.core.faults.admit() else { return }
        let counters = self.core.counters
        counters.frameRead(bytes: frame.readableBytes)
        let faults = self.core.faults.current
        var processor = self.template
        processor.load = faults.load
        switch processor.process(frame, receivedAt: currentTimeMillis(), clientAddress: self.client) {
        case .reply(let reply, let code):
            if let code {
                counters.error(code)
            } else {
                counters.heartbeat()
            }
            try? await responder.respond(reply)
        case .noReply(let code):
            if let code { counters.error(code) }
        case .close(let error):
            counters.protocolError()
            self.logger.debug("closing connection on a malformed frame", metadata: ["inlong.error": "\(error)"])
            self.close()
        case .deliver(let message, let ack):
            let count = self.delivered.add(1, ordering: .relaxed).newValue
            if let limit = faults.closeAfterFrames, count > limit { return }
            let reply: ByteBuffer?
            if let code = faults.errorCode, self.core.faults.injectsError() {
                counters.error(code)
                reply = ack.failure(code, message: "injected error", proxyIP: processor.proxyIP)
            } else {
                do {
                    try await self.core.sink.write(message)
                    counters.delivered(message)
                    reply = ack.success(proxyIP: processor.proxyIP)
                } catch {
                    counters.sinkFailed(error)
                    self.logger.debug("sink refused a message", metadata: ["inlong.error": "\(error)"])
                    reply = ack.failure(.putEventToChannelFailure, message: "Put event to channel failure", proxyIP: processor.proxyIP)
                }
            }
            if let reply, !faults.dropAcks {
                if let delay = faults.ackDelay {
                    let held = ReceiverCore.DelayedAck(due: .now + delay, reply: reply, responder: responder)
                    self.core.delayedAcks.continuation.yield(held)
                } else {
                    try? await responder.respond(reply)
                }
            }
            if let limit = faults.closeAfterFrames, count >= limit {
                self.logger.debug("closing connection after \(count) frames (injected fault)")
                self.close()
            }
        }
    }

    private func close() {
        self.closing.store(true, ordering: .relaxed)
        self.connection.close()
    }
}
