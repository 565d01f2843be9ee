import InLongWire
import InLongSnappy
import Testing

/// Round trips of generated inputs through `compress` and `decompress`. The compressor's match extension has an
/// 8-byte fast path and a byte-by-byte tail; these inputs put mismatches at every offset of both, near block ends.
@Suite struct SnappyCompressorPropertyTests {
    private static func roundTrip(_ input: [UInt8]) throws -> [UInt8] {
        let compressed = Snappy.compress(input)
        #expect(compressed.count <= Snappy.maxCompressedLength(forInputLength: input.count))
        return try Snappy.decompress(compressed, maxUncompressedLength: input.count)
    }

    /// A mismatch inside an 8-byte comparison, within 8 bytes of the block end: the match must stop there.
    @Test func matchEndingNearBlockEndIsNotExtendedWithWrongBytes() throws {
        let input = Array("abcdefghabcdefghabcezzzz".utf8)
        #expect(try Self.roundTrip(input) == input)
    }

    /// The CSV events that were stored altered end to end.
    @Test func csvEventsRoundTrip() throws {
        let lines = [
            "1700000000,user1,click,3", "1700000001,user2,view,1", "1700000002,user3,click,2",
            "1700000003,user1,view,4", "1700000004,user4,purchase,1", "1700000005,user2,click,5",
            "1700000006,user5,view,2", "1700000007,user3,view,3", "1700000008,user2,view,3",
            "1700000009,user5,view,5",
        ]
        for count in 1...lines.count {
            let input = Array(lines.prefix(count).joined(separator: "\n").utf8)
            #expect(try Self.roundTrip(input) == input)
        }
    }

    /// Every mismatch position (0...15) after a repeated prefix, for every tail length up to 24 bytes.
    @Test func everyMismatchOffsetAndTailLength() throws {
        let unit = Array("abcdefghijklmnop".utf8)
        for prefixRepeats in 1...3 {
            for mismatchAt in 0..<unit.count {
                for tail in 0...24 {
                    var input = [UInt8]()
                    for _ in 0...prefixRepeats { input += unit }
                    var changed = unit
                    changed[mismatchAt] = UInt8(ascii: "Z")
                    input += changed
                    input += [UInt8](repeating: UInt8(ascii: "y"), count: tail)
                    #expect(try Self.roundTrip(input) == input, "repeats \(prefixRepeats) at \(mismatchAt) tail \(tail)")
                }
            }
        }
    }

    /// Lengths around the 64 KiB block boundary and 8-byte boundaries, for repetitive data whose matches cross them.
    @Test(arguments: [8, 15, 16, 17, 23, 24, 25, 31, 32, 33, 63, 64, 65])
    func lengthsAroundBoundaries(period: Int) throws {
        var rng = SplitMix64(seed: UInt64(period))
        let pattern = (0..<period).map { _ in UInt8(ascii: "a") + UInt8(rng.next() % 3) }
        for base in [0, 65536, 131072] {
            for delta in -20...20 where base + delta > 0 {
                let length = base + delta
                var input = [UInt8](repeating: 0, count: length)
                for index in 0..<length { input[index] = pattern[index % period] }
                // Disturb a byte near the end, so the last match ends inside the tail.
                if length > 10 { input[length - 1 - Int(rng.next() % 10)] ^= 0x20 }
                #expect(try Self.roundTrip(input) == input, "period \(period) length \(length)")
            }
        }
    }

    /// Log-like text built from a small dictionary of fields, with short and long overlapping matches.
    @Test func generatedLogTextRoundTrips() throws {
        var rng = SplitMix64(seed: 2026)
        let words = [
            "GET", "POST", "/api/v1/items", "/api/v1/items/", "200", "404", "500", "user", "user1", "user12",
            "view", "click", "purchase", "2026-11-29T03:04:05Z", "ms=", "ok", "error", "timeout", ",", " ", "=",
        ].map { Array($0.utf8) }
        for _ in 0..<400 {
            let length = Int(rng.next() % 3000)
            var input = [UInt8]()
            while input.count < length {
                input += words[Int(rng.next() % UInt64(words.count))]
                if rng.next() % 4 == 0 { input += Array(String(rng.next() % 100_000).utf8) }
                if rng.next() % 8 == 0 { input.append(UInt8(ascii: "\n")) }
            }
            #expect(try Self.roundTrip(input) == input)
        }
    }

    /// Random bytes over a tiny alphabet: many short matches that end at every possible position.
    @Test func smallAlphabetRoundTrips() throws {
        var rng = SplitMix64(seed: 99)
        for round in 0..<2000 {
            let length = Int(rng.next() % 200) + 1
            let alphabet = UInt64(round % 3 + 2)
            let input = (0..<length).map { _ in UInt8(ascii: "a") + UInt8(rng.next() % alphabet) }
            #expect(try Self.roundTrip(input) == input)
        }
    }
}
