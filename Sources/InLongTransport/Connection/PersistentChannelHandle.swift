import NIOCore

/// An open channel as tasks reach it: requests go through its inbox, encoded by the caller.
///
/// Not generic (nor nested in ``PersistentConnection``), and neither is ``PersistentConnectionStateMachine``,
/// which holds it: a request passes through both, and unspecialised generic code (the application's codec is in
/// another module) looks a nested type's metadata up at each use.
struct PersistentChannelHandle: Sendable {
    let id: Int
    let channel: any Channel
    let inbox: SubmissionInbox
    let endpoint: Endpoint
    /// The room requests are encoded into.
    let encoding = EncodingCapacityHint()
    /// Asks the handler, on its event loop, to stop taking requests and close once in-flight ones complete.
    private let drainHandler: @Sendable (NIODeadline) -> Void
    var eventLoop: any EventLoop { self.channel.eventLoop }

    init<Codec>(id: Int, channel: any Channel, handler: NIOLoopBound<ConnectionChannelHandler<Codec>>, endpoint: Endpoint) {
        self.id = id
        self.channel = channel
        self.inbox = SubmissionInbox(eventLoop: handler.eventLoop) { handler.value.take($0) }
        self.drainHandler = { deadline in handler.value.drain(deadline: deadline) }
        self.endpoint = endpoint
    }

    /// Encodes here, off the event loop: the loop is what every request of the connection shares.
    func encode<Codec: FrameCodec>(_ frame: Codec.Outbound, codec: Codec) throws -> ByteBuffer {
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

    func request<Codec: FrameCodec>(
        _ request: Codec.Outbound,
        codec: Codec,
        key codecKey: Codec.Key,
        timeout: TimeAmount
    ) async throws -> Codec.Inbound {
        let bytes = try self.encode(request, codec: codec)
        return try await self.awaitResponse(key: RequestKey(codecKey), bytes: bytes, timeout: timeout)
    }

    private func awaitResponse<Response>(key: RequestKey, bytes: ByteBuffer, timeout: TimeAmount) async throws -> Response {
        if Task.isCancelled { throw TransportError(.cancelled, endpoint: self.endpoint) }
        let ticket = self.inbox.takeTicket()
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Response, any Error>) in
                let completion = ConnectionOperation.Completion.awaitingResponse(AwaitingTask(continuation), ticket: ticket)
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

    func submit<Codec: FrameCodec>(_ request: Codec.Outbound, codec: Codec, timeout: TimeAmount) -> EventLoopFuture<Codec.Inbound> {
        let promise = self.eventLoop.makePromise(of: Codec.Inbound.self)
        do {
            let bytes = try self.encode(request, codec: codec)
            let key = RequestKey(codec.key(of: request))
            self.inbox.submit(.request(key: key, bytes: bytes, completion: .response(promise), timeout: timeout))
        } catch {
            promise.fail(error)
        }
        return promise.futureResult
    }

    func send<Codec: FrameCodec>(_ frame: Codec.Outbound, codec: Codec) async throws {
        let promise = self.eventLoop.makePromise(of: Void.self)
        self.inbox.submit(.send(bytes: try self.encode(frame, codec: codec), promise: promise))
        try await promise.futureResult.get()
    }

    func sendAndForget<Codec: FrameCodec>(_ frame: Codec.Outbound, codec: Codec) {
        guard let bytes = try? self.encode(frame, codec: codec) else { return }
        self.inbox.submit(.send(bytes: bytes, promise: nil))
    }
}
