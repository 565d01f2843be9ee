import InLongWire
import NIOCore
import Testing

@testable import InLongAgent

/// Joining lines into records: Filebeat's four pattern/negate/match combinations, the limits, the timeout on a
/// simulated clock, and seeded random line sequences with invariants checked after every step.
@Suite struct MultilineStateMachineTests {
    typealias Machine = MultilineStateMachine

    /// Feeds `lines` (contiguous in a file, each with its newline) at `start`; `matches` stands for the pattern.
    private func join(
        _ lines: [String],
        rules: Machine.Rules,
        matches: (String) -> Bool,
        flush: Bool = true
    ) -> (records: [Machine.Record], machine: Machine) {
        var machine = Machine(rules: rules)
        var records: [Machine.Record] = []
        var offset: Int64 = 0
        let now = ContinuousClock.now
        for line in lines {
            let end = offset + Int64(line.utf8.count) + 1
            machine.line(ByteBuffer(string: line), start: offset, end: end, matched: matches(line), now: now) { records.append($0) }
            offset = end
        }
        if flush { machine.flush { records.append($0) } }
        return (records, machine)
    }

    private func bodies(_ records: [Machine.Record]) -> [String] {
        records.map { String(buffer: $0.body) }
    }

    @Test func aJavaStackTraceStartingWithATimestampIsOneRecord() {
        let lines = [
            "2026-12-06 01:00:00 ERROR boom",
            "java.lang.IllegalStateException: bad",
            "\tat com.example.A.run(A.java:10)",
            "\tat com.example.B.main(B.java:5)",
            "2026-12-06 01:00:01 INFO fine",
        ]
        // Filebeat: pattern '^\d{4}-', negate: true, match: after.
        let result = self.join(lines, rules: .init(negate: true, match: .after), matches: { $0.hasPrefix("2026-") }, flush: false)
        #expect(self.bodies(result.records) == [lines[0...3].joined(separator: "\n")])
        #expect(result.records[0].start == 0)
        #expect(result.records[0].end == Int64(lines[0...3].map { $0.utf8.count + 1 }.reduce(0, +)))
        #expect(result.records[0].lines == 4)
        // The last record waits: a reader commits no further than its start.
        #expect(result.machine.pendingStart == result.records[0].end)
    }

    @Test func indentedContinuationsJoinTheLineBefore() {
        // pattern '^[[:space:]]', negate: false, match: after.
        let result = self.join(["a", " a1", " a2", "b", "c", " c1"], rules: .init(), matches: { $0.hasPrefix(" ") })
        #expect(self.bodies(result.records) == ["a\n a1\n a2", "b", "c\n c1"])
        #expect(result.records.map(\.start) == [0, 10, 12])
    }

    @Test func aContinuationWithNothingBeforeStartsARecord() {
        let result = self.join([" orphan", "a", " a1"], rules: .init(), matches: { $0.hasPrefix(" ") })
        #expect(self.bodies(result.records) == [" orphan", "a\n a1"])
    }

    @Test func matchBeforeJoinsALineEndingInABackslashWithTheNext() {
        // pattern '\\$', negate: false, match: before: a line that matches goes on in the next.
        let result = self.join(["one \\", "two \\", "three", "four", "five \\", "six"], rules: .init(match: .before), matches: { $0.hasSuffix("\\") }, flush: false)
        #expect(self.bodies(result.records) == ["one \\\ntwo \\\nthree", "four", "five \\\nsix"])
        #expect(result.machine.pendingStart == nil)
    }

    @Test func negatedMatchBeforeEndsARecordAtTheMatchingLine() {
        // pattern 'END$', negate: true, match: before: lines that do not end in END go on in the next.
        let result = self.join(["a", "b", "c END", "d END", "e"], rules: .init(negate: true, match: .before), matches: { $0.hasSuffix("END") }, flush: false)
        #expect(self.bodies(result.records) == ["a\nb\nc END", "d END"])
        #expect(result.machine.pendingStart == 16)
    }

