import Logging
public import NIOCore

/// The handler's inbound frames: taken from the receive buffer and dispatched, a response to its request, a
/// heartbeat reply to the idle check, the peer's own request to the inbound handler pool.
extension ConnectionChannelHandler {
    /// Takes frames from the receive buffer until it runs dry or reading pauses (the frames left wait there).
    @inlinable
    func processFrames() {
        do {
            while let frame = try self.reader.next(with: self.codec) {
                self.dispatch(frame)
            }
        } catch {
            self.framingFailed(error)
        }
    }

    @usableFromInline
    func framingFailed(_ error: any Error) {
        switch self.reader.framingFailed() {
        case .close:
            self.close(TransportError(.protocolViolation, endpoint: self.endpoint, underlying: error))
        case .discardBuffer:
            self.observer.receiveBufferDiscarded()
            self.logger.debug(
                "discarded bytes that are not a frame",
                metadata: ["inlong.endpoint": "\(self.endpoint)", "error": "\(error)"]
            )
        }
    }

    @inlinable
    func dispatch(_ frame: Codec.Inbound) {
        self.observer.frameRead()
        let now = self.now
        switch self.codec.kind(of: frame) {
        case .response(let key):
            let (first, second) = self.stateMachine.responseReceived(key: key, now: now)
            if case .succeed(let operation) = first {
                self.observer.requestSucceeded()
                operation.complete(with: .success(frame))
                if let onFirstResponse = self.onFirstResponse {
                    self.onFirstResponse = nil
                    onFirstResponse()
                }
            } else {
                self.unmatchedResponse()
            }
            self.run(second)
        case .heartbeatReply:
            self.heartbeatReplyReceived(frame, now: now)
        case .unsolicited:
            self.unsolicitedReceived(frame)
        }
    }

    @usableFromInline
    func unmatchedResponse() {
        self.logger.debug("response matches no pending request", metadata: ["inlong.endpoint": "\(self.endpoint)"])
    }

    // Not inlinable, as sendHeartbeat(): rare, and they reach the types of the inbound pool.

    @usableFromInline
    func heartbeatReplyReceived(_ frame: Codec.Inbound, now: NIODeadline) {
        if let load = self.codec.reportedLoad(in: frame), load >= 0 {
            // Weighs the newest reply a quarter, so one spike does not move all traffic away.
            let smoothed = self.smoothedLoad.map { ($0 * 3 + load) / 4 } ?? load
            self.smoothedLoad = smoothed
            self.observer.reportedLoad(smoothed)
        }
        self.run(self.stateMachine.heartbeatReplyReceived(now: now))
    }

    @usableFromInline
    func unsolicitedReceived(_ frame: Codec.Inbound) {
        if let response = self.codec.heartbeatResponse(to: frame) {
            self.submitSend(response, promise: nil)
            return
        }
        guard let inbound = self.inbound, let connection = self.poolConnection, let runner = self.inboundRunner else {
            self.observer.unsolicitedDropped()
            return
        }
        switch inbound.submit(frame, to: runner, from: connection) {
        case .accepted:
            break
        case .pauseReading:
            self.reader.pause()
        case .refused:
            self.observer.unsolicitedDropped()
        }
    }
}
