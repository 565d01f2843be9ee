import InLongAgent
import NIOCore
import Testing

@Suite struct LineSplitterTests {
    private func split(_ chunks: [String], max: Int = 100, policy: LineSplitter.OverlongPolicy = .truncate)
        -> (lines: [String], ends: [Int64], splitter: LineSplitter)
    {
        var splitter = LineSplitter(maxLineLength: max, overlong: policy)
        var lines: [LineSplitter.Line] = []
        for chunk in chunks { splitter.consume(ByteBuffer(string: chunk), into: &lines) }
        return (lines.map { String(buffer: $0.body) }, lines.map(\.end), splitter)
    }

    @Test func linesAcrossChunksAreJoined() {
        let result = self.split(["ab", "c\nde", "f\n", "\n", "g"])
        #expect(result.lines == ["abc", "def", ""])
        #expect(result.ends == [4, 8, 9])
        #expect(result.splitter.pendingBytes == 1)
        #expect(result.splitter.offset == 10)
    }

    @Test func aPartialLastLineIsHeldUntilItsNewline() {
        var splitter = LineSplitter(maxLineLength: 100)
        var lines: [LineSplitter.Line] = []
        splitter.consume(ByteBuffer(string: "one\ntw"), into: &lines)
        #expect(lines.map { String(buffer: $0.body) } == ["one"])
        #expect(lines.last?.end == 4)
        splitter.consume(ByteBuffer(string: "o\n"), into: &lines)
        #expect(lines.map { String(buffer: $0.body) } == ["one", "two"])
        #expect(lines.last?.end == 8)
    }

    @Test func crlfEndingsLoseTheirCarriageReturn() {
        #expect(self.split(["a\r\nb\r", "\n"]).lines == ["a", "b"])
    }

    @Test func overlongLinesAreTruncatedAndCounted() {
        let result = self.split(["0123456789ABC\nok\n", "xxxx", "xxxxxxxxxx\n"], max: 8)
        #expect(result.lines == ["01234567", "ok", "xxxxxxxx"])
        #expect(result.ends == [14, 17, 32])
        #expect(result.splitter.overlongLines == 2)
    }

    @Test func overlongLinesCanBeSkipped() {
        let result = self.split(["0123456789ABC\nok\n", "xxxx", "xxxxxxxxxx\nend\n"], max: 8, policy: .skip)
        #expect(result.lines == ["ok", "end"])
        #expect(result.ends == [17, 36])
        #expect(result.splitter.overlongLines == 2)
    }

    @Test func anEndlessLineNeverHoldsMoreThanTheMaximum() {
        var splitter = LineSplitter(maxLineLength: 1024)
        var lines: [LineSplitter.Line] = []
        let chunk = ByteBuffer(repeating: UInt8(ascii: "x"), count: 64 << 10)
        for _ in 0..<64 { splitter.consume(chunk, into: &lines) }
        #expect(lines.isEmpty)
        #expect(splitter.pendingBytes == 1024)
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
}
