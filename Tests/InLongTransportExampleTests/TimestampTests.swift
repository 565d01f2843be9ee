import Foundation
import InLongWire
import Testing

@testable import InLongTransportExample

/// The server's timestamps are formatted once a second: each must read as formatting its own date would.
@Suite struct TimestampTests {
    @Test func aTimestampReadsAsItsDateFormatted() {
        let timestamps = ISO8601Timestamps()
        let start = Date(timeIntervalSince1970: 1_765_000_000)
        for offset in [0, 0.2, 0.999, 1, 1.5, 59.999, 60, 3_600.25, 3_600.75, 3_599.5] {
            let date = start.addingTimeInterval(offset)
            #expect(timestamps.string(for: date) == date.formatted(.iso8601), "at +\(offset) s")
        }
    }

    /// Dates in random order, some within the same second and some not, on a seeded generator.
    @Test(arguments: [UInt64(1), 2, 3]) func randomDatesReadAsFormatted(seed: UInt64) {
        var random = SplitMix64(seed: seed)
        let timestamps = ISO8601Timestamps()
        var date = Date(timeIntervalSince1970: 1_765_000_000)
        for _ in 0..<500 {
            // Mostly small steps (the same second again), sometimes back or far ahead.
            let step = Double(random.next() % 2_000) / 1_000 - (random.next() % 8 == 0 ? 3 : 0)
            date = date.addingTimeInterval(step)
            #expect(timestamps.string(for: date) == date.formatted(.iso8601))
        }
    }
}
