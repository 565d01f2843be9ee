import InLongSnappy
import InLongWire
import Testing

/// Inputs built to reach each fast path of the compressor (16-byte literal copies, the short-copy forms, the
/// 8-byte match compare and its carry-over of the next word, block ends), each checked by a round trip through
/// our decoder, against `maxCompressedLength`, and where the input fixes it, by the elements the block holds.
@Suite struct SnappyCompressorFastPathTests {
    /// One element of a raw snappy block.
    enum Element: Equatable {
        case literal(length: Int)
        case copy(length: Int, offset: Int, size: Int)
    }

    /// Parses a valid raw block into its elements.
    static func elements(of block: [UInt8]) throws -> [Element] {
        var p = 0
        while try #require(block.indices.contains(p) ? block[p] : nil) & 0x80 != 0 { p += 1 }
        p += 1
        var result = [Element]()
        while p < block.count {
            let tag = Int(block[p])
            switch tag & 3 {
            case 0:
                var n = tag >> 2
                if n >= 60 {
                    let extra = n - 59
                    n = 0
                    for k in 0..<extra { n |= Int(block[p + 1 + k]) << (8 * k) }
                    p += extra
                }
                result.append(.literal(length: n + 1))
                p += 1 + n + 1
            case 1:
                result.append(.copy(length: 4 + (tag >> 2) & 7, offset: (tag >> 5) << 8 | Int(block[p + 1]), size: 2))
                p += 2
            case 2:
                result.append(.copy(length: 1 + tag >> 2, offset: Int(block[p + 1]) | Int(block[p + 2]) << 8, size: 3))
                p += 3
            default:
                result.append(.copy(length: 1 + tag >> 2, offset: 0, size: 5))
                p += 5
            }
        }
        return result
    }

    /// Copies of one match (split in pieces of at most 64 bytes) as one (length, offset, size of the last piece).
    static func mergedCopies(_ elements: [Element]) -> [(length: Int, offset: Int, size: Int)] {
        var result = [(length: Int, offset: Int, size: Int)]()
        var previousWasCopy = false
        for element in elements {
            guard case let .copy(length, offset, size) = element else {
                previousWasCopy = false
                continue
            }
            if previousWasCopy, let last = result.last, last.offset == offset {
                result[result.count - 1] = (last.length + length, offset, size)
            } else {
                result.append((length, offset, size))
            }
            previousWasCopy = true
        }
        return result
    }

    @discardableResult
    static func roundTrip(_ input: [UInt8], _ comment: Comment? = nil) throws -> [UInt8] {
        let compressed = Snappy.compress(input)
        #expect(compressed.count <= Snappy.maxCompressedLength(forInputLength: input.count), comment)
        let output = try Snappy.decompress(compressed, maxUncompressedLength: input.count)
        #expect(output == input, comment)
        return compressed
    }

    static func randomBytes(_ count: Int, _ rng: inout SplitMix64, in range: ClosedRange<UInt8> = 0...255) -> [UInt8] {
        (0..<count).map { _ in range.lowerBound &+ UInt8(truncatingIfNeeded: rng.next() % UInt64(range.count)) }
    }

    // The tests below build inputs from disjoint byte ranges, so that no match starts or ends by chance, and end
    // them with 16 KiB of filler, so that the hash table has its full size. A hash collision can still move a
    // match by a few bytes, so they require most, not all, elements to come out exactly as built.

    /// A literal of every length 1...70 and of the 2- and 3-byte tag sizes, between two copies: the literal
    /// fast path copies 16 bytes at a time up to 64 bytes, longer ones go through memmove.
    @Test func literalsOfEveryLengthBetweenCopies() throws {
        var rng = SplitMix64(seed: 17)
        let piece = Self.randomBytes(32, &rng, in: 0...127)
        var exact = 0
        for length in Array(1...70) + [100, 255, 256, 257, 258, 1000, 4096, 40_000] {
            // piece, piece (a copy), `length` new bytes (the literal), piece again (a copy), filler.
            let literal = Self.randomBytes(length, &rng, in: 128...255)
            let filler = Self.randomBytes(16_384, &rng, in: 128...255)
            let input = piece + piece + literal + piece + filler
            let compressed = try Self.roundTrip(input, "literal \(length)")
            let literals = try Self.elements(of: compressed).compactMap { element -> Int? in
                if case let .literal(n) = element { return n }
                return nil
            }
            #expect(literals.contains { $0 >= length }, "literal \(length): \(literals)")
            // The search probes every position for its first 32 steps, so short literals end exactly at the copy.
            if length <= 32 && literals.contains(length) { exact += 1 }
        }
        #expect(exact >= 28)
    }

