/// The `k=v&k=v` attribute string of InLong frames, as an ordered list of entries.
///
/// ``init(parsing:)`` applies exactly the server's rules (wire-protocol.md §4): entries are split on `&` and
/// trimmed, each must split on `=` into exactly two parts, keys must be unique, and an empty entry (a trailing
/// `&`, `&&`) is an error, while a blank string means no attributes. The server answers error 109 to a string that
/// breaks them. Acks are parsed with ``init(parsingLeniently:)`` instead, because the server does not escape
/// `errMsg`.
public struct InLongAttributes: Sendable, Hashable, Sequence, ExpressibleByDictionaryLiteral, CustomStringConvertible {
    /// One `key=value` entry.
    public struct Entry: Sendable, Hashable {
        public var key: String
        public var value: String
        public init(key: String, value: String) {
            self.key = key
            self.value = value
        }
    }

    /// The entries in wire order.
    public private(set) var entries: [Entry]

    /// An empty attribute set.
    public init() { self.entries = [] }

    public init(dictionaryLiteral elements: (String, String)...) {
        self.entries = elements.map { Entry(key: $0.0, value: $0.1) }
    }

    /// Entries in the given order.
    public init(_ entries: [Entry]) { self.entries = entries }

    /// Parses an attribute string with the server's rules, throwing ``InLongWireError/Code/invalidAttributes``
    /// (server error 109) where the server would reject it.
    ///
    /// The work is done on the UTF-8 bytes, as Java works on UTF-16 units: `&` and `=` split even where a
    /// combining mark follows them, and keys are compared by their bytes, not by canonical equivalence.
    public init(parsing string: String) throws(InLongWireError) {
        self.entries = []
        // The server parses only a string that is not blank (`StringUtils.isNotBlank`).
        if string.unicodeScalars.allSatisfy(Self.isJavaWhitespace) { return }
        var text = string
        var entries: [Entry] = []
        let failure: String? = text.withUTF8 { bytes in
            var keys = Set<RawKey>()
            var start = 0
            while true {
                let end = bytes[start...].firstIndex(of: Self.separator) ?? bytes.count
                let entry = Self.trimmed(bytes, start..<end)
                let equals = bytes[entry].firstIndex(of: Self.keyValueSeparator)
                guard let equals, !bytes[(equals + 1)..<entry.upperBound].contains(Self.keyValueSeparator) else {
                    return "entry '\(Self.string(bytes, entry))' is not key=value"
                }
                let key = entry.lowerBound..<equals
                guard keys.insert(RawKey(bytes: UnsafeBufferPointer(rebasing: bytes[key]))).inserted else {
                    return "duplicate key '\(Self.string(bytes, key))'"
                }
                let value = (equals + 1)..<entry.upperBound
                entries.append(Entry(key: Self.string(bytes, key), value: Self.string(bytes, value)))
                if end == bytes.count { return nil }
                start = end + 1
            }
        }
        if let failure { throw Self.invalid(failure, in: string) }
        self.entries = entries
    }

    /// Parses an ack's attribute string the tolerant way: each entry is split at its first `=`, entries without
    /// one are skipped, and lookups return the first entry with a key. Never fails. Splits on bytes, as
    /// ``init(parsing:)`` does.
    public init(parsingLeniently string: String) {
        var text = string
        self.entries = text.withUTF8 { bytes in
            var entries: [Entry] = []
            var start = 0
            while start < bytes.count {
                let end = bytes[start...].firstIndex(of: Self.separator) ?? bytes.count
                if let equals = bytes[start..<end].firstIndex(of: Self.keyValueSeparator) {
                    entries.append(
                        Entry(key: Self.string(bytes, start..<equals), value: Self.string(bytes, (equals + 1)..<end))
                    )
                }
                start = end + 1
            }
            return entries
        }
    }

    /// The value of the first entry with `key` (compared by bytes, as the server compares keys).
    public subscript(key: String) -> String? {
        self.entries.first { $0.key.utf8.elementsEqual(key.utf8) }?.value
    }

    /// Whether there are no entries.
    public var isEmpty: Bool { self.entries.isEmpty }

    /// Appends an entry (without checking for duplicates).
    public mutating func append(_ key: String, _ value: String) {
        self.entries.append(Entry(key: key, value: value))
    }

    /// Sets `key` to `value`, replacing the first existing entry or appending a new one.
    public mutating func set(_ key: String, _ value: String) {
        if let index = self.entries.firstIndex(where: { $0.key.utf8.elementsEqual(key.utf8) }) {
            self.entries[index].value = value
        } else {
            self.append(key, value)
        }
    }

    /// Removes every entry with `key`.
    public mutating func remove(_ key: String) {
        self.entries.removeAll { $0.key.utf8.elementsEqual(key.utf8) }
    }