    @Test func aRecordAtMaxLinesIsCutAndTheRestStartsANewOne() {
        let lines = ["a"] + (1...5).map { " \($0)" }
        let result = self.join(lines, rules: .init(maxLines: 3), matches: { $0.hasPrefix(" ") })
        #expect(self.bodies(result.records) == ["a\n 1\n 2", " 3\n 4\n 5"])
        #expect(result.machine.cutRecords == 1)
    }

    @Test func aRecordAtMaxBytesIsCutBeforeTheLineThatWouldPassIt() {
        // "abcd\n 123" is 9 bytes; the next line would make it 14.
        let result = self.join(["abcd", " 123", " 456", " 7"], rules: .init(maxBytes: 10), matches: { $0.hasPrefix(" ") })
        #expect(self.bodies(result.records) == ["abcd\n 123", " 456\n 7"])
        #expect(result.records.allSatisfy { $0.body.readableBytes <= 10 })
        #expect(result.machine.cutRecords == 1)
    }

    @Test func theLastRecordOfAQuietFileIsSentAtItsTimeout() {
        var machine = Machine(rules: .init(timeout: .seconds(5)))
        var records: [Machine.Record] = []
        let start = ContinuousClock.now
        machine.line(ByteBuffer(string: "a"), start: 0, end: 2, matched: false, now: start) { records.append($0) }
        machine.line(ByteBuffer(string: " a1"), start: 2, end: 6, matched: true, now: start + .seconds(3)) { records.append($0) }
        // The timeout counts from the last line.
        machine.tick(now: start + .seconds(7)) { records.append($0) }
        #expect(records.isEmpty)
        #expect(machine.deadline == start + .seconds(8))
        machine.tick(now: start + .seconds(8)) { records.append($0) }
        #expect(self.bodies(records) == ["a\n a1"])
        #expect(machine.pendingStart == nil)
        #expect(machine.deadline == nil)
    }

    @Test func aSingleLineRecordIsTheLineItselfNotACopy() {
        var chunk = ByteBuffer(string: "one\ntwo\n")
        let one = chunk.readSlice(length: 3)!
        var machine = Machine(rules: .init())
        var records: [Machine.Record] = []
        machine.line(one, start: 0, end: 4, matched: false, now: .now) { records.append($0) }
        machine.flush { records.append($0) }
        let same = records[0].body.withUnsafeReadableBytes { record in one.withUnsafeReadableBytes { $0.baseAddress == record.baseAddress } }
        #expect(same)
    }

    // MARK: Seeded random sequences

    struct Violation: Error, CustomStringConvertible {
        var description: String
    }

