#if canImport(Glibc)
import Glibc
#endif

/// The part of POSIX extended regular expressions that log patterns are written in, matched on bytes without
/// glibc's `regexec`, which costs 0.6 µs a call however early it fails (1.5–3 µs for an unanchored pattern on a
/// 200-byte line): too slow for the agent's millions of lines a second.
///
/// Understood: literal bytes, `.`, bracket expressions (ranges, negation, `[:space:]` and the other POSIX classes),
/// `\d` `\D` `\s` `\S` `\w` `\W`, quantifiers `*` `+` `?` `{m}` `{m,}` `{m,n}` on a single-byte atom, groups with
/// alternation (not quantified), `|`, `^` first and `$` last in an alternative of the whole pattern. Anything
/// else (a quantified group, an anchor inside a group, `{,n}`, an equivalence class...) is not understood: ``init(_:)`` returns `nil` and the caller runs glibc's regex. Whether a line
/// matches is the same either way (no captures are asked for, so leftmost-first backtracking and POSIX's
/// leftmost-longest agree); the package's tests compare the two on random patterns and lines.
///
/// Bytes, as glibc in the C locale: `.` and negated sets match any byte, newlines included.
struct BytePattern: Sendable {
    /// A set of bytes, as four 64-bit words.
    struct ByteSet: Sendable, Hashable {
        var words: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)

        static func == (a: ByteSet, b: ByteSet) -> Bool { a.words == b.words }
        func hash(into hasher: inout Hasher) {
            hasher.combine(self.words.0)
            hasher.combine(self.words.1)
            hasher.combine(self.words.2)
            hasher.combine(self.words.3)
        }

        @inline(__always)
        func contains(_ byte: UInt8) -> Bool {
            let bit = UInt64(1) << UInt64(byte & 63)
            switch byte >> 6 {
            case 0: return self.words.0 & bit != 0
            case 1: return self.words.1 & bit != 0
            case 2: return self.words.2 & bit != 0
            default: return self.words.3 & bit != 0
            }
        }

        mutating func insert(_ byte: UInt8) {
            let bit = UInt64(1) << UInt64(byte & 63)
            switch byte >> 6 {
            case 0: self.words.0 |= bit
            case 1: self.words.1 |= bit
            case 2: self.words.2 |= bit
            default: self.words.3 |= bit
            }
        }

        mutating func insert(_ range: ClosedRange<UInt8>) { for byte in range { self.insert(byte) } }

        mutating func formUnion(_ other: ByteSet) {
            self.words = (self.words.0 | other.words.0, self.words.1 | other.words.1, self.words.2 | other.words.2, self.words.3 | other.words.3)
        }

        var inverted: ByteSet {
            ByteSet(words: (~self.words.0, ~self.words.1, ~self.words.2, ~self.words.3))
        }

        static let all = ByteSet().inverted


        static func of(_ bytes: String) -> ByteSet {
            var set = ByteSet()
            for byte in bytes.utf8 { set.insert(byte) }
            return set
        }

        static let digits: ByteSet = { var set = ByteSet(); set.insert(UInt8(ascii: "0")...UInt8(ascii: "9")); return set }()
        static let upper: ByteSet = { var set = ByteSet(); set.insert(UInt8(ascii: "A")...UInt8(ascii: "Z")); return set }()
        static let lower: ByteSet = { var set = ByteSet(); set.insert(UInt8(ascii: "a")...UInt8(ascii: "z")); return set }()
        static let space = ByteSet.of(" \t\n\u{0B}\u{0C}\r")
        static let alpha: ByteSet = { var set = ByteSet.upper; set.formUnion(ByteSet.lower); return set }()
        static let alnum: ByteSet = { var set = ByteSet.alpha; set.formUnion(ByteSet.digits); return set }()
        static let word: ByteSet = { var set = ByteSet.alnum; set.insert(UInt8(ascii: "_")); return set }()
        static let punct = ByteSet.of("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
        static let xdigit: ByteSet = { var set = ByteSet.digits; set.insert(UInt8(ascii: "a")...UInt8(ascii: "f")); set.insert(UInt8(ascii: "A")...UInt8(ascii: "F")); return set }()
        static let blank = ByteSet.of(" \t")
        static let cntrl: ByteSet = { var set = ByteSet(); set.insert(0...31); set.insert(127); return set }()
        static let print: ByteSet = { var set = ByteSet(); set.insert(32...126); return set }()
        static let graph: ByteSet = { var set = ByteSet(); set.insert(33...126); return set }()

        static let classes: [String: ByteSet] = [
            "alpha": ByteSet.alpha, "digit": ByteSet.digits, "alnum": ByteSet.alnum, "upper": ByteSet.upper, "lower": ByteSet.lower,
            "space": ByteSet.space, "blank": ByteSet.blank, "punct": ByteSet.punct, "xdigit": ByteSet.xdigit, "cntrl": ByteSet.cntrl,
            "print": ByteSet.print, "graph": ByteSet.graph,
        ]
    }

