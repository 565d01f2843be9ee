import InLongDataProxy
import InLongTestUtils
import InLongTransport
import Logging
import NIOCore
import Synchronization
import Testing

// A guard against a hang, not a timing check: under the full suite on two loaded cores a test can wait over a
// minute for a thread before it runs.
/// What an application hears from the client through its logger when a proxy cannot be reached.
@Suite(.timeLimit(.minutes(3))) struct ClientLoggingTests {
    /// Keeps every message with its level.
    struct CapturingHandler: LogHandler {
        final class Box: Sendable {
            let entries = Mutex<[(Logger.Level, String)]>([])
        }

        let box: Box
        var logLevel: Logger.Level = .trace
        var metadata: Logger.Metadata = [:]

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { self.metadata[key] }
            set { self.metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            self.box.entries.withLock { $0.append((event.level, "\(event.message)")) }
        }
    }

    @Test func anUnreachableProxyIsSaidOnceAtWarningWithItsAddressAndCause() async throws {
        let refusing = ClosedPort()
        defer { withExtendedLifetime(refusing) {} }
        let box = CapturingHandler.Box()
        let logger = Logger(label: "test") { _ in CapturingHandler(box: box) }
        var configuration = DataProxyClient.Configuration(proxies: [refusing.endpoint])
        configuration.connection.backoff = ExponentialBackoff(initial: .milliseconds(20), maximum: .milliseconds(50))
        try await withDataProxyClient(configuration: configuration, logger: logger, closeDeadline: .zero) { client in
            // Several attempts fail: one warning, the rest at debug.
            #expect(await eventually { client.statistics().proxyErrors[refusing.endpoint] != nil })
            #expect(await eventually { box.entries.withLock { $0.count { $0.1.hasPrefix("cannot connect") } } >= 4 })
        }
        let failures = box.entries.withLock { $0 }.filter { $0.1.hasPrefix("cannot connect") }
        let expected = "cannot connect to \(refusing.endpoint): connection refused"
        #expect(failures.filter { $0.0 == .warning }.map(\.1) == [expected], "\(failures)")
        #expect(failures.dropFirst().allSatisfy { $0.0 == .debug && $0.1 == expected }, "\(failures)")
    }
}
