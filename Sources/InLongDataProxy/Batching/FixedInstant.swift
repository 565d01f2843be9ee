/// A `ContinuousClock.Instant` held as its offset from one instant of the process. The standard library's
/// instant has a resilient layout, so that every value holding one (a batch, open or sealed, a delivery job, the
/// client's state machine, the agent's multiline machine) would be copied, stored and wrapped in an enum through
/// the runtime's value witnesses, and its other fields reached through runtime metadata; `Duration`'s layout is
/// fixed, and with it theirs, on the per-record paths.
package struct FixedInstant: Comparable, Sendable {
    /// The instant the offsets count from.
    private static let origin = ContinuousClock.Instant.now
    private let offset: Duration

    package init(_ instant: ContinuousClock.Instant) {
        self.offset = instant - Self.origin
    }

    private init(offset: Duration) {
        self.offset = offset
    }

    /// The instant the process's offsets count from: earlier than any instant held.
    package static let processOrigin = FixedInstant(offset: .zero)

    package var instant: ContinuousClock.Instant { Self.origin + self.offset }

    package static func < (lhs: Self, rhs: Self) -> Bool { lhs.offset < rhs.offset }
}