    enum Node: Sendable {
        /// One byte of the set.
        case byte(ByteSet)
        /// Between `min` and `max` bytes of the set (`max` nil: no limit), as many as possible first.
        case repeated(ByteSet, min: Int, max: Int?)
        /// One of these sequences.
        /// One of these sequences; `first`: the bytes a match of the group starts with, when known, so that a
        /// position that cannot start one is passed over without entering the group.
        case group([[Node]], first: ByteSet?)
        case start
        case end
    }

    /// The alternatives of the whole pattern.
    let alternatives: [[Node]]
    /// The same, flattened for matching: plain values read through unsafe buffers, so that a match costs no
    /// reference counting. Every sequence ends with ``Op/done``; group `g`'s alternatives start at the op indices
    /// `starts[bounds[g]]`; group 0 is the whole pattern.
    private let ops: [Op]
    private let starts: [Int]
    private let bounds: [Range<Int>]

    private enum Op {
        case byte(ByteSet)
        case repeated(ByteSet, min: Int, max: Int)
        case group(Int, first: ByteSet?)
        case start
        case end
        case done
    }
    /// Bytes a match can start with (`nil`: any, or it may be empty); unanchored matching skips other positions.
    let firstBytes: ByteSet?
    /// Every alternative starts with `^`: only position 0 is tried.
    let anchored: Bool
    /// The one byte every match starts with, when there is one.
    let onlyFirstByte: UInt8?

    /// `nil` when the pattern uses something not understood here (see the type's documentation).
    init?(_ pattern: String) {
        var parser = Parser(bytes: Array(pattern.utf8))
        guard let alternatives = parser.alternation(), parser.position == parser.bytes.count else { return nil }
        self.alternatives = alternatives
        var ops: [Op] = []
        var starts: [Int] = []
        var bounds: [Range<Int>] = []
        Self.flatten(alternatives, first: nil, &ops, &starts, &bounds)
        self.ops = ops
        self.starts = starts
        self.bounds = bounds
        self.anchored = alternatives.allSatisfy { if case .start? = $0.first { true } else { false } }
        var first = ByteSet()
        var known = true
        for alternative in alternatives {
            guard let set = Self.firstBytes(of: alternative[...]) else {
                known = false
                break
            }
            first.formUnion(set)
        }
        self.firstBytes = known ? first : nil
        let members = known ? (0...255).filter { first.contains(UInt8($0)) } : []
        self.onlyFirstByte = members.count == 1 ? UInt8(members[0]) : nil
    }

    /// The bytes a sequence's match starts with, or `nil` when it may be empty or start anywhere.
    fileprivate static func firstBytes(of sequence: ArraySlice<[Node].Element>) -> ByteSet? {
        guard let node = sequence.first else { return nil }
        switch node {
        case .byte(let set): return set
        case .repeated(let set, let min, _): return min > 0 ? set : nil
        case .group(_, let first): return first
        case .start: return Self.firstBytes(of: sequence.dropFirst())
        case .end: return nil
        }
    }

    /// Whether the pattern matches somewhere in `bytes`.
    func matches(_ bytes: UnsafeRawBufferPointer) -> Bool {
        let text = bytes.assumingMemoryBound(to: UInt8.self)
        if self.anchored { return self.matchesAt(0, text) }
        if let only = self.onlyFirstByte, let base = text.baseAddress {
            // One byte starts every match: memchr finds the candidates.
            var position = 0
            while position < text.count, let found = memchr(base + position, Int32(only), text.count - position) {
                position = base.distance(to: UnsafePointer(found.assumingMemoryBound(to: UInt8.self)))
                if self.matchesAt(position, text) { return true }
                position += 1
            }
            return false
        }
        if let first = self.firstBytes {
            for position in 0..<text.count where first.contains(text[position]) {
                if self.matchesAt(position, text) { return true }
            }
            return false
        }
        for position in 0...text.count where self.matchesAt(position, text) { return true }
        return false
    }

    @inline(__always)
    private func matchesAt(_ position: Int, _ text: UnsafeBufferPointer<UInt8>) -> Bool {
        self.ops.withUnsafeBufferPointer { ops in
            self.starts.withUnsafeBufferPointer { starts in
                self.bounds.withUnsafeBufferPointer { bounds in
                    let program = Program(ops: ops, starts: starts, bounds: bounds, text: text)
                    for alternative in bounds[0] where program.match(starts[alternative], position, nil) { return true }
                    return false
                }
            }
        }
    }

