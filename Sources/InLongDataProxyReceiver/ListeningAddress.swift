import NIOCore
import Synchronization

/// The address a server listens on, awaited by callers until the server binds or fails to.
final class ListeningAddress: Sendable {
    private struct State {
        var result: Result<SocketAddress, any Error>?
        var waiters: [CheckedContinuation<SocketAddress, any Error>] = []
    }

    private let state = Mutex(State())

    /// The address, once settled; throws the failure it was settled with.
    func value() async throws -> SocketAddress {
        try await withCheckedThrowingContinuation { continuation in
            let result = self.modify { state -> Result<SocketAddress, any Error>? in
                if state.result == nil { state.waiters.append(continuation) }
                return state.result
            }
            if let result { continuation.resume(with: result) }
        }
    }

    private func modify<Value>(_ body: (inout State) -> Value) -> Value {
        self.state.withLock { body(&$0) }
    }

    /// Settles the address and wakes the waiters; only the first call counts.
    func settle(_ result: Result<SocketAddress, any Error>) {
        let waiters = self.modify { state -> [CheckedContinuation<SocketAddress, any Error>] in
            guard state.result == nil else { return [] }
            state.result = result
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume(with: result) }
    }
}
