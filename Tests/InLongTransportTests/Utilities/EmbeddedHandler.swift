import CoreMetrics
import Logging
import NIOCore
import NIOEmbedded

@testable import InLongTransport

/// A connected `EmbeddedChannel` around a channel handler for `codec`, on virtual time.
func makeEmbeddedHandler<Codec: FrameCodec>(
    codec: Codec,
    stateMachine: ConnectionChannelHandler<Codec>.StateMachine.Configuration,
    maxFrameLength: Int,
    framingErrorPolicy: PersistentConnection<Codec>.Configuration.FramingErrorPolicy = .close,
    counters: StatisticsCounters = StatisticsCounters(),
    inbound: InboundHandlerPool<Codec>? = nil
) throws -> (channel: EmbeddedChannel, loop: EmbeddedEventLoop, handler: ConnectionChannelHandler<Codec>) {
    let loop = EmbeddedEventLoop()
    let endpoint = Endpoint(host: "127.0.0.1", port: 1)
    let handler = ConnectionChannelHandler(
        codec: codec,
        configuration: .init(
            stateMachine: stateMachine,
            maxFrameLength: maxFrameLength,
            framingErrorPolicy: framingErrorPolicy
        ),
        endpoint: endpoint,
        observer: ConnectionObserver(counters: counters, metrics: nil),
        logger: .init(label: "test"),
        now: loop.now,
        inbound: inbound
    )
    let channel = EmbeddedChannel(handler: handler, loop: loop)
    try channel.connect(to: try SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
    return (channel, loop, handler)
}
