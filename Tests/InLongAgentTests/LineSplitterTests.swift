import InLongWire
import NIOCore
import Testing

@testable import InLongAgent

@Suite struct LineSplitterTests {
    private func split(
        _ chunks: [String],
        max: Int = 100,
        policy: LineSplitter.OverlongPolicy = .truncate,
        finish: Bool = false
    ) -> (lines: [String], ends: [Int64], splitter: LineSplitter) {
        var splitter = LineSplitter(maxLineLength: max, overlong: policy)
        var lines: [LineSplitter.Line] = []
        for chunk in chunks { splitter.consume(ByteBuffer(string: chunk), into: &lines) }
        if finish { splitter.finish { lines.append(.init(body: $0, end: $1)) } }
        return (lines.map { String(buffer: $0.body) }, lines.map(\.end), splitter)
    }

    @Test func linesAcrossChunksAreJoinedAndEmptyLinesCounted() {
        let result = self.split(["ab", "c\nde", "f\n", "\n", "g"])
        #expect(result.lines == ["abc", "def"])
        #expect(result.ends == [4, 8])
        #expect(result.splitter.emptyLines == 1)
        #expect(result.splitter.lineBoundary == 9)
        #expect(result.splitter.pendingBytes == 1)
        #expect(result.splitter.offset == 10)
    }

    @Test func aPartialLastLineIsHeldUntilItsNewline() {
        var splitter = LineSplitter(maxLineLength: 100)
        var lines: [LineSplitter.Line] = []
        splitter.consume(ByteBuffer(string: "one\ntw"), into: &lines)
        #expect(lines.map { String(buffer: $0.body) } == ["one"])
        #expect(lines.last?.end == 4)
        #expect(splitter.lineBoundary == 4)
        splitter.consume(ByteBuffer(string: "o\n"), into: &lines)
        #expect(lines.map { String(buffer: $0.body) } == ["one", "two"])
        #expect(lines.last?.end == 8)
    }

    @Test func finishCompletesALastLineWithoutItsNewline() {
        let result = self.split(["one\ntw", "o\r"], finish: true)
        #expect(result.lines == ["one", "two"])
        #expect(result.ends == [4, 8])
        #expect(result.splitter.lineBoundary == 8)
        #expect(result.splitter.pendingBytes == 0)
    }

    @Test func crlfEndingsLoseTheirCarriageReturn() {
        #expect(self.split(["a\r\nb\r", "\n"]).lines == ["a", "b"])
    }

    @Test func theCarriageReturnDoesNotCountTowardsTheMaximum() {
        // 8 bytes and a \r, in one chunk and split across chunks: not overlong.
        #expect(self.split(["01234567\r\n"], max: 8).splitter.overlongLines == 0)
        let split = self.split(["0123", "4567\r", "\n"], max: 8)
        #expect(split.lines == ["01234567"])
        #expect(split.splitter.overlongLines == 0)
    }

    @Test func overlongLinesAreTruncatedAndCounted() {
        let result = self.split(["0123456789ABC\nok\n", "xxxx", "xxxxxxxxxx\n"], max: 8)
        #expect(result.lines == ["01234567", "ok", "xxxxxxxx"])
        #expect(result.ends == [14, 17, 32])
        #expect(result.splitter.overlongLines == 2)
    }

    @Test func overlongLinesCanBeSkipped() {
        let result = self.split(["0123456789ABC\nok\n", "xxxx", "xxxxxxxxxx\nend\n", "yyyyyyyyyyyy\n"], max: 8, policy: .skip)
        #expect(result.lines == ["ok", "end"])
        #expect(result.ends == [17, 36])
        #expect(result.splitter.overlongLines == 3)
        // Past the skipped last line: a reader commits to the end of what it read.
        #expect(result.splitter.lineBoundary == 49)
    }

    @Test func anOverlongLineCanStopTheSplitting() {
        let result = self.split(["ok\n0123", "456789ABC\nnever\n"], max: 8, policy: .fail)
        #expect(result.lines == ["ok"])
        #expect(result.splitter.failedLineStart == 3)
        #expect(result.splitter.overlongLines == 1)
        // Stops as soon as the line is known to be too long, before its newline: an endless line is not waited for.
        let endless = self.split(["ok\n", String(repeating: "x", count: 20)], max: 8, policy: .fail)
        #expect(endless.splitter.failedLineStart == 3)
    }

    @Test func anEndlessLineNeverHoldsMoreThanTheMaximumAndOneByte() {
        var splitter = LineSplitter(maxLineLength: 1024)
        var lines: [LineSplitter.Line] = []
        let chunk = ByteBuffer(repeating: UInt8(ascii: "x"), count: 64 << 10)
        for _ in 0..<64 { splitter.consume(chunk, into: &lines) }
        #expect(lines.isEmpty)
        #expect(splitter.pendingBytes == 1025)
        #expect(splitter.offset == 64 * (64 << 10))
    }

    @Test func resetStartsOverAtTheGivenOffset() {
        var splitter = LineSplitter(maxLineLength: 100, startingAt: 500)
        var lines: [LineSplitter.Line] = []
        splitter.consume(ByteBuffer(string: "partial"), into: &lines)
        splitter.reset(to: 0)
        splitter.consume(ByteBuffer(string: "new\n"), into: &lines)
        #expect(lines.map { String(buffer: $0.body) } == ["new"])
        #expect(lines.map(\.end) == [4])
    }

