import Foundation

/// Counts compared per minute, group and stream: what producers sent and saw acked (the SDK's ``AuditID/sdkInput``
/// and ``AuditID/sdkOutput``, the agent's ``AuditID/agentInput`` and ``AuditID/agentOutput``) against what the
/// DataProxy received (``AuditID/dataProxyInput``). Other audit ids are left out.
public struct AuditReconciliation: Sendable, Hashable {
    public struct Row: Sendable, Hashable {
        /// The first millisecond of the minute, since the epoch.
        public var minute: Int64
        public var group: String
        public var stream: String
        public var sent: UInt64
        public var acked: UInt64
        public var received: UInt64

        /// Received minus sent: negative when records are missing, positive when some arrived twice.
        public var difference: Int64 { Int64(clamping: self.received) - Int64(clamping: self.sent) }
        /// Whether every record sent was acked and received once.
        public var agrees: Bool { self.sent == self.acked && self.acked == self.received }
    }

    /// Ordered by minute, group, stream.
    public var rows: [Row]

    public init(entries: [AuditEntry]) {
        struct RowKey: Hashable { var minute: Int64; var group: String; var stream: String }
        var rows: [RowKey: Row] = [:]
        for entry in entries {
            let key = RowKey(minute: entry.key.minute, group: entry.key.group, stream: entry.key.stream)
            let count = entry.counts.count
            var row = rows[key] ?? Row(minute: key.minute, group: key.group, stream: key.stream, sent: 0, acked: 0, received: 0)
            switch entry.key.auditID {
            case .sdkInput, .agentInput: row.sent &+= count
            case .sdkOutput, .agentOutput: row.acked &+= count
            case .dataProxyInput: row.received &+= count
            default: continue
            }
            rows[key] = row
        }
        self.rows = rows.values.sorted { ($0.minute, $0.group, $0.stream) < ($1.minute, $1.group, $1.stream) }
    }

    /// Whether every row agrees (and there is at least one).
    public var agrees: Bool { !self.rows.isEmpty && self.rows.allSatisfy(\.agrees) }

    /// The rows as an aligned text table with a header line; minutes in UTC, `yyyy-MM-dd HH:mm`.
    public func table() -> String {
        let header = ["minute (UTC)", "group", "stream", "sent", "acked", "received", "difference", ""]
        var lines = [header]
        for row in self.rows {
            lines.append([
                Self.minuteText(row.minute), row.group, row.stream, String(row.sent), String(row.acked), String(row.received),
                String(row.difference), row.agrees ? "ok" : "MISMATCH",
            ])
        }
        var widths = Array(repeating: 0, count: header.count)
        for line in lines { for (index, cell) in line.enumerated() { widths[index] = max(widths[index], cell.count) } }
        return lines.map { line in
            line.enumerated().map { index, cell in
                let pad = String(repeating: " ", count: widths[index] - cell.count)
                // Numbers right-aligned, text left-aligned.
                return (3...6).contains(index) ? pad + cell : cell + pad
            }.joined(separator: "  ").trimmingTrailingSpaces
        }.joined(separator: "\n")
    }

    /// `yyyy-MM-dd HH:mm` in UTC.
    public static func minuteText(_ minute: Int64) -> String {
        var seconds = time_t(minute / 1000)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        return String(format: "%04d-%02d-%02d %02d:%02d", Int(parts.tm_year) + 1900, Int(parts.tm_mon) + 1, Int(parts.tm_mday), Int(parts.tm_hour), Int(parts.tm_min))
    }
}

extension String {
    var trimmingTrailingSpaces: String {
        var text = self
        while text.last == " " { text.removeLast() }
        return text
    }
}
