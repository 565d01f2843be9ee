import InLongWire
import NIOCore
import Testing

@testable import InLongAgent

#if canImport(Glibc)
import Glibc
#endif

/// The agent's own matcher for the common subset of regular expressions: examples, what it leaves to glibc, and
/// random patterns and lines on which it must agree with glibc's `regexec`.
@Suite struct BytePatternTests {
    /// glibc's answer: whether `pattern` (valid) matches `text`.
    static func glibc(_ pattern: String, _ text: [UInt8]) -> Bool? {
        var regex = regex_t()
        guard regcomp(&regex, pattern, REG_EXTENDED | REG_NOSUB) == 0 else { return nil }
        defer { regfree(&regex) }
        var range = regmatch_t(rm_so: 0, rm_eo: regoff_t(text.count))
        var copy = text + [0]
        return copy.withUnsafeMutableBufferPointer { buffer in
            buffer.baseAddress!.withMemoryRebound(to: CChar.self, capacity: buffer.count) { regexec(&regex, $0, 1, &range, REG_STARTEND) == 0 }
        }
    }

    private func matches(_ pattern: String, _ text: String) throws -> Bool {
        let compiled = try #require(BytePattern(pattern))
        return Array(text.utf8).withUnsafeBytes { compiled.matches($0) }
    }

    @Test func examplesOfLogPatterns() throws {
        #expect(try self.matches("^\\d{4}-\\d{2}-\\d{2} ", "2026-12-06 boom"))
        #expect(try !self.matches("^\\d{4}-\\d{2}-\\d{2} ", "\tat 2026-12-06 "))
        #expect(try self.matches("^[[:space:]]", "\tat x"))
        #expect(try self.matches("\\s(ERROR|WARN)\\s", "x WARN y"))
        #expect(try !self.matches("\\s(ERROR|WARN)\\s", "x WARNING y"))
        #expect(try self.matches("took [0-9]+ ms$", "GET / took 12 ms"))
        #expect(try !self.matches("took [0-9]+ ms$", "GET / took 12 ms later"))
        #expect(try self.matches("^(Traceback|[[:space:]]+File )", "  File \"x.py\""))
        #expect(try self.matches("a.*b", "a\nb"))  // `.` takes newlines, as glibc does
        #expect(try self.matches("[^a-z]", "abc1"))
        #expect(try !self.matches("^[^a-z]+$", "abc1"))
    }

    @Test func whatItDoesNotUnderstandIsLeftToGlibc() {
        for pattern in ["(ab)+", "a{,3}", "[[=a=]]", "\\1", "\\bword", "*a", "a**", "()", "a||b", "[a-[:digit:]]"] {
            #expect(BytePattern(pattern) == nil, "\(pattern)")
        }
    }

    /// A random pattern of the subset (and a few things outside it): literals, classes, quantifiers, groups,
    /// alternation, anchors.
    static func randomPattern(_ random: inout SplitMix64, depth: Int = 0) -> String {
        let atoms = ["a", "b", "c", ".", "[ab]", "[^a]", "[a-c]", "[[:digit:]]", "[[:space:]]", "\\d", "\\s", "\\w", "\\.", "1", " ", "-", "[]a]", "[a-]"]
        let quantifiers = ["", "", "", "*", "+", "?", "{2}", "{1,3}", "{0,}", "{2,2}"]
        var sequence = ""
        if Int.random(in: 0..<4, using: &random) == 0 { sequence += "^" }
        for _ in 0..<Int.random(in: 1...4, using: &random) {
            if depth < 2, Int.random(in: 0..<6, using: &random) == 0 {
                sequence += "(" + Self.randomPattern(&random, depth: depth + 1) + ")"
            } else {
                sequence += atoms.randomElement(using: &random)! + quantifiers.randomElement(using: &random)!
            }
        }
        if Int.random(in: 0..<4, using: &random) == 0 { sequence += "$" }
        if Int.random(in: 0..<4, using: &random) == 0 { sequence += "|" + Self.randomPattern(&random, depth: depth + 1) }
        return sequence
    }

    @Test(arguments: 0..<20) func agreesWithGlibcOnRandomPatternsAndLines(seed: UInt64) throws {
        var random = SplitMix64(seed: seed)
        var compared = 0
        for _ in 0..<200 {
            let pattern = Self.randomPattern(&random)
            guard let compiled = BytePattern(pattern) else { continue }
            for _ in 0..<20 {
                let text = (0..<Int.random(in: 0...12, using: &random)).map { _ in Array("abc1 2-.\t\nx]".utf8).randomElement(using: &random)! }
                // As LineMatcher gives it to glibc: `\d` written as a bracket expression.
                let expected = try #require(Self.glibc(LineMatcher.posix(pattern), text), "glibc refuses \(pattern)")
                let got = text.withUnsafeBytes { compiled.matches($0) }
                #expect(got == expected, "seed \(seed): '\(pattern)' on \(String(decoding: text, as: UTF8.self).debugDescription)")
                compared += 1
            }
        }
        #expect(compared > 1_000)
    }
}