    // MARK: Random chunkings against a reference

    /// What splitting the whole input at once gives: the rule written plainly, byte by byte.
    private struct Expected: Equatable {
        var lines: [[UInt8]] = []
        var ends: [Int64] = []
        var overlong = 0
        var empty = 0
        var failedAt: Int64?
        var boundary: Int64 = 0
    }

    private static func reference(_ input: [UInt8], max: Int, policy: LineSplitter.OverlongPolicy, finished: Bool) -> Expected {
        var expected = Expected()
        var start = 0
        while start < input.count {
            let newline = input[start...].firstIndex(of: UInt8(ascii: "\n"))
            guard newline != nil || finished else {
                // A held last line: with `.fail`, known to be overlong once it passed the maximum and one byte.
                if policy == .fail, input.count - start > max + 1 {
                    expected.overlong += 1
                    expected.failedAt = Int64(start)
                }
                break
            }
            let end = newline.map { $0 + 1 } ?? input.count
            var body = Array(input[start..<(newline ?? input.count)])
            if body.last == UInt8(ascii: "\r") { body.removeLast() }
            if body.count > max {
                expected.overlong += 1
                switch policy {
                case .fail:
                    expected.failedAt = Int64(start)
                    return expected
                case .skip: body = []
                case .truncate: body = Array(body.prefix(max))
                }
                if policy == .truncate {
                    expected.lines.append(body)
                    expected.ends.append(Int64(end))
                }
            } else if body.isEmpty {
                expected.empty += 1
            } else {
                expected.lines.append(body)
                expected.ends.append(Int64(end))
            }
            expected.boundary = Int64(end)
            start = end
        }
        return expected
    }

    /// Text of short lines, empty lines, CRLF endings and lines around and far over the maximum.
    private static func randomInput(max: Int, using random: inout SplitMix64) -> [UInt8] {
        var bytes: [UInt8] = []
        for _ in 0..<Int.random(in: 0...40, using: &random) {
            let length: Int
            switch Int.random(in: 0..<10, using: &random) {
            case 0: length = 0
            case 1: length = max + Int.random(in: -1...1, using: &random)
            case 2: length = max + Int.random(in: 2...(3 * max), using: &random)
            default: length = Int.random(in: 1...Swift.max(1, max - 1), using: &random)
            }
            bytes += (0..<length).map { _ in UInt8.random(in: UInt8(ascii: "a")...UInt8(ascii: "z"), using: &random) }
            if Bool.random(using: &random) && Int.random(in: 0..<4, using: &random) == 0 { bytes.append(UInt8(ascii: "\r")) }
            bytes.append(UInt8(ascii: "\n"))
        }
        // Sometimes a last line without its newline, perhaps overlong, perhaps ending in \r.
        if Bool.random(using: &random) {
            bytes += (0..<Int.random(in: 1...(2 * max + 2), using: &random)).map { _ in UInt8(ascii: "t") }
            if Bool.random(using: &random) { bytes.append(UInt8(ascii: "\r")) }
        }
        return bytes
    }

    @Test(arguments: LineSplitter.OverlongPolicy.allCases)
    func randomChunkingsSplitLikeTheWholeInput(policy: LineSplitter.OverlongPolicy) {
        for seed in UInt64(1)...300 {
            var random = SplitMix64(seed: seed)
            let max = Int.random(in: 1...24, using: &random)
            let input = Self.randomInput(max: max, using: &random)
            let finished = Bool.random(using: &random)
            var splitter = LineSplitter(maxLineLength: max, overlong: policy)
            var got = Expected()
            let collect = { (body: ByteBuffer, end: Int64) in
                got.lines.append(Array(body.readableBytesView))
                got.ends.append(end)
            }
            // The bodies-only path (inlong send's, the agent's) on the same chunks.
            var twin = LineSplitter(maxLineLength: max, overlong: policy)
            var bodies: [ByteBuffer] = []
            var start = 0
            while start < input.count {
                // Chunks of one byte to more than a line, so that lines, \r and \n fall on every kind of edge.
                let length = min(input.count - start, Int.random(in: 1...(2 * max + 4), using: &random))
                splitter.consume(ByteBuffer(bytes: input[start..<(start + length)]), collect)
                twin.consume(ByteBuffer(bytes: input[start..<(start + length)]), appendingTo: &bodies)
                start += length
                #expect(splitter.pendingBytes <= max + 1, "seed \(seed)")
            }
            if finished {
                splitter.finish(collect)
                twin.finish { body, _ in bodies.append(body) }
            }
            #expect(bodies.map { Array($0.readableBytesView) } == got.lines, "seed \(seed)")
            #expect(twin.lineBoundary == splitter.lineBoundary && twin.overlongLines == splitter.overlongLines, "seed \(seed)")
            got.overlong = splitter.overlongLines
            got.empty = splitter.emptyLines
            got.failedAt = splitter.failedLineStart
            got.boundary = splitter.lineBoundary
            var expected = Self.reference(input, max: max, policy: policy, finished: finished)
            // After a failure the boundary is where the failed line starts.
            if let failedAt = expected.failedAt { expected.boundary = failedAt }
            #expect(got == expected, "seed \(seed), max \(max), \(policy), finished \(finished)")
            if policy != .fail || got.failedAt == nil { #expect(splitter.offset == Int64(input.count), "seed \(seed)") }
        }
    }
}