    /// Random lines (continuation or not), times, ticks and a final flush; after every step: every line is in
    /// exactly one record, in order, joined with `\n`; no record passes the limits; records break only where a
    /// rule says; a record is emitted by a tick only after its timeout; the commit boundary never passes a line
    /// not yet in an emitted record. With `clockPerRead`, lines come without the time, as a file's reader hands
    /// them over, and the time of their read is given before the clock moves on (``Machine/linesCame(at:)``).
    /// With `fileQuiet`, lines were written some time before they were read, and the machine is told at times that
    /// the file has not been written since (no earlier than its last line's write): then a record may go a timeout
    /// after its last line was written, never sooner.
    static func run(seed: UInt64, steps: Int, clockPerRead: Bool = false, fileQuiet: Bool = false) throws {
        var random = SplitMix64(seed: seed)
        let rules = Machine.Rules(
            negate: Bool.random(using: &random),
            match: Bool.random(using: &random) ? .after : .before,
            maxLines: Int.random(in: 1...6, using: &random),
            maxBytes: Int.random(in: 8...60, using: &random),
            timeout: .milliseconds(Int.random(in: 10...500, using: &random))
        )
        var machine = Machine(rules: rules)
        var now = ContinuousClock.now
        // Every line fed: body, range, whether it matched, when it came.
        var lines: [(body: String, start: Int64, end: Int64, matched: Bool, at: ContinuousClock.Instant, written: ContinuousClock.Instant)] = []
        var records: [(record: Machine.Record, byTick: ContinuousClock.Instant?)] = []
        var offset: Int64 = 0
        func fail(_ what: String) -> Violation { Violation(description: "seed \(seed): \(what); rules \(rules)") }

        func check() throws {
            // Emitted records cover lines[0..<covered] exactly, in order.
            var index = 0
            for (record, byTick) in records {
                var members: [String] = []
                let first = index
                while index < lines.count, lines[index].end <= record.end {
                    members.append(lines[index].body)
                    index += 1
                }
                guard !members.isEmpty, record.start == lines[first].start, record.end == lines[index - 1].end else {
                    throw fail("record \(String(buffer: record.body)) is not a run of whole lines")
                }
                guard String(buffer: record.body) == members.joined(separator: "\n"), record.lines == members.count else {
                    throw fail("record body \(String(buffer: record.body)) is not its lines joined")
                }
                guard members.count <= rules.maxLines, record.body.readableBytes <= rules.maxBytes else {
                    throw fail("record of \(members.count) lines, \(record.body.readableBytes) bytes passes the limits")
                }
                // Inside a record, every join is a continuation.
                let continuation = lines[first..<index].map { $0.matched != rules.negate }
                let joins = rules.match == .after ? continuation.dropFirst() : continuation.dropLast()
                guard joins.allSatisfy({ $0 }) else { throw fail("record \(String(buffer: record.body)) joins a line that does not continue") }
                if let at = byTick, at - (fileQuiet ? lines[index - 1].written : lines[index - 1].at) < rules.timeout {
                    throw fail("record flushed by a tick before its timeout")
                }
                // A break between records is the pattern's, a limit's, or a timeout's.
                if index < lines.count, byTick == nil {
                    let next = lines[index]
                    let nextContinues = rules.match == .after ? next.matched != rules.negate : lines[index - 1].matched != rules.negate
                    let full = members.count == rules.maxLines || record.body.readableBytes + 1 + next.body.utf8.count > rules.maxBytes
                    guard !nextContinues || full else { throw fail("record cut before \(next.body) with no reason") }
                }
            }
            // The rest is the record under way: the commit boundary is its start, never past it.
            if index < lines.count {
                guard machine.pendingStart == lines[index].start else { throw fail("pending start \(String(describing: machine.pendingStart)) is not line \(index)'s start") }
            } else if machine.pendingStart != nil {
                throw fail("a record is under way with every line emitted")
            }
        }

        for _ in 0..<steps {
            switch Int.random(in: 0..<10, using: &random) {
            case 0..<7:
                // The splitter keeps a line within maxBytes (longer ones are overlong).
                let length = Int.random(in: 1...min(20, rules.maxBytes), using: &random)
                let body = String((0..<length).map { _ in "abcdefgh".randomElement(using: &random)! })
                let end = offset + Int64(length + Int.random(in: 1...2, using: &random))  // "\n" or "\r\n"
                let matched = Bool.random(using: &random)
                let written = max(lines.last?.written ?? now, now - .milliseconds(Int.random(in: 0...400, using: &random)))
                lines.append((body, offset, end, matched, now, written))
                if clockPerRead {
                    machine.line(ByteBuffer(string: body), start: offset, end: end, matched: matched) { records.append(($0, nil)) }
                } else {
                    machine.line(ByteBuffer(string: body), start: offset, end: end, matched: matched, now: now) { records.append(($0, nil)) }
                }
                offset = end
            case 7..<9:
                // A read ends before the clock moves on.
                if clockPerRead { machine.linesCame(at: now) }
                if fileQuiet, let last = lines.last?.written, Bool.random(using: &random) {
                    machine.fileQuiet(since: last + .milliseconds(Int.random(in: 0...Int((now - last) / .milliseconds(1)), using: &random)))
                }
                now += .milliseconds(Int.random(in: 0...300, using: &random))
            default:
                let at = now
                machine.tick(now: now) { records.append(($0, at)) }
                if let deadline = machine.deadline, deadline <= now { throw fail("a tick left a record past its deadline") }
            }
            try check()
        }
        // The final flush ends the last record: then every line is in one.
        machine.flush { records.append(($0, nil)) }
        try check()
        guard records.last.map({ $0.record.end == offset }) ?? lines.isEmpty else { throw fail("lines left after the final flush") }
    }

