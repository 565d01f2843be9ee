import Foundation
import NIOCore
import Testing

@testable import InLongTransport

/// Transport errors read as one plain line.
@Suite struct TransportErrorTextTests {
    @Test func errorsNameTheAddressAndThePlainCause() {
        let endpoint = Endpoint(host: "127.0.0.1", port: 1)
        #expect("\(TransportError(.connectFailed, endpoint: endpoint, underlying: IOError(errnoCode: ECONNREFUSED, reason: "connect")))"
            == "cannot connect to 127.0.0.1:1: connection refused")
        #expect("\(TransportError(.connectFailed, endpoint: endpoint, underlying: ChannelPipelineError.notFound))"
            == "cannot connect to 127.0.0.1:1: the peer closed the connection at once")
        #expect("\(TransportError(.requestTimeout, mayHaveBeenDelivered: true, endpoint: endpoint))"
            == "no answer from 127.0.0.1:1 in time (the request may have been delivered)")
    }
}
