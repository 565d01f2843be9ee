// A producer as a Service beside the client in one ServiceGroup, compiled by `swift build`.
// snippet.hide
import Foundation
// snippet.show
import InLongDataProxy
import InLongTransport
import Logging
import NIOCore
import ServiceLifecycle

/// Produces records until its work is done (then it ends the group) or a graceful shutdown asks it to stop.
struct Producer: Service {
    let client: DataProxyClient
    let logger: Logger

    func run() async throws {
        for batch in 0..<10 {
            let lines = (0..<1_000).map { ByteBuffer(string: "batch \(batch) line \($0)") }
            // SIGTERM must not wait for a delivery deadline: the wait is cancelled at graceful shutdown, and the
            // records already accepted still end, in the client's reports.
            let summary: DeliverySummary
            do {
                summary = try await cancelWhenGracefulShutdown {
                    try await self.client.sendAndWait(contentsOf: lines, group: "g", stream: "s")
                }
            } catch let error as DataProxyError where error.code == .cancelled {
                return  // Cancelled while it waited for room: the records it had accepted still end.
            } catch is CancellationError {
                return  // Asked to stop: returning is a clean end, and the group is shutting down anyway.
            }
            if !summary.allAcked { self.logger.warning("\(summary.failures.count) batches failed") }
        }
    }
}

let logger = Logger(label: "producer")
// snippet.hide
// The package's tests run this program against a receiver on a free port.
let proxy = ProcessInfo.processInfo.environment["PRODUCER_PROXY_PORT"].flatMap(Int.init) ?? 46801
// snippet.show
var configuration = DataProxyClient.Configuration(proxies: [Endpoint(host: "127.0.0.1", port: proxy)])
// snippet.hide
// On a loaded test machine an ack can take longer than the default request timeout: a resend would store twice.
if let seconds = ProcessInfo.processInfo.environment["PRODUCER_REQUEST_TIMEOUT"].flatMap(Int64.init) {
    configuration.connection.requestTimeout = .seconds(seconds)
}
// snippet.show
let client = DataProxyClient(configuration: configuration, logger: logger)
let group = ServiceGroup(
    configuration: .init(
        services: [
            // Shut down last: it sends what it holds and waits up to its close deadline for acks.
            .init(service: client),
            // The work is done when the producer returns: that ends the group, gracefully.
            .init(service: Producer(client: client, logger: logger), successTerminationBehavior: .gracefullyShutdownGroup),
        ],
        gracefulShutdownSignals: [.sigterm, .sigint],
        logger: logger
    )
)
try await group.run()
// snippet.end
