import InLongWire
import NIOCore
import Testing

@testable import InLongAgent

/// The assembler judges one-line records by the bytes it saw when their line came, and longer records by their
/// joined body: seeded random lines, multiline rules and filters (anchored and not, literal and not), against a
/// reference that joins with the machine alone and filters every record's body; after every line the records kept,
/// their offsets and the count filtered agree.
@Suite struct RecordAssemblerTests {
    private struct Violation: Error, CustomStringConvertible {
        var description: String
    }

    static func run(seed: UInt64) throws {
        var random = SplitMix64(seed: seed)
        let patterns = ["^ ", "b", "^a", "c$", "[0-9]", "x y", "^(a|b)[0-9]"]
        func pick() throws -> LineMatcher { try LineMatcher(patterns.randomElement(using: &random)!) }
        let multiline = MultilineStateMachine.Rules(
            negate: Bool.random(using: &random),
            match: Bool.random(using: &random) ? .after : .before,
            maxLines: Int.random(in: 1...5, using: &random),
            maxBytes: Int.random(in: 20...80, using: &random)
        )
        var rules = RecordAssembler.Rules()
        let pattern = try pick()
        rules.multiline = Bool.random(using: &random) ? (pattern, multiline) : nil
        rules.include = try (0..<Int.random(in: 0...2, using: &random)).map { _ in try pick() }
        rules.exclude = try (0..<Int.random(in: 0...2, using: &random)).map { _ in try pick() }
        rules.offsets = true
        var assembler = RecordAssembler(rules)
        var reference = rules.multiline.map { MultilineStateMachine(rules: $0.rules) }
        var kept: [ByteBuffer] = []
        var offsets: [Int64] = []
        var expected: [(String, Int64)] = []
        var filtered = 0
        func keeps(_ body: ByteBuffer) -> Bool {
            (rules.include.isEmpty || LineMatcher.any(rules.include, body)) && (rules.exclude.isEmpty || !LineMatcher.any(rules.exclude, body))
        }
        func expect(_ record: MultilineStateMachine.Record) {
            if keeps(record.body) { expected.append((String(buffer: record.body), record.start)) } else { filtered += 1 }
        }
        var offset: Int64 = 0
        let now = ContinuousClock.now
        for step in 0..<300 {
            let length = Int.random(in: 1...12, using: &random)
            let body = ByteBuffer(string: String((0..<length).map { _ in " abcxy0123".randomElement(using: &random)! }))
            let end = offset + Int64(length + 1)
            body.withUnsafeReadableBytes { bytes in
                assembler.line(body, bytes: bytes, start: offset, end: end, into: &kept, offsets: &offsets)
            }
            // The read that brought the line ends (a reader gives the time once per read).
            if Bool.random(using: &random) { assembler.linesCame(at: now) }
            if reference != nil {
                reference!.line(body, start: offset, end: end, matched: pattern.matches(body), now: now) { expect($0) }
            } else {
                expect(MultilineStateMachine.Record(body: body, start: offset, end: end, lines: 1))
            }
            offset = end
            if step == 299 {
                // The last record of a quiet file, at its timeout.
                assembler.linesCame(at: now)
                assembler.tick(now: now + .seconds(10), into: &kept, offsets: &offsets)
                reference?.tick(now: now + .seconds(10)) { expect($0) }
            }
            guard kept.map({ String(buffer: $0) }) == expected.map(\.0), offsets == expected.map(\.1), assembler.filteredRecords == filtered else {
                throw Violation(description: "seed \(seed), line \(step): kept \(kept.count), expected \(expected.count); filtered \(assembler.filteredRecords), expected \(filtered)")
            }
        }
    }

    @Test(arguments: 0..<100) func recordsAreKeptAsTheirWholeBodiesSay(seed: UInt64) throws {
        try Self.run(seed: seed)
    }
}
