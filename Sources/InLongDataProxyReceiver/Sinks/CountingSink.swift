import Synchronization

/// A sink that stores nothing and counts messages, records and bytes: for benchmarks, where the receiver must
/// not be the bottleneck.
public final class CountingSink: DataProxyReceiverSink {
    private let messages = Atomic<Int>(0)
    private let records = Atomic<Int>(0)
    private let bytes = Atomic<Int>(0)

    public let needsRecords: Bool

    /// - Parameter decodeRecords: Have the receiver decompress and split every message, as it does for a sink
    ///   that stores records, to measure that work too. Defaults to `false`.
    public init(decodeRecords: Bool = false) {
        self.needsRecords = decodeRecords
    }

    public func write(_ message: ReceivedMessage) async throws {
        self.messages.add(1, ordering: .relaxed)
        self.records.add(message.recordCount, ordering: .relaxed)
        self.bytes.add(message.payloadBytes, ordering: .relaxed)
    }

    /// Messages written.
    public var messageCount: Int { self.messages.load(ordering: .relaxed) }
    /// Records written.
    public var recordCount: Int { self.records.load(ordering: .relaxed) }
    /// Payload bytes written (decompressed).
    public var byteCount: Int { self.bytes.load(ordering: .relaxed) }
}
