/// The `k=v&k=v` attribute string of InLong frames, as an ordered list of entries.
///
/// ``init(parsing:)`` applies exactly the server's rules (wire-protocol.md §4): entries are split on `&` and
/// trimmed, each must split on `=` into exactly two parts, keys must be unique, and an empty entry (a trailing
/// `&`, `&&`) is an error. The server answers error 109 to a string that breaks them. Acks are parsed with
/// ``init(parsingLeniently:)`` instead, because the server does not escape `errMsg`.
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
    public init(parsing string: String) throws(InLongWireError) {
        self.entries = []
        if string.isEmpty { return }
        var seen = Set<String>()
        for rawEntry in string.split(separator: "&", omittingEmptySubsequences: false) {
            let entry = rawEntry.trimmingWhitespace()
            let parts = entry.split(separator: "=", omittingEmptySubsequences: false)
            guard parts.count == 2 else {
                throw Self.invalid("entry '\(entry)' is not key=value", in: string)
            }
            let key = String(parts[0])
            guard seen.insert(key).inserted else {
                throw Self.invalid("duplicate key '\(key)'", in: string)
            }
            self.entries.append(Entry(key: key, value: String(parts[1])))
        }
    }

    /// Parses an ack's attribute string the tolerant way: each entry is split at its first `=`, entries without
    /// one are skipped, and lookups return the first entry with a key. Never fails.
    public init(parsingLeniently string: String) {
        self.entries = []
        for rawEntry in string.split(separator: "&", omittingEmptySubsequences: true) {
            guard let equals = rawEntry.firstIndex(of: "=") else { continue }
            self.entries.append(
                Entry(key: String(rawEntry[..<equals]), value: String(rawEntry[rawEntry.index(after: equals)...]))
            )
        }
    }

    /// The value of the first entry with `key`.
    public subscript(key: String) -> String? {
        self.entries.first { $0.key == key }?.value
    }

    /// Whether there are no entries.
    public var isEmpty: Bool { self.entries.isEmpty }

    /// Appends an entry (without checking for duplicates).
    public mutating func append(_ key: String, _ value: String) {
        self.entries.append(Entry(key: key, value: value))
    }

    /// Sets `key` to `value`, replacing the first existing entry or appending a new one.
    public mutating func set(_ key: String, _ value: String) {
        if let index = self.entries.firstIndex(where: { $0.key == key }) {
            self.entries[index].value = value
        } else {
            self.append(key, value)
        }
    }

    /// Removes every entry with `key`.
    public mutating func remove(_ key: String) {
        self.entries.removeAll { $0.key == key }
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
    /// must not start or end with whitespace (the server trims entries).
    public static func isValidComponent(_ text: String) -> Bool {
        guard !text.utf8.contains(UInt8(ascii: "&")), !text.utf8.contains(UInt8(ascii: "=")) else { return false }
        guard let first = text.first, let last = text.last else { return true }
        return !first.isWhitespace && !last.isWhitespace
    }

    private static func invalid(_ detail: String, in string: String) -> InLongWireError {
        InLongWireError(.invalidAttributes, "\(detail) in '\(string)'", dataProxyErrorCode: .splitAttributeError)
    }
}

extension Substring {
    fileprivate func trimmingWhitespace() -> Substring {
        var result = self
        while let first = result.first, first.isWhitespace { result.removeFirst() }
        while let last = result.last, last.isWhitespace { result.removeLast() }
        return result
    }
}
