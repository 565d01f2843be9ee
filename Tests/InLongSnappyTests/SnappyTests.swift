import InLongWire
import InLongSnappy
import Testing

@Suite struct SnappyTests {
    // MARK: Round trips

    static let shapedInputs: [(String, [UInt8])] = [
        ("empty", []),
        ("one byte", [0x61]),
        ("sixteen bytes", Array("0123456789abcdef".utf8)),
        ("seventeen bytes", Array("0123456789abcdefg".utf8)),
        ("zeros 100k", [UInt8](repeating: 0, count: 100_000)),
        ("repetitive", Array(String(repeating: "abcabcabd", count: 5000).utf8)),
        ("log lines", TestData.logLines(bytes: 200_000)),
        ("random 70k", TestData.random(count: 70_000, seed: 1)),
        ("random 1 MiB", TestData.random(count: 1 << 20, seed: 2)),
        ("log 1 MiB", TestData.logLines(bytes: 1 << 20)),
        ("block boundary", TestData.logLines(bytes: 65536)),
        ("block boundary + 1", TestData.logLines(bytes: 65537)),
    ]

    @Test(arguments: Self.shapedInputs.map(\.0))
    func roundTripShapedInput(name: String) throws {
        let input = Self.shapedInputs.first { $0.0 == name }!.1
        let compressed = Snappy.compress(input)
        #expect(compressed.count <= Snappy.maxCompressedLength(forInputLength: input.count))
        #expect(try Snappy.uncompressedLength(of: compressed) == input.count)
        let output = try Snappy.decompress(compressed, maxUncompressedLength: input.count)
        #expect(output == input)
    }

    @Test func compressesRedundantData() {
        let log = TestData.logLines(bytes: 100_000)
        #expect(Snappy.compress(log).count < log.count / 3)
        let zeros = [UInt8](repeating: 0, count: 100_000)
        #expect(Snappy.compress(zeros).count < 5_000)
    }

    @Test func incompressibleDataGrowsOnlyByFraming() {
        let random = TestData.random(count: 100_000, seed: 7)
        let compressed = Snappy.compress(random)
        #expect(compressed.count <= random.count + random.count / 100 + 8)
    }

    @Test func randomRoundTrips() throws {
        var rng = SplitMix64(seed: 42)
        for _ in 0..<300 {
            let length = Int(rng.next() % 5000)
            // Mix runs of a small alphabet with random bytes, so both literals and copies of all sizes occur.
            var input = [UInt8]()
            input.reserveCapacity(length)
            while input.count < length {
                let runLength = Int(rng.next() % 80) + 1
                if rng.next() % 2 == 0 {
                    for _ in 0..<runLength { input.append(UInt8(truncatingIfNeeded: rng.next())) }
                } else {
                    let alphabet = UInt8(rng.next() % 4) + 1
                    for _ in 0..<runLength { input.append(97 + UInt8(rng.next() % UInt64(alphabet))) }
                }
            }
            input = Array(input.prefix(length))
            let output = try Snappy.decompress(Snappy.compress(input), maxUncompressedLength: length)
            #expect(output == input)
        }
    }

    // MARK: Reference encoder output

    /// Produced by the reference snappy encoder (snap/libsnappy algorithm).
    @Test(arguments: [
        ("00", ""),
        ("010061", "a"),
        ("231468656c6c6f20720600", "hello hello hello hello hello hello"),
    ])
    func decodesReferenceEncoderOutput(hex: String, text: String) throws {
        let output = try Snappy.decompress(TestData.bytes(hex: hex), maxUncompressedLength: 1000)
        #expect(output == Array(text.utf8))
    }

    @Test func decodesFourByteOffsetCopies() throws {
        // 8 literal bytes then a copy with a 4-byte offset of 8, length 8.
        let block: [UInt8] = [16, 7 << 2] + Array("abcdefgh".utf8) + [(8 - 1) << 2 | 3, 8, 0, 0, 0]
        #expect(try Snappy.decompress(block, maxUncompressedLength: 16) == Array("abcdefghabcdefgh".utf8))
    }

