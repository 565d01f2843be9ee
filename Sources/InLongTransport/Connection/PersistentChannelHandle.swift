public import NIOCore

/// An open channel as tasks reach it: requests go through its inbox, encoded by the caller. What a request runs
/// here is inlinable: the application's module compiles it for its codec, where the codec's calls and types are
/// known.
@usableFromInline
struct PersistentChannelHandle<Codec: FrameCodec>: Sendable {
    let id: Int
    @usableFromInline let channel: any Channel
    @usableFromInline let inbox: SubmissionInbox<Codec.Key, Codec.Inbound>
    @usableFromInline let endpoint: Endpoint
    /// The room requests are encoded into.
    @usableFromInline let encoding = EncodingCapacityHint()
    /// Asks the handler, on its event loop, to stop taking requests and close once in-flight ones complete.
    private let drainHandler: @Sendable (NIODeadline) -> Void
    @inlinable var eventLoop: any EventLoop { self.channel.eventLoop }

    init(
        id: Int,
        channel: any Channel,
        handler: NIOLoopBound<ConnectionChannelHandler<Codec>>,
        entryPoints: ConnectionHandlerEntryPoints<Codec>,
        endpoint: Endpoint
    ) {
        self.id = id
        self.channel = channel
        // The handler's specialised entry point: this initializer runs unspecialised (from the connect).
        let take = entryPoints.take
        self.inbox = SubmissionInbox(eventLoop: handler.eventLoop) { take(handler.value, $0) }
        self.drainHandler = { deadline in handler.value.drain(deadline: deadline) }
        self.endpoint = endpoint
    }

    /// Encodes here, off the event loop: the loop is what every request of the connection shares.
    @inlinable
    func encode(_ frame: Codec.Outbound, codec: Codec) throws -> ByteBuffer {
        var (buffer, given) = self.encoding.makeBuffer()
        do {
            try codec.encode(frame, into: &buffer)
        } catch {
            throw TransportError(.encodingFailed, endpoint: self.endpoint, underlying: error)
        }
        self.encoding.learn(from: buffer, given)
        return buffer
    }

    /// Asks the handler to stop taking requests and close once in-flight ones complete, or after `timeout`.
    func drain(within timeout: Duration) {
        let deadline = NIODeadline.now() + TimeAmount(timeout)
        let drainHandler = self.drainHandler
        self.eventLoop.execute { drainHandler(deadline) }
    }

    @inlinable
    func request(
        _ request: Codec.Outbound,
        codec: Codec,
        key: Codec.Key,
        timeout: TimeAmount
    ) async throws -> Codec.Inbound {
        let bytes = try self.encode(request, codec: codec)
        return try await self.awaitResponse(key: key, bytes: bytes, timeout: timeout)
    }

    @inlinable
    func awaitResponse(key: Codec.Key, bytes: ByteBuffer, timeout: TimeAmount) async throws -> Codec.Inbound {
        if Task.isCancelled { throw TransportError(.cancelled, endpoint: self.endpoint) }
        let ticket = self.inbox.takeTicket()
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Codec.Inbound, any Error>) in
                let completion = ConnectionOperation<Codec.Inbound>.Completion.awaitingResponse(continuation, ticket: ticket)
                self.inbox.submit(.request(key: key, bytes: bytes, completion: completion, timeout: timeout))
                // Cancelled after the check above and before the handler was installed: the handler ran at once,
                // ahead of the request, and found nothing to cancel. Cancel again behind it.
                if Task.isCancelled { self.inbox.submit(.cancel(key: key, ticket: ticket)) }
            }
        } onCancel: {
            // Through the inbox, so that it cannot overtake its request.
            self.inbox.submit(.cancel(key: key, ticket: ticket))
        }
    }

    @inlinable
    func submit(_ request: Codec.Outbound, codec: Codec, timeout: TimeAmount) -> EventLoopFuture<Codec.Inbound> {
        let promise = self.eventLoop.makePromise(of: Codec.Inbound.self)
        do {
            let bytes = try self.encode(request, codec: codec)
            self.inbox.submit(.request(key: codec.key(of: request), bytes: bytes, completion: .response(promise), timeout: timeout))
        } catch {
            promise.fail(error)
        }
        return promise.futureResult
    }

    @inlinable
    func send(_ frame: Codec.Outbound, codec: Codec) async throws {
        let promise = self.eventLoop.makePromise(of: Void.self)
        self.inbox.submit(.send(bytes: try self.encode(frame, codec: codec), promise: promise))
        try await promise.futureResult.get()
    }

    @inlinable
    func sendAndForget(_ frame: Codec.Outbound, codec: Codec) {
        guard let bytes = try? self.encode(frame, codec: codec) else { return }
        self.inbox.submit(.send(bytes: bytes, promise: nil))
    }
}
