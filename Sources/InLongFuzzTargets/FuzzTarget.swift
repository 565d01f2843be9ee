/// The code paths that take bytes from the network, each as a fuzz target: the fuzzers in `Fuzz/` run them under
/// libFuzzer with sanitizers, and `InLongFuzzReplayTests` replays the checked-in corpus through them.
public enum FuzzTarget: String, CaseIterable, Sendable {
    /// Whole request and response frames (types 1 to 8) decoded, re-encoded and decoded again.
    case frameDecoder
    /// A byte stream split into frames by the length prefix, in one piece and in chunks.
    case framer
    /// Type-7 acks and the outcome read from their attributes.
    case binaryAck
    /// Type-8 heartbeat requests and responses.
    case heartbeat
    /// The attribute string, parsed strictly and leniently.
    case attributes
    /// Snappy decompression of hostile input.
    case snappyDecompress
    /// Snappy compression, which must decompress to the input.
    case snappyRoundTrip
    /// The receiver's reply to a request frame.
    case receiverRequest
    /// DataProxy's HTTP form encoding: any bytes round-trip, any input decodes or throws.
    case httpForm
    /// The receiver's HTTP source judging any form body or query.
    case receiverHTTPRequest

    /// Feeds one input to the code under test. Throws when an invariant does not hold; a crash in the code under
    /// test traps as it would in production.
    public func run(_ data: UnsafeRawBufferPointer) throws(FuzzFailure) {
        switch self {
        case .frameDecoder: try fuzzFrameDecoder(data)
        case .framer: try fuzzFramer(data)
        case .binaryAck: try fuzzBinaryAck(data)
        case .heartbeat: try fuzzHeartbeat(data)
        case .attributes: try fuzzAttributes(data)
        case .snappyDecompress: try fuzzSnappyDecompress(data)
        case .snappyRoundTrip: try fuzzSnappyRoundTrip(data)
        case .receiverRequest: try fuzzReceiverRequest(data)
        case .httpForm: try fuzzHTTPForm(data)
        case .receiverHTTPRequest: try fuzzReceiverHTTPRequest(data)
        }
    }

    /// The body of `LLVMFuzzerTestOneInput`: a broken invariant traps, so libFuzzer keeps the input.
    public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
        do {
            try self.run(UnsafeRawBufferPointer(start: data, count: size))
        } catch {
            fatalError("\(self.rawValue): \(error)")
        }
        return 0
    }
}

/// An invariant the code under test broke.
public struct FuzzFailure: Error, CustomStringConvertible {
    public var description: String

    init(_ description: String) { self.description = description }
}

func check(_ condition: Bool, _ message: @autoclosure () -> String) throws(FuzzFailure) {
    if !condition { throw FuzzFailure(message()) }
}
