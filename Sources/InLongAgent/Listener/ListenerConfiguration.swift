extension AgentConfiguration {
    /// Messages that arrive over the network (syslog, or plain lines), sent to one group and stream: each message
    /// one record, as received.
    public struct Listener: Sendable, Hashable {
        /// How messages are told apart.
        public enum Format: String, Sendable, Hashable, Codable {
            /// Syslog (RFC 5424 or RFC 3164): over TCP, octet-counted or newline-ended frames (RFC 6587), mixed;
            /// over UDP, a message per datagram.
            case syslog
            /// A message per line (over UDP, per datagram).
            case lines
        }

        public enum Transport: String, Sendable, Hashable, Codable {
            case tcp
            case udp
            /// The agent's standard input (a pipe, a FIFO or a terminal; not a regular file: give that to a file
            /// source): read until its end, with back-pressure (the writer waits while the queue is full). It has
            /// no offsets, so what was read and not acked when the agent is killed is lost. An agent whose only
            /// source it is stops once its input ended and every message was acked or dead-lettered.
            case stdin
        }

        /// The address to listen on. Defaults to 127.0.0.1.
        public var host = "127.0.0.1"
        /// The port; 0 picks a free one (``Agent/listenerStatistics()`` says which).
        public var port: Int
        /// Defaults to TCP.
        public var transport = Transport.tcp
        /// Defaults to syslog.
        public var format = Format.syslog
        public var group: String
        public var stream: String
        /// What the listener's metrics are labelled with (`source="..."`). Defaults to `nil`: its format and
        /// address, as `syslog 127.0.0.1:5514/tcp` (see ``metricsName``).
        public var name: String?
        /// Pairs added to the attribute string of every message (InLong's `extraMap`).
        public var attributes: [String: String] = [:]
        /// A longer message is cut there (TCP) or dropped (UDP), and counted. Defaults to 64 KiB.
        public var maxMessageLength = 64 << 10
        /// Messages received and not yet handed to the client, in bytes: past this, TCP connections stop being
        /// read until there is room (back-pressure on the senders), and UDP datagrams are dropped and counted.
        /// Defaults to 4 MiB.
        public var maxBufferedBytes = 4 << 20
        /// With ``Format/syslog``: each message's header fields become its own attributes, `facility` and
        /// `severity` (as keywords: `local4`, `notice`), and those of `hostname`, `appName`, `procId`, `msgId` and
        /// `timestamp` it has. A message without a valid `<PRI>` goes without them. Defaults to `false`.
        public var syslogAttributes = false
        /// How fast its messages are sent; over it they wait in the queue (see ``maxBufferedBytes``). Defaults to
        /// `nil`: no limit.
        public var rateLimit: RateLimit?

        public init(port: Int, group: String, stream: String) {
            self.port = port
            self.group = group
            self.stream = stream
        }

        /// The `source` label of its metrics: its ``name``, or its format and address (with the port bound, when
        /// the agent picked one for port 0).
        public var metricsName: String { self.name ?? "\(self.format.rawValue) \(self.address)" }

        /// `host:port/transport` for logs and errors; `stdin` for standard input.
        package var address: String {
            self.transport == .stdin ? "stdin" : "\(self.host):\(self.port)/\(self.transport.rawValue)"
        }

        /// Throws when a setting cannot work (a port out of range, an empty group, a length that is not positive).
        public func validate() throws(AgentConfigurationError) {
            let name = "listener \(self.address)"
            guard (0...65535).contains(self.port) else { throw AgentConfigurationError("\(name): the port must be 0 to 65535") }
            guard !self.group.isEmpty, !self.stream.isEmpty else { throw AgentConfigurationError("\(name): group and stream must be non-empty") }
            guard self.maxMessageLength > 0 else { throw AgentConfigurationError("\(name): maxMessageLength must be positive") }
            guard self.maxBufferedBytes >= self.maxMessageLength else {
                throw AgentConfigurationError("\(name): maxBufferedBytes must hold at least one message of maxMessageLength")
            }
            try self.rateLimit?.validate(key: "rateLimit")
            if self.syslogAttributes, self.format != .syslog {
                throw AgentConfigurationError(key: "syslogAttributes", "\(name): syslogAttributes needs format syslog")
            }
        }
    }
}