    /// Copies of 4...70 bytes (and the 64-byte splits above) at offsets on both sides of 2048, where the 2-byte
    /// form ends, each between bytes that fix its exact length.
    @Test(arguments: [100, 1000, 2047, 2048, 2049, 5000, 40_000])
    func copiesOfEachLengthAndOffset(distance: Int) throws {
        var rng = SplitMix64(seed: UInt64(distance))
        // The gap repeats a 16-byte unit: its copy ends right where the word comes back, which is looked up there.
        let unit = Self.randomBytes(16, &rng, in: 0...63)
        let lengths = Array(4...70) + [127, 128, 131, 132, 200, 1000]
        var exact = 0
        for length in lengths {
            let word = Self.randomBytes(length, &rng, in: 64...127)
            let gapLength = max(64, distance - length - 1)
            let gap = (0..<gapLength).map { unit[$0 % unit.count] }
            let prefix = Self.randomBytes(8, &rng, in: 128...191)
            let filler = Self.randomBytes(16_384, &rng, in: 128...191)
            let input = prefix + word + [0xF0] + gap + word + [0xF1] + filler
            let offset = length + 1 + gapLength
            let compressed = try Self.roundTrip(input, "length \(length) distance \(distance)")
            let copies = Self.mergedCopies(try Self.elements(of: compressed)).filter { $0.offset == offset }
            #expect(copies.count == 1, "length \(length) offset \(offset): \(copies)")
            guard let copy = copies.first else { continue }
            #expect(copy.length <= length, "length \(length) offset \(offset): \(copies)")
            if copy.length == length { exact += 1 }
            if copy.length < 12 {
                #expect(copy.size == (offset < 2048 ? 2 : 3), "length \(length) offset \(offset)")
            }
        }
        #expect(exact >= lengths.count * 9 / 10)
    }

    /// A match that runs to the very end of a block, for block lengths from the smallest searched (17) up, at
    /// exactly 64 KiB, and in a second block: the byte-by-byte end of the match extension.
    @Test func matchesRunningToTheBlockEnd() throws {
        var rng = SplitMix64(seed: 3)
        let totals = Array(0...100) + Array(65_520...65_536) + [65_536 + 17, 65_536 + 40, 131_072]
        for total in totals {
            for matchLength in [4, 5, 8, 11, 12, 15, 16, 19, 20, 31, 40] where matchLength * 2 <= total {
                // Log text keeps the search dense over a whole block; short inputs use random bytes.
                let fillerLength = total - matchLength
                let filler =
                    total > 1000 ? TestData.logLines(bytes: fillerLength) : Self.randomBytes(fillerLength, &rng)
                let input = filler + filler.prefix(matchLength)
                try Self.roundTrip(input, "total \(total) match \(matchLength)")
            }
        }
    }

    /// Every input length 0...100 for random, small-alphabet, periodic and text-like content.
    @Test func everySmallInputLength() throws {
        var rng = SplitMix64(seed: 100)
        let text = Array("1700000001,user12,view,3\n1700000002,user7,click,1\n1700000002,user12,view,4\n".utf8)
        for length in 0...100 {
            try Self.roundTrip(Self.randomBytes(length, &rng), "random \(length)")
            try Self.roundTrip((0..<length).map { _ in UInt8(ascii: "a") + UInt8(rng.next() % 2) }, "ab \(length)")
            try Self.roundTrip((0..<length).map { UInt8($0 % 3) }, "period 3, \(length)")
            try Self.roundTrip((0..<length).map { text[$0 % text.count] }, "text \(length)")
        }
    }

    /// Blocks of exactly 64 KiB (one, two and three), highly repetitive and incompressible.
    @Test(arguments: [1, 2, 3])
    func wholeBlocks(count: Int) throws {
        var rng = SplitMix64(seed: UInt64(count))
        let length = count * 65_536
        try Self.roundTrip([UInt8](repeating: 0, count: length))
        for period in 1...8 {
            let unit = Self.randomBytes(period, &rng)
            try Self.roundTrip((0..<length).map { unit[$0 % period] }, "period \(period)")
        }
        let random = Self.randomBytes(length, &rng)
        let compressed = try Self.roundTrip(random)
        // Incompressible data grows only by the framing of each literal.
        #expect(compressed.count <= length + 16 * count)
        try Self.roundTrip(TestData.logLines(bytes: length))
    }

    /// Seeded mixes of fresh bytes and repeats of earlier bytes at any offset and length, up to two blocks long.
    @Test func randomMixesOfLiteralsAndRepeats() throws {
        var rng = SplitMix64(seed: 2027)
        for round in 0..<150 {
            let length = round % 3 == 0 ? Int(rng.next() % 140_000) : Int(rng.next() % 3000)
            var input = [UInt8]()
            input.reserveCapacity(length)
            while input.count < length {
                if input.count < 8 || rng.next() % 3 == 0 {
                    input += Self.randomBytes(Int(rng.next() % 80) + 1, &rng)
                } else {
                    let offset = Int(rng.next() % UInt64(min(input.count, 70_000))) + 1
                    for _ in 0..<Int(rng.next() % 300) + 1 { input.append(input[input.count - offset]) }
                }
            }
            try Self.roundTrip(Array(input.prefix(length)), "round \(round)")
        }
    }
}