    /// Appends group `alternatives` (numbered in order of appearance) and, first, every group inside them.
    private static func flatten(_ alternatives: [[Node]], first: ByteSet?, _ ops: inout [Op], _ starts: inout [Int], _ bounds: inout [Range<Int>]) {
        let group = bounds.count
        bounds.append(0..<0)
        var mine: [Int] = []
        for alternative in alternatives {
            mine.append(ops.count)
            var pending: [(Int, [[Node]])] = []
            for node in alternative {
                switch node {
                case .byte(let set): ops.append(.byte(set))
                case .repeated(let set, let min, let max): ops.append(.repeated(set, min: min, max: max ?? Int.max))
                case .start: ops.append(.start)
                case .end: ops.append(.end)
                case .group(let inner, let first):
                    pending.append((ops.count, inner))
                    ops.append(.group(-1, first: first))
                }
            }
            ops.append(.done)
            for (index, inner) in pending {
                guard case .group(_, let first) = ops[index] else { continue }
                ops[index] = .group(bounds.count, first: first)
                Self.flatten(inner, first: first, &ops, &starts, &bounds)
            }
        }
        bounds[group] = starts.count..<(starts.count + mine.count)
        starts += mine
    }

    /// The flattened pattern and the text, for one match attempt.
    private struct Program {
        let ops: UnsafeBufferPointer<Op>
        let starts: UnsafeBufferPointer<Int>
        let bounds: UnsafeBufferPointer<Range<Int>>
        let text: UnsafeBufferPointer<UInt8>

        /// What follows a group: where its sequence goes on, and what follows that (on the stack).
        struct Resume {
            let index: Int
            let next: UnsafePointer<Resume>?
        }

        /// Whether the ops from `index` to their `done`, then `next`, match from `position`.
        func match(_ index: Int, _ position: Int, _ next: UnsafePointer<Resume>?) -> Bool {
            var index = index
            var position = position
            let text = self.text
            while true {
                switch self.ops[index] {
                case .byte(let set):
                    guard position < text.count, set.contains(text[position]) else { return false }
                    position += 1
                case .start:
                    guard position == 0 else { return false }
                case .end:
                    guard position == text.count else { return false }
                case .repeated(let set, let min, let max):
                    var count = 0
                    let limit = Swift.min(max, text.count - position)
                    while count < limit, set.contains(text[position + count]) { count += 1 }
                    guard count >= min else { return false }
                    // As many as possible first, then fewer.
                    while count >= min {
                        if self.match(index + 1, position + count, next) { return true }
                        count -= 1
                    }
                    return false
                case .group(let group, let first):
                    if let first, !(position < text.count && first.contains(text[position])) { return false }
                    return withUnsafePointer(to: Resume(index: index + 1, next: next)) { after in
                        for alternative in self.bounds[group] where self.match(self.starts[alternative], position, after) { return true }
                        return false
                    }
                case .done:
                    guard let next else { return true }
                    return self.match(next.pointee.index, position, next.pointee.next)
                }
                index += 1
            }
        }
    }

    private struct Parser {
        let bytes: [UInt8]
        var position = 0

        /// Groups open around the position.
        var depth = 0

        var peek: UInt8? { self.position < self.bytes.count ? self.bytes[self.position] : nil }

        /// Alternatives up to the end or a `)`; `nil` when something is not understood.
        mutating func alternation() -> [[Node]]? {
            var alternatives: [[Node]] = []
            while true {
                guard let sequence = self.sequence(), !sequence.isEmpty else { return nil }
                alternatives.append(sequence)
                guard self.peek == UInt8(ascii: "|") else { return alternatives }
                self.position += 1
            }
        }