    /// The wire form, `k=v&k=v`.
    public var encoded: String {
        var result = ""
        for (index, entry) in self.entries.enumerated() {
            if index > 0 { result += "&" }
            result += entry.key
            result += "="
            result += entry.value
        }
        return result
    }

    public var description: String { self.encoded }

    public func makeIterator() -> IndexingIterator<[Entry]> { self.entries.makeIterator() }

    /// Whether `text` can be used as a key or value: it must not contain `&` or `=` (there is no escaping) and
    /// must not start or end with whitespace the server trims.
    public static func isValidComponent(_ text: String) -> Bool {
        var text = text
        return text.withUTF8 { bytes in
            guard let first = bytes.first, let last = bytes.last else { return true }
            for byte in bytes where byte == Self.separator || byte == Self.keyValueSeparator { return false }
            // Whitespace starts with a byte below 0x21 (ASCII) or above 0x7F: printable ASCII ends need no trimming
            // (the common case, checked per record by the client).
            if (0x21..<0x80).contains(first), (0x21..<0x80).contains(last) { return true }
            return Self.trimmed(bytes, 0..<bytes.count) == 0..<bytes.count
        }
    }

    private static func invalid(_ detail: String, in string: String) -> InLongWireError {
        InLongWireError(.invalidAttributes, "\(detail) in '\(string)'", dataProxyErrorCode: .splitAttributeError)
    }

    // MARK: Bytes

    private static let separator = UInt8(ascii: "&")
    private static let keyValueSeparator = UInt8(ascii: "=")

    private static func string(_ bytes: UnsafeBufferPointer<UInt8>, _ range: Range<Int>) -> String {
        String(decoding: UnsafeBufferPointer(rebasing: bytes[range]), as: UTF8.self)
    }

    /// `range` without the whitespace the server trims from an entry (Guava `trimResults()`).
    private static func trimmed(_ bytes: UnsafeBufferPointer<UInt8>, _ range: Range<Int>) -> Range<Int> {
        var start = range.lowerBound
        var end = range.upperBound
        while start < end {
            let length = Self.whitespaceLength(bytes, at: start, end: end)
            if length == 0 { break }
            start += length
        }
        // Whitespace is one to three bytes long and starts with a lead byte, so trying each length is exact.
        trailing: while start < end {
            for length in 1...Swift.min(3, end - start)
            where Self.whitespaceLength(bytes, at: end - length, end: end) == length {
                end -= length
                continue trailing
            }
            break
        }
        return start..<end
    }

    /// The length of the whitespace character at `bytes[index]` in UTF-8, or 0. Whitespace is Guava's
    /// `CharMatcher.whitespace()`, the Unicode White_Space characters: U+0009...U+000D, U+0020, U+0085, U+00A0,
    /// U+1680, U+2000...U+200A, U+2028, U+2029, U+202F, U+205F and U+3000. Other control characters are kept.
    private static func whitespaceLength(_ bytes: UnsafeBufferPointer<UInt8>, at index: Int, end: Int) -> Int {
        let lead = bytes[index]
        if lead < 0x80 { return lead == 0x20 || (0x09...0x0D).contains(lead) ? 1 : 0 }
        guard index + 1 < end else { return 0 }
        let second = bytes[index + 1]
        if lead == 0xC2 { return second == 0x85 || second == 0xA0 ? 2 : 0 }
        guard index + 2 < end else { return 0 }
        let third = bytes[index + 2]
        switch (lead, second) {
        case (0xE1, 0x9A): return third == 0x80 ? 3 : 0
        case (0xE2, 0x80):
            return (0x80...0x8A).contains(third) || third == 0xA8 || third == 0xA9 || third == 0xAF ? 3 : 0
        case (0xE2, 0x81): return third == 0x9F ? 3 : 0
        case (0xE3, 0x80): return third == 0x80 ? 3 : 0
        default: return 0
        }
    }

    /// Java's `Character.isWhitespace`, which decides whether a string is blank: the White_Space characters
    /// except U+0085 and the no-break spaces, plus U+001C...U+001F.
    private static func isJavaWhitespace(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0x1C...0x1F: true
        case 0x85, 0xA0, 0x2007, 0x202F: false
        default: scalar.properties.isWhitespace
        }
    }

    /// A key compared and hashed by its bytes, as Java compares strings.
    private struct RawKey: Hashable {
        var bytes: UnsafeBufferPointer<UInt8>

        static func == (lhs: Self, rhs: Self) -> Bool { lhs.bytes.elementsEqual(rhs.bytes) }

        func hash(into hasher: inout Hasher) { hasher.combine(bytes: UnsafeRawBufferPointer(self.bytes)) }
    }
}
