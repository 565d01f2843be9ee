import NIOCore

#if canImport(Glibc)
import Glibc
#endif

/// A line pattern compiled for matching record bodies, one per file: a POSIX extended regular expression (as
/// `grep -E`, with `\d`, `\s` and `\w`), found anywhere in the body unless anchored with `^` or `$`.
///
/// Per line, a regular expression is the agent's costliest step, so the common shapes skip glibc: a literal
/// (`ERROR`) is looked for with `memchr` and `memcmp`, and a literal after `^` (`^\[`, `^2026-`) is one compare, and the
/// usual subset of regular expressions is matched by ``BytePattern``. Everything else runs glibc's `regexec` on
/// the body in place (`REG_STARTEND`: no copy, no terminating zero needed).
///
/// Not `Sendable`: it owns a compiled `regex_t`. Each file's reader compiles its own from the configuration's
/// text, so none is shared between tasks.
final class LineMatcher {
    private enum Kind {
        /// Matches every body (an empty pattern, or a lone `^`).
        case always
        /// The body starts with these bytes.
        case prefix([UInt8])
        /// The body holds these bytes somewhere.
        case contains([UInt8])
        /// The common subset of regular expressions, matched here (``BytePattern``).
        case bytes(BytePattern)
        /// glibc's `regexec`, for the rest.
        case regex(UnsafeMutablePointer<regex_t>)
    }

    let pattern: String
    private let kind: Kind

