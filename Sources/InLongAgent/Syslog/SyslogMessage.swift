/// The header of a syslog message, as RFC 5424 or RFC 3164 (BSD) writes it: what the agent can attach to the
/// record as attributes. The record itself is the whole message, as received. Pure.
package struct SyslogMessage: Sendable, Hashable {
    package enum Format: String, Sendable, Hashable {
        case rfc5424
        case rfc3164
    }

    package var format: Format
    /// 0 (kernel) to 23 (local7).
    package var facility: Int
    /// 0 (emergency) to 7 (debug).
    package var severity: Int
    /// As written: RFC 3339 for RFC 5424 (`2003-10-11T22:14:15.003Z`), `Mmm dd hh:mm:ss` for RFC 3164; `nil` for
    /// RFC 5424's `-`.
    package var timestamp: String?
    package var hostname: String?
    /// RFC 5424's APP-NAME, or RFC 3164's tag (`sshd` of `sshd[42]:`).
    package var appName: String?
    /// RFC 5424's PROCID, or the pid of RFC 3164's tag.
    package var procID: String?
    /// RFC 5424 only.
    package var msgID: String?
    /// RFC 5424's structured data as written (`[exampleSDID@32473 iut="3"]`), `nil` for `-`.
    package var structuredData: String?
    /// The free-form text after the header (a leading UTF-8 BOM left out).
    package var message: String

    /// Parses `bytes`; `nil` when they do not start with a valid `<PRI>` (the agent then sends them as they are,
    /// without attributes).
    package init?(_ bytes: some Collection<UInt8>) {
        var scanner = Scanner(Array(bytes))
        guard let priority = scanner.priority() else { return nil }
        self.facility = priority / 8
        self.severity = priority % 8
        self.timestamp = nil
        self.hostname = nil
        self.appName = nil
        self.procID = nil
        self.msgID = nil
        self.structuredData = nil
        self.message = ""
        if scanner.peek == UInt8(ascii: "1"), scanner.peek(1) == UInt8(ascii: " ") {
            self.format = .rfc5424
            scanner.skip(2)
            self.timestamp = scanner.field()
            self.hostname = scanner.field()
            self.appName = scanner.field()
            self.procID = scanner.field()
            self.msgID = scanner.field()
            self.structuredData = scanner.structuredData()
            if scanner.peek == UInt8(ascii: " ") { scanner.skip(1) }
            scanner.skipBOM()
            self.message = scanner.rest()
        } else {
            self.format = .rfc3164
            self.parseBSD(&scanner)
        }
    }

    /// `Mmm dd hh:mm:ss HOST TAG[PID]: MSG`, each part optional as senders write it.
    private mutating func parseBSD(_ scanner: inout Scanner) {
        let start = scanner.position
        if let stamp = scanner.bsdTimestamp() {
            self.timestamp = stamp
            if scanner.peek == UInt8(ascii: " ") { scanner.skip(1) }
            // A host name is a word followed by a space whose next word is not the tag's end.
            let afterStamp = scanner.position
            if let host = scanner.word(), scanner.peek == UInt8(ascii: " "), !host.hasSuffix(":") {
                self.hostname = host
                scanner.skip(1)
            } else {
                scanner.position = afterStamp
            }
        } else {
            scanner.position = start
        }
        let beforeTag = scanner.position
        if let (tag, pid) = scanner.tag() {
            self.appName = tag
            self.procID = pid
        } else {
            scanner.position = beforeTag
        }
        self.message = scanner.rest()
    }
}

/// A cursor over a message's bytes.
private struct Scanner {
    let bytes: [UInt8]
    var position = 0

    init(_ bytes: [UInt8]) {
        self.bytes = bytes
    }

    var peek: UInt8? { self.peek(0) }
    func peek(_ offset: Int) -> UInt8? { self.position + offset < self.bytes.count ? self.bytes[self.position + offset] : nil }
    mutating func skip(_ count: Int) { self.position = min(self.position + count, self.bytes.count) }

    /// `<PRI>`: 1 to 3 digits, 0 to 191.
    mutating func priority() -> Int? {
        guard self.peek == UInt8(ascii: "<") else { return nil }
        var value = 0
        var digits = 0
        var index = self.position + 1
        while index < self.bytes.count, let digit = Self.digit(self.bytes[index]), digits < 3 {
            value = value * 10 + digit
            digits += 1
            index += 1
        }
        guard digits > 0, index < self.bytes.count, self.bytes[index] == UInt8(ascii: ">"), value <= 191 else { return nil }
        self.position = index + 1
        return value
    }

    /// A space-separated header field; `nil` for `-` (RFC 5424's nil value) or at the end.
    mutating func field() -> String? {
        guard let word = self.word() else { return nil }
        if self.peek == UInt8(ascii: " ") { self.skip(1) }
        return word == "-" ? nil : word
    }