    @Test func decodesLongLiteralLengthForms() throws {
        for length in [59, 60, 61, 255, 256, 257, 65_536, 70_000] {
            let data = TestData.random(count: length, seed: UInt64(length))
            var block = [UInt8]()
            var v = UInt32(length)
            while v >= 0x80 {
                block.append(UInt8(truncatingIfNeeded: v) | 0x80)
                v >>= 7
            }
            block.append(UInt8(v))
            let n = length - 1
            if n < 60 {
                block.append(UInt8(n << 2))
            } else {
                // Always use the 4-byte form, which the encoder never emits, to cover it too.
                block.append(63 << 2)
                block += [UInt8(n & 0xff), UInt8((n >> 8) & 0xff), UInt8((n >> 16) & 0xff), UInt8(n >> 24)]
            }
            block += data
            #expect(try Snappy.decompress(block, maxUncompressedLength: length) == data)
        }
    }

    // MARK: Hostile input

    @Test(arguments: [
        ("", SnappyError.Code.truncatedPreamble),
        ("80", .truncatedPreamble),
        ("ffffffffff01", .invalidPreamble),
        ("ffffffff7f", .invalidPreamble),
        ("0500", .truncatedElement),
        ("0510616263", .truncatedElement),
        ("030c61626364", .outputOverrun),
        ("04006101", .truncatedElement),
        ("04006105", .truncatedElement),
        ("0400610500", .invalidOffset),
        ("04006105ff", .invalidOffset),
        ("0500610d01", .outputOverrun),
        ("060061", .lengthMismatch),
        ("0000", .trailingBytes),
        ("080461620e0000", .invalidOffset),
        ("08046162070300000000", .invalidOffset),
        ("080061060500", .invalidOffset),
    ])
    func rejectsMalformedBlocks(hex: String, code: SnappyError.Code) {
        #expect {
            _ = try Snappy.decompress(TestData.bytes(hex: hex), maxUncompressedLength: 1 << 20)
        } throws: { error in
            (error as? SnappyError)?.code == code
        }
    }

    @Test func refusesDeclaredLengthAboveLimitBeforeAllocating() {
        // Declares 4 GiB - 1 in five bytes; must fail on the limit, not try to allocate.
        let block: [UInt8] = [0xff, 0xff, 0xff, 0xff, 0x0f, 0x00]
        #expect(throws: SnappyError(.lengthLimitExceeded, offset: 0)) {
            try Snappy.decompress(block, maxUncompressedLength: 64 << 20)
        }
    }

    @Test func randomGarbageNeverTraps() {
        var rng = SplitMix64(seed: 99)
        var failures = 0
        for _ in 0..<20_000 {
            let length = Int(rng.next() % 64)
            var garbage = (0..<length).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            // Keep the declared length small and plausible so the element decoder is exercised.
            if !garbage.isEmpty { garbage[0] &= 0x7f }
            do {
                let output = try Snappy.decompress(garbage, maxUncompressedLength: 256)
                #expect(output.count == Int(garbage[0]))
            } catch {
                failures += 1
            }
        }
        #expect(failures > 0)
    }

    @Test func mutatedValidBlocksNeverTrap() {
        let input = TestData.logLines(bytes: 4096)
        let valid = Snappy.compress(input)
        var rng = SplitMix64(seed: 5)
        for _ in 0..<5_000 {
            var block = valid
            for _ in 0..<Int(rng.next() % 4 + 1) {
                let index = Int(rng.next() % UInt64(block.count))
                block[index] = UInt8(truncatingIfNeeded: rng.next())
            }
            if rng.next() % 4 == 0 { block = Array(block.prefix(Int(rng.next() % UInt64(block.count)))) }
            if let output = try? Snappy.decompress(block, maxUncompressedLength: 8192) {
                #expect(output.count <= 8192)
            }
        }
    }

    @Test func decompressIntoRejectsSmallOutputBuffer() throws {
        let compressed = Snappy.compress(Array("hello snappy".utf8))
        var output = [UInt8](repeating: 0, count: 4)
        #expect(throws: SnappyError(.outputBufferTooSmall, offset: 0)) {
            try compressed.withUnsafeBytes { source in
                try output.withUnsafeMutableBytes { try Snappy.decompress(source, into: $0) }
            }
        }
    }
}
