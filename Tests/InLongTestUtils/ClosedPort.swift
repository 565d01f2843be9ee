public import InLongTransport

#if canImport(Glibc)
import Glibc
#endif

/// A loopback port that refuses connections and stays reserved while this exists: a socket bound to it that
/// never listens. (A stopped server's port can be taken by another test's server meanwhile.)
public final class ClosedPort {
    public let endpoint: Endpoint
    private let descriptor: Int32

    public init() {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        precondition(descriptor >= 0, "socket failed")
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, length) }
        }
        precondition(bound == 0, "bind failed")
        withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { _ = getsockname(descriptor, $0, &length) }
        }
        self.descriptor = descriptor
        self.endpoint = Endpoint(host: "127.0.0.1", port: Int(UInt16(bigEndian: address.sin_port)))
    }

    deinit { close(self.descriptor) }
}