    /// Compiles `pattern`; throws ``LinePatternError`` naming it and why it is not valid.
    init(_ pattern: String) throws(LinePatternError) {
        self.pattern = pattern
        if let literal = Self.literal(pattern) {
            if literal.bytes.isEmpty {
                self.kind = .always
            } else {
                self.kind = literal.anchored ? .prefix(literal.bytes) : .contains(literal.bytes)
            }
            return
        }
        let regex = UnsafeMutablePointer<regex_t>.allocate(capacity: 1)
        let result = regcomp(regex, Self.posix(pattern), REG_EXTENDED | REG_NOSUB)
        guard result == 0 else {
            var message = [CChar](repeating: 0, count: 256)
            regerror(result, regex, &message, message.count)
            regex.deallocate()
            throw LinePatternError(pattern: pattern, reason: String(decoding: message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
        // glibc said it is valid; matched here when the pattern stays within what BytePattern understands.
        if let bytes = BytePattern(pattern) {
            regfree(regex)
            regex.deallocate()
            self.kind = .bytes(bytes)
            return
        }
        self.kind = .regex(regex)
    }

    deinit {
        if case .regex(let regex) = self.kind {
            regfree(regex)
            regex.deallocate()
        }
    }

    /// Whether `body` matches.
    @inline(__always)
    func matches(_ body: ByteBuffer) -> Bool {
        if case .always = self.kind { return true }
        return body.withUnsafeReadableBytes { self.matches($0) }
    }

    /// Whether the body in `bytes` matches.
    @inline(__always)
    func matches(_ bytes: UnsafeRawBufferPointer) -> Bool {
        switch self.kind {
        case .always:
            return true
        case .prefix(let prefix):
            return bytes.count >= prefix.count && prefix.withUnsafeBytes { memcmp(bytes.baseAddress!, $0.baseAddress!, prefix.count) == 0 }
        case .contains(let needle):
            return needle.withUnsafeBytes { Self.find($0, in: bytes) }
        case .bytes(let pattern):
            return pattern.matches(bytes)
        case .regex(let regex):
            // With REG_STARTEND the body is bytes[rm_so..<rm_eo], read in place; an empty body still needs an
            // address.
            var range = regmatch_t(rm_so: 0, rm_eo: regoff_t(bytes.count))
            var empty: UInt8 = 0
            let base = bytes.baseAddress?.assumingMemoryBound(to: CChar.self)
            return withUnsafeMutablePointer(to: &empty) { fallback in
                let text = base ?? UnsafeRawPointer(fallback).assumingMemoryBound(to: CChar.self)
                return regexec(regex, text, 1, &range, REG_STARTEND) == 0
            }
        }
    }

    /// Whether `needle` (not empty) is in `haystack`: `memchr` for its first byte, then one compare per candidate.
    @inline(__always)
    private static func find(_ needle: UnsafeRawBufferPointer, in haystack: UnsafeRawBufferPointer) -> Bool {
        guard haystack.count >= needle.count, let base = haystack.baseAddress, let first = needle.first else { return false }
        let last = haystack.count - needle.count  // the last position the needle can start at
        var position = 0
        while position <= last, let found = memchr(base + position, Int32(first), last - position + 1) {
            position = base.distance(to: UnsafeRawPointer(found))
            if memcmp(base + position, needle.baseAddress!, needle.count) == 0 { return true }
            position += 1
        }
        return false
    }

    /// Whether any of `matchers` matches `body`.
    @inline(__always)
    static func any(_ matchers: [LineMatcher], _ body: ByteBuffer) -> Bool {
        for matcher in matchers where matcher.matches(body) { return true }
        return false
    }

    /// Whether any of `matchers` matches the body in `bytes`.
    @inline(__always)
    static func any(_ matchers: [LineMatcher], _ bytes: UnsafeRawBufferPointer) -> Bool {
        for matcher in matchers where matcher.matches(bytes) { return true }
        return false
    }

    /// The bytes of a pattern that is a plain literal, possibly after `^` (`\` before a punctuation character
    /// makes it literal); `nil` when it has any other regular-expression syntax.
    static func literal(_ pattern: String) -> (bytes: [UInt8], anchored: Bool)? {
        var bytes: [UInt8] = []
        var anchored = false
        var escaped = false
        for (index, byte) in pattern.utf8.enumerated() {
            if escaped {
                // `\d`, `\s`, `\w`, back references...: not a literal.
                guard !Self.isAlphanumeric(byte) else { return nil }
                bytes.append(byte)
                escaped = false
                continue
            }
            switch byte {
            case UInt8(ascii: "\\"):
                escaped = true
            case UInt8(ascii: "^") where index == 0:
                anchored = true
            case UInt8(ascii: "."), UInt8(ascii: "["), UInt8(ascii: "]"), UInt8(ascii: "("), UInt8(ascii: ")"),
                UInt8(ascii: "*"), UInt8(ascii: "+"), UInt8(ascii: "?"), UInt8(ascii: "{"), UInt8(ascii: "}"),
                UInt8(ascii: "|"), UInt8(ascii: "^"), UInt8(ascii: "$"):
                return nil
            default:
                bytes.append(byte)
            }
        }
        return escaped ? nil : (bytes, anchored)
    }

    /// `\d` and `\D` (not POSIX, but what log patterns are written with) as bracket expressions, outside brackets;
    /// glibc knows `\s`, `\S`, `\w`, `\W` itself.
    static func posix(_ pattern: String) -> String {
        var result = ""
        var inBracket = false
        // Characters since the bracket opened (`^` not counted): a `]` first in a bracket is a member.
        var bracketLength = 0
        var escaped = false
        for character in pattern {
            if inBracket {
                if character == "]" && bracketLength > 0 {
                    inBracket = false
                } else if !(character == "^" && bracketLength == 0) {
                    bracketLength += 1
                }
                result.append(character)
                continue
            }
            if escaped {
                escaped = false
                switch character {
                case "d": result += "[0-9]"
                case "D": result += "[^0-9]"
                default: result += "\\" + String(character)
                }
                continue
            }
            if character == "\\" {
                escaped = true
                continue
            }
            if character == "[" {
                inBracket = true
                bracketLength = 0
            }
            result.append(character)
        }
        if escaped { result += "\\" }
        return result
    }

    private static func isAlphanumeric(_ byte: UInt8) -> Bool {
        (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) || (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte)
            || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte)
    }
}

/// A line pattern that does not compile.
struct LinePatternError: Error, Hashable, CustomStringConvertible {
    var pattern: String
    var reason: String
    var description: String { "'\(self.pattern)' is not a valid regular expression: \(self.reason)" }
}