        mutating func sequence() -> [Node]? {
            var nodes: [Node] = []
            while let byte = self.peek, byte != UInt8(ascii: "|"), byte != UInt8(ascii: ")") {
                self.position += 1
                var node: Node
                switch byte {
                case UInt8(ascii: "("):
                    self.depth += 1
                    guard let alternatives = self.alternation(), self.peek == UInt8(ascii: ")") else { return nil }
                    self.depth -= 1
                    self.position += 1
                    var first: ByteSet? = ByteSet()
                    for alternative in alternatives {
                        guard let set = BytePattern.firstBytes(of: alternative[...]) else {
                            first = nil
                            break
                        }
                        first!.formUnion(set)
                    }
                    node = .group(alternatives, first: first)
                case UInt8(ascii: "["):
                    guard let set = self.bracket() else { return nil }
                    node = .byte(set)
                case UInt8(ascii: "."):
                    node = .byte(.all)
                case UInt8(ascii: "^"):
                    // Only where every engine reads it alike: first in a whole alternative of the pattern.
                    guard self.depth == 0, nodes.isEmpty else { return nil }
                    node = .start
                case UInt8(ascii: "$"):
                    // Only last in a whole alternative of the pattern.
                    guard self.depth == 0, self.peek == nil || self.peek == UInt8(ascii: "|") else { return nil }
                    node = .end
                case UInt8(ascii: "\\"):
                    guard let escaped = self.peek else { return nil }
                    self.position += 1
                    switch escaped {
                    case UInt8(ascii: "d"): node = .byte(.digits)
                    case UInt8(ascii: "D"): node = .byte(ByteSet.digits.inverted)
                    case UInt8(ascii: "s"): node = .byte(.space)
                    case UInt8(ascii: "S"): node = .byte(ByteSet.space.inverted)
                    case UInt8(ascii: "w"): node = .byte(.word)
                    case UInt8(ascii: "W"): node = .byte(ByteSet.word.inverted)
                    default:
                        // Other escapes of letters and digits mean something to glibc (back references, `\b`...).
                        guard !ByteSet.alnum.contains(escaped) else { return nil }
                        var set = ByteSet()
                        set.insert(escaped)
                        node = .byte(set)
                    }
                case UInt8(ascii: "*"), UInt8(ascii: "+"), UInt8(ascii: "?"), UInt8(ascii: "{"), UInt8(ascii: "]"), UInt8(ascii: "}"):
                    // A quantifier with nothing to quantify, or a stray bracket: glibc's reading.
                    return nil
                default:
                    var set = ByteSet()
                    set.insert(byte)
                    node = .byte(set)
                }
                if let quantifier = self.quantifier() {
                    guard case .byte(let set) = node, let (min, max) = quantifier else { return nil }
                    node = .repeated(set, min: min, max: max)
                    // Two quantifiers in a row: not understood.
                    if self.quantifier() != nil { return nil }
                }
                nodes.append(node)
            }
            return nodes
        }

        /// A quantifier after an atom: `nil` when none; `.some(nil)` when one is there but not understood.
        mutating func quantifier() -> (Int, Int?)?? {
            switch self.peek {
            case UInt8(ascii: "*"):
                self.position += 1
                return .some((0, nil))
            case UInt8(ascii: "+"):
                self.position += 1
                return .some((1, nil))
            case UInt8(ascii: "?"):
                self.position += 1
                return .some((0, 1))
            case UInt8(ascii: "{"):
                self.position += 1
                guard let min = self.number() else { return .some(nil) }
                var max: Int? = min
                if self.peek == UInt8(ascii: ",") {
                    self.position += 1
                    max = self.peek == UInt8(ascii: "}") ? nil : self.number()
                    if max == nil && self.peek != UInt8(ascii: "}") { return .some(nil) }
                }
                guard self.peek == UInt8(ascii: "}"), max.map({ $0 >= min }) ?? true, min <= 255, (max ?? 0) <= 255 else { return .some(nil) }
                self.position += 1
                return .some((min, max))
            default:
                return nil
            }
        }

        mutating func number() -> Int? {
            var value: Int?
            while let byte = self.peek, ByteSet.digits.contains(byte), (value ?? 0) < 10_000 {
                value = (value ?? 0) * 10 + Int(byte - UInt8(ascii: "0"))
                self.position += 1
            }
            return value
        }

        /// After `[`: the set up to its `]`.
        mutating func bracket() -> ByteSet? {
            var set = ByteSet()
            var negated = false
            if self.peek == UInt8(ascii: "^") {
                negated = true
                self.position += 1
            }
            var first = true
            while let byte = self.peek {
                if byte == UInt8(ascii: "]") && !first {
                    self.position += 1
                    return negated ? set.inverted : set
                }
                first = false
                self.position += 1
                if byte == UInt8(ascii: "[") {
                    switch self.peek {
                    case UInt8(ascii: ":"):
                        self.position += 1
                        let start = self.position
                        while let next = self.peek, next != UInt8(ascii: ":") { self.position += 1 }
                        let name = String(decoding: self.bytes[start..<self.position], as: UTF8.self)
                        guard self.peek == UInt8(ascii: ":"), self.position + 1 < self.bytes.count, self.bytes[self.position + 1] == UInt8(ascii: "]"),
                            let members = ByteSet.classes[name]
                        else { return nil }
                        self.position += 2
                        set.formUnion(members)
                        continue
                    case UInt8(ascii: "="), UInt8(ascii: "."):
                        return nil
                    default:
                        break
                    }
                }
                // A range `a-z` (a `-` first or last is itself).
                if self.peek == UInt8(ascii: "-"), self.position + 1 < self.bytes.count, self.bytes[self.position + 1] != UInt8(ascii: "]") {
                    let upper = self.bytes[self.position + 1]
                    guard upper >= byte, upper != UInt8(ascii: "[") else { return nil }
                    self.position += 2
                    set.insert(byte...upper)
                } else {
                    set.insert(byte)
                }
            }
            return nil
        }
    }
}
