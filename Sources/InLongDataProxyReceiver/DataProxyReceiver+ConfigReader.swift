public import Configuration
package import InLongWire

extension DataProxyReceiver.Configuration {
    /// The keys ``init(config:)`` reads: a file with any other is refused (see `SettingKeys`).
    package static let settingKeys = SettingKeys([
        "host", "port", "advertisedIP", "maxFrameSize", "maxConnections", "maxConcurrentRequests", "maxQueuedRequests", "readIdleTimeout", "knownGroups", "fsync", "httpPort",
        "manager.port", "manager.clusterId",
        "faults.ackDelay", "faults.dropAcks", "faults.errorCode", "faults.errorRate", "faults.closeAfterFrames",
        "faults.stopReading", "faults.load",
    ])

    /// Reads a receiver configuration through swift-configuration (a JSON or YAML file, environment variables,
    /// ...), starting from `base`. Keys, all optional (environment names are the keys under `INLONG_RECEIVER_`,
    /// upper-cased, with `_` between words):
    ///
    /// | Key | Meaning |
    /// |---|---|
    /// | `host`, `port` | where to listen |
    /// | `advertisedIP` | the `dpIp` in acks and the address the Manager endpoint hands out |
    /// | `maxFrameSize`, `maxConnections`, `maxConcurrentRequests` (per connection), `maxQueuedRequests` | limits |
    /// | `readIdleTimeout` | seconds (0: never) |
    /// | `knownGroups` | groups accepted (others get error 115) |
    /// | `fsync` | ack only what the sink made durable (see ``fsync``) |
    /// | `httpPort` | serve DataProxy's HTTP API on this port too (0 picks one) |
    /// | `manager.port`, `manager.clusterId` | serve the Manager's proxy-list endpoint |
    /// | `faults.ackDelay` (seconds), `faults.dropAcks`, `faults.errorCode`, `faults.errorRate`, `faults.closeAfterFrames`, `faults.stopReading`, `faults.load` | fault injection |
    public init(config: ConfigReader, base: Self = Self()) throws(ReceiverConfigurationError) {
        self = base
        if let host = config.string(forKey: "host") { self.host = host }
        if let port = try config.wholeNumber("port", ReceiverConfigurationError.init) { self.port = try Self.check(port, 0...65535, "port") }
        if let ip = config.string(forKey: "advertisedIP") { self.advertisedIP = ip }
        if let value = try config.wholeNumber("maxFrameSize", ReceiverConfigurationError.init) { self.maxFrameSize = try Self.check(value, 16...(64 << 20), "maxFrameSize") }
        if let value = try config.wholeNumber("maxConnections", ReceiverConfigurationError.init) { self.maxConnections = try Self.check(value, 1...1_000_000, "maxConnections") }
        if let value = try config.wholeNumber("maxConcurrentRequests", ReceiverConfigurationError.init) { self.maxConcurrentRequests = try Self.check(value, 1...4096, "maxConcurrentRequests") }
        if let value = try config.wholeNumber("maxQueuedRequests", ReceiverConfigurationError.init) { self.maxQueuedRequests = try Self.check(value, 0...1_000_000, "maxQueuedRequests") }
        if let duration = try config.duration("readIdleTimeout", ReceiverConfigurationError.init) {
            self.readIdleTimeout = duration == .zero ? nil : duration
        }
        if let groups = config.stringArray(forKey: "knownGroups") { self.knownGroups = Set(groups) }
        if let fsync = try config.flag("fsync", ReceiverConfigurationError.init) { self.fsync = fsync }
        if let port = try config.wholeNumber("httpPort", ReceiverConfigurationError.init) { self.httpPort = try Self.check(port, 0...65535, "httpPort") }
        if let port = try config.wholeNumber("manager.port", ReceiverConfigurationError.init) {
            var manager = self.manager ?? DataProxyManagerServer.Configuration()
            manager.host = self.host
            manager.port = try Self.check(port, 0...65535, "manager.port")
            if let cluster = try config.wholeNumber("manager.clusterId", ReceiverConfigurationError.init) { manager.clusterID = cluster }
            self.manager = manager
        }
        if let duration = try config.duration("faults.ackDelay", ReceiverConfigurationError.init) { self.faults.ackDelay = duration }
        if let drop = try config.flag("faults.dropAcks", ReceiverConfigurationError.init) { self.faults.dropAcks = drop }
        if let code = try config.wholeNumber("faults.errorCode", ReceiverConfigurationError.init) { self.faults.errorCode = DataProxyResultCode(rawValue: try Self.check(code, 0...Int(Int32.max), "faults.errorCode")) }
        if let rate = try config.number("faults.errorRate", ReceiverConfigurationError.init) {
            guard (0...1).contains(rate) else { throw ReceiverConfigurationError("faults.errorRate takes a fraction from 0 to 1") }
            self.faults.errorRate = rate
        }
        if let count = try config.wholeNumber("faults.closeAfterFrames", ReceiverConfigurationError.init) { self.faults.closeAfterFrames = try Self.check(count, 1...Int.max, "faults.closeAfterFrames") }
        if let stop = try config.flag("faults.stopReading", ReceiverConfigurationError.init) { self.faults.stopReading = stop }
        if let load = try config.wholeNumber("faults.load", ReceiverConfigurationError.init) { self.faults.load = Int16(try Self.check(load, Int(Int16.min)...Int(Int16.max), "faults.load")) }
    }

    private static func check(_ value: Int, _ range: ClosedRange<Int>, _ key: String) throws(ReceiverConfigurationError) -> Int {
        guard range.contains(value) else { throw ReceiverConfigurationError("\(key) must be within \(range.lowerBound)...\(range.upperBound), not \(value)") }
        return value
    }
}

/// A receiver configuration that cannot be used.
public struct ReceiverConfigurationError: Error, CustomStringConvertible, Sendable {
    public var description: String
    init(_ description: String) { self.description = description }
}
