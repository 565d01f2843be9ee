import InLongDataProxyReceiver
import InLongTestUtils
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#else
import Darwin
#endif

/// Connections that arrive while the receiver stops: every accepted one must be finished, whichever way the
/// receiver is stopped, or NIO traps on the unfinished writer of the dropped connection.
@Suite struct ReceiverShutdownStressTests {
    enum Stop: CaseIterable {
        case stop
        case gracefulShutdown
        case cancellation
    }

    /// What one round's connecting loop saw.
    struct Connections {
        var opened = 0
        var openedWhileStopping = 0
    }

    /// What one round saw.
    struct Round {
        var connections = Connections()
        var runReturned = false
        var statistics = ReceiverStatistics()
    }

    enum Ended {
        case run
        case connecting(Connections)
    }

    @Test(.timeLimit(.minutes(2)))
    func connectionsArrivingDuringShutdownAreFinished() async throws {
        let rounds = 60
        let frame = Array(try binaryFrame(["during shutdown"]).readableBytesView)
        var openedWhileStopping: [Stop: Int] = [:]
        for index in 0..<rounds {
            let stop = Stop.allCases[index % Stop.allCases.count]
            // Some rounds serve the Manager endpoint too, which must stop with the receiver.
            var configuration = DataProxyReceiver.Configuration.loopback
            if (index / Stop.allCases.count) % 4 == 0 { configuration.manager = .init() }
            let round = try await self.round(configuration, stop: stop, after: 1 + index % 12, frame: frame)
            openedWhileStopping[stop, default: 0] += round.connections.openedWhileStopping
            #expect(round.runReturned, "round \(index), \(stop)")
            #expect(round.connections.opened > 0, "round \(index), \(stop)")
            #expect(round.statistics.openConnections == 0, "round \(index), \(stop): connections left open")
        }
        // The race only exists if connections land while the receiver stops, whichever way it is stopped.
        for stop in Stop.allCases {
            #expect(openedWhileStopping[stop, default: 0] > 0, "\(stop): \(openedWhileStopping)")
        }
    }

    /// Shared between the connecting loop and the test.
    final class Progress: Sendable {
        let stopping = Atomic(false)
        let opened = Atomic(0)
        let connecting = Atomic(true)
    }

    /// Starts a receiver, opens connections in a loop, stops the receiver once `after` are open while the loop
    /// goes on, and waits for `run()` to return.
    private func round(
        _ configuration: DataProxyReceiver.Configuration,
        stop: Stop,
        after threshold: Int,
        frame: [UInt8]
    ) async throws -> Round {
        let receiver = DataProxyReceiver(configuration: configuration, sink: CountingSink())
        let services = ServiceGroup(services: [receiver], logger: Logger(label: "test"))
        let progress = Progress()

        var round = try await withThrowingTaskGroup(of: Ended.self) { group in
            group.addTask {
                // A cancelled run() may throw; it must return either way.
                switch stop {
                case .gracefulShutdown: try? await services.run()
                case .stop, .cancellation: try? await receiver.run()
                }
                return .run
            }
            let port = try await receiver.port()
            // Ignores cancellation: it ends on a refused connection or its bound.
            group.addTask {
                defer { progress.connecting.store(false, ordering: .releasing) }
                return .connecting(await Self.connectInALoop(port: port, frame: frame, progress: progress))
            }
            // Bounded by the connecting loop, which is bounded by count.
            while progress.opened.load(ordering: .relaxed) < threshold, progress.connecting.load(ordering: .acquiring) {
                await Task.yield()
            }
            progress.stopping.store(true, ordering: .releasing)
            switch stop {
            case .stop: receiver.stop()
            case .gracefulShutdown: await services.triggerGracefulShutdown()
            case .cancellation: group.cancelAll()
            }
            var round = Round()
            for try await ended in group {
                switch ended {
                case .run: round.runReturned = true
                case .connecting(let connections): round.connections = connections
                }
            }
            return round
        }
        round.statistics = receiver.statistics()
        return round
    }

    /// Opens loopback connections as fast as possible, some sending a frame, until a connection is refused after
    /// stopping began or a bound is reached; then resets them all.
    private static func connectInALoop(port: Int, frame: [UInt8], progress: Progress) async -> Connections {
        var result = Connections()
        var descriptors: [Int32] = []
        defer { descriptors.forEach(reset) }
        // Fewer than the listen backlog (256), so that a connect never waits for an accept.
        for attempt in 0..<400 where descriptors.count < 150 {
            let wasStopping = progress.stopping.load(ordering: .acquiring)
            guard let descriptor = connectToLoopback(port: port) else {
                if wasStopping { break }
                continue
            }
            descriptors.append(descriptor)
            if attempt % 4 == 0 {
                _ = frame.withUnsafeBytes { send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            }
            result.opened += 1
            if wasStopping { result.openedWhileStopping += 1 }
            progress.opened.add(1, ordering: .relaxed)
            await Task.yield()
        }
        return result
    }
}

/// A blocking connect to `127.0.0.1:port`; the descriptor, or `nil` when refused.
private func connectToLoopback(port: Int) -> Int32? {
    #if canImport(Glibc)
    let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    #else
    let descriptor = socket(AF_INET, SOCK_STREAM, 0)
    #endif
    guard descriptor >= 0 else { return nil }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let connected = withUnsafePointer(to: &address) { pointer in
        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
        }
    }
    guard connected else {
        close(descriptor)
        return nil
    }
    return descriptor
}

/// Closes with a reset, so that thousands of connections leave no TIME_WAIT behind to exhaust local ports.
private func reset(_ descriptor: Int32) {
    var option = linger(l_onoff: 1, l_linger: 0)
    _ = setsockopt(descriptor, SOL_SOCKET, SO_LINGER, &option, socklen_t(MemoryLayout<linger>.size))
    close(descriptor)
}