    /// The bytes up to the next space or the end; `nil` when there are none.
    mutating func word() -> String? {
        let start = self.position
        while let byte = self.peek, byte != UInt8(ascii: " ") { self.skip(1) }
        guard self.position > start else { return nil }
        return String(decoding: self.bytes[start..<self.position], as: UTF8.self)
    }

    /// `-`, or one or more `[...]` elements (a `]` escaped by `\` does not end one).
    mutating func structuredData() -> String? {
        if self.peek == UInt8(ascii: "-") {
            self.skip(1)
            return nil
        }
        let start = self.position
        while self.peek == UInt8(ascii: "[") {
            self.skip(1)
            while let byte = self.peek, byte != UInt8(ascii: "]") {
                self.skip(byte == UInt8(ascii: "\\") ? 2 : 1)
            }
            self.skip(1)
        }
        return self.position > start ? String(decoding: self.bytes[start..<self.position], as: UTF8.self) : nil
    }

    mutating func skipBOM() {
        if self.peek == 0xEF, self.peek(1) == 0xBB, self.peek(2) == 0xBF { self.skip(3) }
    }

    /// `Mmm dd hh:mm:ss` (the day space-padded), or `nil` with the position unchanged.
    mutating func bsdTimestamp() -> String? {
        let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        guard self.position + 15 <= self.bytes.count else { return nil }
        let text = String(decoding: self.bytes[self.position..<self.position + 15], as: UTF8.self)
        let parts = Array(text.utf8)
        guard months.contains(String(decoding: parts[0..<3], as: UTF8.self)), parts[3] == UInt8(ascii: " "),
            parts[4] == UInt8(ascii: " ") || Self.digit(parts[4]) != nil, Self.digit(parts[5]) != nil, parts[6] == UInt8(ascii: " "),
            Self.digit(parts[7]) != nil, Self.digit(parts[8]) != nil, parts[9] == UInt8(ascii: ":"),
            Self.digit(parts[10]) != nil, Self.digit(parts[11]) != nil, parts[12] == UInt8(ascii: ":"),
            Self.digit(parts[13]) != nil, Self.digit(parts[14]) != nil
        else { return nil }
        self.skip(15)
        return text
    }

    /// `TAG:` or `TAG[PID]:` followed by a space (TAG up to 48 alphanumerics, `-`, `_`, `.`, `/`).
    mutating func tag() -> (String, String?)? {
        let start = self.position
        while let byte = self.peek, Self.isTagByte(byte), self.position - start < 48 { self.skip(1) }
        guard self.position > start else { return nil }
        let tag = String(decoding: self.bytes[start..<self.position], as: UTF8.self)
        var pid: String?
        if self.peek == UInt8(ascii: "[") {
            self.skip(1)
            let pidStart = self.position
            while let byte = self.peek, byte != UInt8(ascii: "]"), byte != UInt8(ascii: " ") { self.skip(1) }
            guard self.peek == UInt8(ascii: "]") else { return nil }
            pid = String(decoding: self.bytes[pidStart..<self.position], as: UTF8.self)
            self.skip(1)
        }
        guard self.peek == UInt8(ascii: ":") else { return nil }
        self.skip(1)
        if self.peek == UInt8(ascii: " ") { self.skip(1) }
        return (tag, pid)
    }

    mutating func rest() -> String {
        defer { self.position = self.bytes.count }
        return String(decoding: self.bytes[self.position...], as: UTF8.self)
    }

    static func digit(_ byte: UInt8) -> Int? {
        byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") ? Int(byte - UInt8(ascii: "0")) : nil
    }

    static func isTagByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
            UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: "/"):
            true
        default:
            false
        }
    }
}

extension SyslogMessage {
    /// RFC 5424's facility keywords, by number (as rsyslog writes them).
    static let facilityNames = [
        "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv", "ftp", "ntp", "security",
        "console", "solaris-cron", "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7",
    ]
    /// RFC 5424's severity keywords, by number.
    static let severityNames = ["emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"]

    /// The header as record attributes: `facility` and `severity` (their keywords), and those of `hostname`,
    /// `appName`, `procId`, `msgId` and `timestamp` the message has. Values are percent-encoded where they hold
    /// `%`, `&` or `=`, which the attribute string cannot carry.
    package var attributes: [(String, String)] {
        var attributes = [("facility", Self.facilityNames[self.facility]), ("severity", Self.severityNames[self.severity])]
        let fields: [(String, String?)] = [
            ("hostname", self.hostname), ("appName", self.appName), ("procId", self.procID), ("msgId", self.msgID), ("timestamp", self.timestamp),
        ]
        for case let (key, value?) in fields where !value.isEmpty {
            attributes.append((key, AgentConfiguration.FileSource.escaped(value)))
        }
        return attributes
    }
}
