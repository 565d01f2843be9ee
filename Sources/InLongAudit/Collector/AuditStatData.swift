import Foundation

/// One row of InLong audit-service's query API (`/audit/query/minutes`, its `StatData`): the counts of one
/// minute, group, stream and audit id, with `logTs` written `yyyy-MM-dd HH:mm:ss`. The collector's query
/// endpoint answers in this shape (minutes in UTC), `{"success": true, "errMsg": "", "data": [...]}`.
public struct AuditStatData: Codable, Sendable, Hashable {
    public var logTs: String
    public var inlongGroupId: String
    public var inlongStreamId: String
    public var auditId: String
    public var auditTag: String?
    public var count: Int64
    public var size: Int64
    public var delay: Int64

    public init(_ entry: AuditEntry) {
        self.logTs = AuditStatData.timeText(entry.key.minute)
        self.inlongGroupId = entry.key.group
        self.inlongStreamId = entry.key.stream
        self.auditId = String(entry.key.auditID.rawValue)
        self.auditTag = entry.key.auditTag
        self.count = Int64(clamping: entry.counts.count)
        self.size = Int64(clamping: entry.counts.size)
        self.delay = entry.counts.delay
    }

    /// The entry the row says, or `nil` when its time or audit id cannot be read.
    public var entry: AuditEntry? {
        guard let time = Self.time(parsing: self.logTs), let id = Int(self.auditId) else { return nil }
        let key = AuditKey(logTime: time, group: self.inlongGroupId, stream: self.inlongStreamId, auditID: AuditID(rawValue: id), auditTag: self.auditTag ?? "-1")
        return AuditEntry(key: key, counts: AuditCounts(count: UInt64(max(0, self.count)), size: UInt64(max(0, self.size)), delay: self.delay))
    }

    /// The whole answer of the query API.
    public struct Response: Codable, Sendable {
        public var success: Bool
        public var errMsg: String?
        public var data: [AuditStatData]?

        public init(success: Bool, errMsg: String? = nil, data: [AuditStatData]?) {
            self.success = success
            self.errMsg = errMsg
            self.data = data
        }
    }

    /// `time` (milliseconds since the epoch) as `yyyy-MM-dd HH:mm:ss` in UTC.
    public static func timeText(_ time: Int64) -> String {
        var seconds = time_t(time >= 0 ? time / 1000 : (time - 999) / 1000)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        return String(
            format: "%04d-%02d-%02d %02d:%02d:%02d",
            Int(parts.tm_year) + 1900, Int(parts.tm_mon) + 1, Int(parts.tm_mday), Int(parts.tm_hour), Int(parts.tm_min), Int(parts.tm_sec)
        )
    }

    /// `yyyy-MM-dd HH:mm:ss` (or `yyyy-MM-dd HH:mm`) read as UTC, in milliseconds since the epoch.
    public static func time(parsing text: String) -> Int64? {
        let fields = text.split(whereSeparator: { $0 == "-" || $0 == " " || $0 == ":" }).map { Int($0) }
        guard fields.count == 5 || fields.count == 6, !fields.contains(nil) else { return nil }
        let numbers = fields.map { $0! }
        var parts = tm()
        parts.tm_year = Int32(numbers[0] - 1900)
        parts.tm_mon = Int32(numbers[1] - 1)
        parts.tm_mday = Int32(numbers[2])
        parts.tm_hour = Int32(numbers[3])
        parts.tm_min = Int32(numbers[4])
        parts.tm_sec = Int32(numbers.count == 6 ? numbers[5] : 0)
        guard (1...12).contains(numbers[1]), (1...31).contains(numbers[2]), (0...23).contains(numbers[3]), (0...59).contains(numbers[4]) else { return nil }
        return Int64(timegm(&parts)) * 1000
    }
}
