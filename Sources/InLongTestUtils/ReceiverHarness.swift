public import InLongDataProxyReceiver

/// Runs a receiver on `127.0.0.1` on a free port for the duration of `body`, then stops it.
public func withReceiver<Result: Sendable>(
    _ configuration: DataProxyReceiver.Configuration = .loopback,
    sink: any DataProxyReceiverSink = InMemorySink(),
    _ body: (DataProxyReceiver) async throws -> Result
) async throws -> Result {
    let receiver = DataProxyReceiver(configuration: configuration, sink: sink)
    return try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { try await receiver.run() }
        do {
            _ = try await receiver.localAddress()
            if let manager = receiver.manager { _ = try await manager.localAddress() }
            let result = try await body(receiver)
            receiver.stop()
            try await group.waitForAll()
            return result
        } catch {
            receiver.stop()
            try? await group.waitForAll()
            throw error
        }
    }
}

/// Waits until `condition` holds, checking every 10 ms, for at most `timeout`; returns whether it held.
/// For waiting on another party, never for measuring time.
public func eventually(timeout: Duration = .seconds(20), _ condition: () async throws -> Bool) async rethrows -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try? await Task.sleep(for: .milliseconds(10))
    }
    return try await condition()
}

extension DataProxyReceiver {
    /// The sink, as the in-memory sink tests give it.
    public var memorySink: InMemorySink { self.sink as! InMemorySink }
}
