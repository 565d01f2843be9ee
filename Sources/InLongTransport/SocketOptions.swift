import NIOCore

#if canImport(Darwin)
import Darwin
#elseif canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// TCP keepalive (`SO_KEEPALIVE`): the kernel probes a connection that carried nothing for a while, so that a
/// peer gone without a word (a host powered off, a middlebox that forgot the connection) is found even when the
/// protocol has no heartbeat, and a middlebox sees traffic. Unset values keep the system's defaults (on Linux,
/// 2 hours, 75 seconds and 9 probes).
public struct TCPKeepalive: Sendable, Hashable {
    /// How long the connection is idle before the first probe (`TCP_KEEPIDLE`; `TCP_KEEPALIVE` on Darwin).
    /// Whole seconds, at least 1.
    public var idle: Duration?
    /// Between probes (`TCP_KEEPINTVL`). Whole seconds, at least 1.
    public var interval: Duration?
    /// Unanswered probes before the connection is dropped (`TCP_KEEPCNT`).
    public var count: Int?

    public init(idle: Duration? = nil, interval: Duration? = nil, count: Int? = nil) {
        self.idle = idle
        self.interval = interval
        self.count = count
    }
}

/// The TCP options both sides set on their sockets, in the channel initializer (on the channel's loop).
struct SocketOptions {
    var keepalive: TCPKeepalive?
    /// `SO_LINGER`: a close waits up to this long for unsent data; zero resets the connection instead.
    var linger: Duration?

    #if canImport(Darwin)
    static let keepIdle = NIOBSDSocket.Option(rawValue: TCP_KEEPALIVE)
    #else
    static let keepIdle = NIOBSDSocket.Option(rawValue: TCP_KEEPIDLE)
    #endif
    static let keepInterval = NIOBSDSocket.Option(rawValue: TCP_KEEPINTVL)
    static let keepCount = NIOBSDSocket.Option(rawValue: TCP_KEEPCNT)

    func apply(to channel: any Channel) -> EventLoopFuture<Void> {
        if let keepalive = self.keepalive {
            do {
                guard let options = channel.syncOptions else { throw ChannelError.operationUnsupported }
                try options.setOption(.socketOption(.so_keepalive), value: 1)
                if let idle = keepalive.idle {
                    try options.setOption(.tcpOption(Self.keepIdle), value: Self.seconds(idle))
                }
                if let interval = keepalive.interval {
                    try options.setOption(.tcpOption(Self.keepInterval), value: Self.seconds(interval))
                }
                if let count = keepalive.count {
                    try options.setOption(.tcpOption(Self.keepCount), value: SocketOptionValue(max(count, 1)))
                }
            } catch {
                return channel.eventLoop.makeFailedFuture(error)
            }
        }
        guard let linger = self.linger, let provider = channel as? any SocketOptionProvider else {
            return channel.eventLoop.makeSucceededVoidFuture()
        }
        let seconds = Int32(clamping: max(linger.components.seconds, 0))
        #if canImport(Darwin)
        let value = Darwin.linger(l_onoff: 1, l_linger: seconds)
        #elseif canImport(Glibc)
        let value = Glibc.linger(l_onoff: 1, l_linger: seconds)
        #else
        let value = Musl.linger(l_onoff: 1, l_linger: seconds)
        #endif
        return provider.setSoLinger(value)
    }

    /// The socket's `SO_LINGER` timeout, `nil` when off (for tests).
    static func linger(of channel: any Channel) -> EventLoopFuture<Duration?> {
        guard let provider = channel as? any SocketOptionProvider else {
            return channel.eventLoop.makeFailedFuture(ChannelError.operationUnsupported)
        }
        return provider.getSoLinger().map { value in value.l_onoff == 0 ? nil : .seconds(Int(value.l_linger)) }
    }

    private static func seconds(_ duration: Duration) -> SocketOptionValue {
        SocketOptionValue(clamping: max(duration.components.seconds, 1))
    }
}
