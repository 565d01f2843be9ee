/// What one audit count is about: a minute of data time, a group and stream, an audit item, and InLong's audit
/// tag and version (`-1`, "none", unless set).
public struct AuditKey: Hashable, Sendable {
    /// The first millisecond (since the epoch) of the minute the records' data time falls in.
    public var minute: Int64
    public var group: String
    public var stream: String
    public var auditID: AuditID
    /// InLong's `audit_tag`; `"-1"` (InLong's `DEFAULT_AUDIT_TAG`) when unused.
    public var auditTag: String
    /// InLong's `audit_version`; `-1` when unused (written as the unsigned 64-bit pattern, as the Java SDK does).
    public var auditVersion: Int64

    /// The key of records whose data time is `logTime` (milliseconds since the epoch): their minute is
    /// `logTime` rounded down to a multiple of 60,000, so that every count lands in exactly one minute.
    public init(logTime: Int64, group: String, stream: String, auditID: AuditID, auditTag: String = "-1", auditVersion: Int64 = -1) {
        self.minute = Self.minute(of: logTime)
        self.group = group
        self.stream = stream
        self.auditID = auditID
        self.auditTag = auditTag
        self.auditVersion = auditVersion
    }

    /// `time` (milliseconds since the epoch) rounded down to its minute; times before the epoch round down too.
    public static func minute(of time: Int64) -> Int64 {
        let (quotient, remainder) = time.quotientAndRemainder(dividingBy: 60_000)
        return (remainder < 0 ? quotient - 1 : quotient) * 60_000
    }
}

/// Counts of one ``AuditKey``: records, their bytes and their summed delay.
public struct AuditCounts: Hashable, Sendable {
    public var count: UInt64
    public var size: UInt64
    /// The records' delays summed, milliseconds (InLong adds `delay × count` per report).
    public var delay: Int64

    public init(count: UInt64 = 0, size: UInt64 = 0, delay: Int64 = 0) {
        self.count = count
        self.size = size
        self.delay = delay
    }

    public static func += (lhs: inout AuditCounts, rhs: AuditCounts) {
        lhs.count &+= rhs.count
        lhs.size &+= rhs.size
        lhs.delay &+= rhs.delay
    }
}

/// One counted key: a body of an audit request.
public struct AuditEntry: Hashable, Sendable {
    public var key: AuditKey
    public var counts: AuditCounts

    public init(key: AuditKey, counts: AuditCounts) {
        self.key = key
        self.counts = counts
    }
}
