import Synchronization

/// A sink that keeps every message in memory, for tests. It can be told to fail, to exercise error 114.
public final class InMemorySink: DataProxyReceiverSink {
    private struct State {
        var messages: [ReceivedMessage] = []
        var recordCount = 0
        var failure: (any Error & Sendable)?
    }

    private let state = Mutex(State())

    public init() {}

    public func write(_ message: ReceivedMessage) async throws {
        try self.modify { state in
            if let failure = state.failure { throw failure }
            state.messages.append(message)
            state.recordCount += message.recordCount
        }
    }

    /// The messages written, in the order they were written.
    public var messages: [ReceivedMessage] { self.modify { $0.messages } }
    /// Every record written, in order.
    public var records: [ReceivedRecord] { self.modify { $0.messages.flatMap(\.records) } }
    /// How many records were written.
    public var recordCount: Int { self.modify { $0.recordCount } }

    /// Makes every following ``write(_:)`` throw `error`, or succeed again with `nil`.
    public func failWrites(with error: (any Error & Sendable)?) {
        self.modify { $0.failure = error }
    }

    /// Every access to the state, under its lock.
    private func modify<Value>(_ body: (inout State) throws -> Value) rethrows -> Value {
        try self.state.withLock { try body(&$0) }
    }

    /// Forgets what was written.
    public func removeAll() {
        self.modify {
            $0.messages.removeAll()
            $0.recordCount = 0
        }
    }
}
