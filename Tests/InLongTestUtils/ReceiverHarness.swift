public import InLongDataProxyReceiver

#if canImport(Glibc)
import Glibc
#else
import Darwin
#endif

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
public func eventually(timeout: Duration = .seconds(60), _ condition: () async throws -> Bool) async rethrows -> Bool {
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

/// Runs `body` with a loopback port that refuses connections: bound without listening and without
/// `SO_REUSEADDR`, so that no other listener (another test's receiver among them) can take it meanwhile.
public func withRefusingPort<Result>(_ body: (Int) async throws -> Result) async throws -> Result {
    #if canImport(Glibc)
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    #else
    let fd = socket(AF_INET, SOCK_STREAM, 0)
    #endif
    guard fd >= 0 else { throw RefusingPortError() }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = 0
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) { pointer in
        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { socketAddress in
            bind(fd, socketAddress, length) == 0 && getsockname(fd, socketAddress, &length) == 0
        }
    }
    guard bound else { throw RefusingPortError() }
    return try await body(Int(UInt16(bigEndian: address.sin_port)))
}

/// No loopback port could be reserved.
public struct RefusingPortError: Error {}
