import InLongTransport

/// What the Manager says about a group's proxies.
struct ProxyList: Sendable, Hashable {
    var endpoints: [Endpoint]
    var clusterID: Int?
    var maxPacketLength: Int?
    /// The cluster's load threshold (`data.load`).
    var load: Int?
    /// The nodes as listed, with what the Manager says of each.
    var nodes: [DataProxyClient.ProxyNode] = []
}

extension DataProxyClient {
    /// A proxy as the Manager lists it.
    public struct ProxyNode: Sendable, Hashable, Codable {
        public var id: Int
        public var host: String
        public var port: Int
        /// `TCP`, `HTTP`, ... as the Manager says.
        public var protocolType: String?
        /// The load the node last reported to the Manager, if any.
        public var load: Int?
    }

    /// What the Manager says about a group: its cluster, the cluster's load threshold, the largest packet it
    /// takes, and its proxies.
    public struct ProxyDirectory: Sendable, Hashable, Codable {
        public var group: String
        public var clusterID: Int?
        public var load: Int?
        public var maxPacketLength: Int?
        public var nodes: [ProxyNode]
    }
}