    @Test(arguments: 0..<60) func randomLineSequencesKeepEveryLineInExactlyOneRecord(seed: UInt64) throws {
        try Self.run(seed: seed, steps: 300)
    }

    /// The same rules when the clock is read once per read (the file reader's way), not per line.
    @Test(arguments: 1000..<1060) func linesTimedPerReadKeepTheSameRules(seed: UInt64) throws {
        try Self.run(seed: seed, steps: 300, clockPerRead: true)
    }

    /// A file known to be quiet since some instant lets its record go a timeout after its last write.
    @Test(arguments: 2000..<2060) func aQuietFileLetsItsRecordGoATimeoutAfterItsLastWrite(seed: UInt64) throws {
        try Self.run(seed: seed, steps: 300, clockPerRead: true, fileQuiet: true)
    }
}

/// Patterns compiled for lines: the literal fast paths, POSIX regular expressions read in place, and errors.
@Suite struct LineMatcherTests {
    private func matches(_ pattern: String, _ line: String) throws -> Bool {
        try LineMatcher(pattern).matches(ByteBuffer(string: line))
    }

    @Test func literalsAndAnchoredLiteralsSkipTheRegularExpression() {
        #expect(LineMatcher.literal("ERROR")! == (Array("ERROR".utf8), false))
        #expect(LineMatcher.literal("^\\[")! == (Array("[".utf8), true))
        #expect(LineMatcher.literal("^2026-")! == (Array("2026-".utf8), true))
        #expect(LineMatcher.literal("^\\d{4}") == nil)
        #expect(LineMatcher.literal("a.b") == nil)
        #expect(LineMatcher.literal("end$") == nil)
        #expect(LineMatcher.literal("a\\") == nil)
    }

    @Test func literalPatternsMatchAnywhereOrAtTheStart() throws {
        #expect(try self.matches("ERROR", "2026 ERROR boom"))
        #expect(try !self.matches("ERROR", "2026 WARN boom"))
        #expect(try self.matches("^\\[", "[main] started"))
        #expect(try !self.matches("^\\[", " [main] started"))
        #expect(try self.matches("", "anything"))
        #expect(try !self.matches("long needle", "short"))
    }

    @Test func regularExpressionsAreReadInPlaceWithoutATerminatingZero() throws {
        #expect(try self.matches("^[[:space:]]", "\tat com.example.A"))
        #expect(try !self.matches("^[[:space:]]", "Exception"))
        #expect(try self.matches("^\\d{4}-\\d{2}", "2026-12-06 boom"))
        #expect(try !self.matches("^\\d{4}-", "at 2026-12"))
        #expect(try self.matches("\\s(ERROR|WARN)\\s", "x WARN y"))
        #expect(try self.matches("[]x]", "a]"))
        #expect(try self.matches("done$", "all done"))
        // A slice in the middle of a buffer: the match must not run past its end.
        var buffer = ByteBuffer(string: "first line\nsecond ERROR\n")
        let first = buffer.readSlice(length: 10)!
        #expect(try !LineMatcher("line.*ERROR").matches(first))
        #expect(try !LineMatcher("line$").matches(ByteBuffer(string: "line\nmore")))
        #expect(try LineMatcher("x").matches(ByteBuffer()) == false)
        #expect(try LineMatcher("^$").matches(ByteBuffer()))
    }

    @Test func perlDigitsBecomeBracketsOutsideBracketsOnly() {
        #expect(LineMatcher.posix("^\\d+\\D") == "^[0-9]+[^0-9]")
        #expect(LineMatcher.posix("[\\d]") == "[\\d]")
        #expect(LineMatcher.posix("\\s\\.") == "\\s\\.")
    }

    @Test func anInvalidPatternNamesItselfAndWhy() {
        #expect(throws: LinePatternError.self) { try LineMatcher("(unclosed") }
        do {
            _ = try LineMatcher("a{2,1}")
            Issue.record("a{2,1} compiled")
        } catch {
            #expect(error.pattern == "a{2,1}")
            #expect(!error.reason.isEmpty)
            #expect(error.description.contains("a{2,1}"))
        }
    }
}
