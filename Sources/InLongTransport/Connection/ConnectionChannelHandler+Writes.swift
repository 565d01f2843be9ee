public import DequeModule
public import NIOCore

/// The handler's writes: frames coalesced through the ``OutboundCoalescer``, one flush per event-loop tick (or at
/// the flush threshold), and each write's completion reported in order (writes complete in order): requests start
/// their timeouts when their frames are written.
extension ConnectionChannelHandler {
    /// Answers to the peer's requests, from the inbound handlers.
    @inlinable
    func writeAnswers(_ answers: [ByteBuffer]) {
        guard self.closeReason == nil else { return }
        self.inBatch = true
        defer { self.endBatch() }
        for answer in answers { self.appendOutbound(answer) }
    }

    /// Flushes what a batch wrote: one flush for the batch, without scheduling a task for it.
    @inlinable
    func endBatch() {
        self.inBatch = false
        if self.coalescer.hasPending || self.unflushedBytes > 0 { self.flushOutbound() }
    }

    @inlinable
    func enqueueWrite(_ item: StateMachine.Item) {
        let operation = item.pending
        var written: EventLoopPromise<Void>?
        switch operation.completion {
        case .response, .awaitingResponse:
            self.observer.requestInFlight()
        case .written(let promise):
            written = promise
        }
        self.appendOutbound(operation.bytes, completion: written, isItem: true)
    }

    /// Writes frames through the coalescer, and flushes once per event-loop tick (or at the flush threshold).
    /// `isItem` marks a state-machine item, whose write is reported to it.
    @inlinable
    func appendOutbound(_ bytes: ByteBuffer, completion: EventLoopPromise<Void>? = nil, isItem: Bool = false) {
        self.outboundFrames += 1
        let writes = self.coalescer.append(bytes, items: isItem ? 1 : 0)
        if let before = writes.before { self.write(before.buffer, items: before.items) }
        // With the write that carries this frame, or a later one: never an earlier one.
        if let completion { self.writtenCompletions.append(completion) }
        if let including = writes.including { self.write(including.buffer, items: including.items) }
        if self.unflushedBytes + self.coalescer.pendingBytes >= self.configuration.flushThreshold {
            self.flushOutbound()
            return
        }
        guard !self.flushScheduled, !self.inBatch, let context = self.context else { return }
        self.flushScheduled = true
        context.eventLoop.assumeIsolated().execute { [weak self] in self?.flushOutbound() }
    }

    @inlinable
    func writeCoalesced() {
        guard let coalesced = self.coalescer.take() else { return }
        self.write(coalesced.buffer, items: coalesced.items)
    }

    /// Writes without flushing; completions collected so far complete with this write (writes complete in order),
    /// and the state machine learns that the `items` it holds were written, so their timeouts start. One promise
    /// covers every frame of a coalesced write.
    @inlinable
    func write(_ buffer: ByteBuffer, items: Int) {
        guard let context = self.context else { return }
        self.observer.bytesWritten(buffer.readableBytes)
        self.unflushedBytes += buffer.readableBytes
        if self.writtenCompletions.isEmpty, items == 0 {
            context.write(self.wrapOutboundOut(buffer), promise: nil)
            return
        }
        var completions: [EventLoopPromise<Void>] = []
        if !self.writtenCompletions.isEmpty {
            completions = self.writtenCompletions
            self.writtenCompletions.removeAll(keepingCapacity: true)
        }
        self.pendingWrites.append((items, completions))
        let promise = context.eventLoop.makePromise(of: Void.self)
        // The handler outlives its channel's writes: they complete (or fail) by the time the channel is closed.
        promise.futureResult.assumeIsolated().whenComplete { result in self.written(result) }
        context.write(self.wrapOutboundOut(buffer), promise: promise)
    }

    /// The oldest write with a promise completed: the socket took it, and the requests in it start their
    /// timeouts. A write fails only when the channel closes (NIO closes it on a socket error), which fails the
    /// requests in it.
    @inlinable
    func written(_ result: Result<Void, any Error>) {
        guard let (items, completions) = self.pendingWrites.popFirst() else { return }
        for completion in completions { completion.completeWith(result) }
        guard case .success = result else { return }
        let now = self.now
        for _ in 0..<items { self.run(self.stateMachine.frameWritten(now: now)) }
    }

    @inlinable
    func flushOutbound() {
        self.flushScheduled = false
        guard let context = self.context else { return }
        self.writeCoalesced()
        self.observer.framesWritten(self.outboundFrames)
        self.outboundFrames = 0
        guard self.unflushedBytes > 0 else { return }
        self.unflushedBytes = 0
        context.flush()
    }
}
