import InLongTransport
import NIOCore

@testable import InLongDataProxy

/// Jobs for the delivery sub-states' tests: only the id, the group and the deadline matter to them.
enum DeliveryJobFixtures {
    static let start = ContinuousClock.now

    static func at(_ milliseconds: Int) -> ContinuousClock.Instant { Self.start + .milliseconds(milliseconds) }

    static func job(_ id: Int, group: String = "g", deadline: Int = 1_000) -> DeliveryJob {
        let batch = SealedBatch(
            key: BatchKey(group: group, stream: "s", perRecordAttributes: false),
            block: ByteBuffer(),
            recordCount: 1,
            chargedBytes: 10,
            ids: DataProxyRecordIDs(UInt64(id)..<UInt64(id + 1)),
            observers: [],
            createdAt: Self.start,
            dataTime: 0
        )
        return DeliveryJob(id: id, batch: batch, deadline: Self.at(deadline), backoff: ExponentialBackoff().makeIterator())
    }
}
