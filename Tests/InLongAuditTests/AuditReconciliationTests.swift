import InLongAudit
import Testing

@Suite struct AuditReconciliationTests {
    static func entry(_ id: AuditID, _ count: UInt64, stream: String = "s", minute: Int64 = 1_765_000_020_000) -> AuditEntry {
        AuditEntry(key: AuditKey(logTime: minute, group: "g", stream: stream, auditID: id), counts: AuditCounts(count: count))
    }

    @Test func rowsCompareSentAckedAndReceivedPerMinuteAndStream() {
        let reconciliation = AuditReconciliation(entries: [
            Self.entry(.sdkInput, 10), Self.entry(.sdkOutput, 10), Self.entry(.dataProxyInput, 10),
            Self.entry(.sdkInput, 5, stream: "t"), Self.entry(.sdkOutput, 4, stream: "t"), Self.entry(.dataProxyInput, 4, stream: "t"),
            Self.entry(.dataProxyOutput, 99),  // not reconciled
        ])
        #expect(reconciliation.rows.map(\.stream) == ["s", "t"])
        #expect(reconciliation.rows.map(\.agrees) == [true, false])
        #expect(reconciliation.rows[1].difference == -1)
        #expect(!reconciliation.agrees)
        #expect(reconciliation.table() == """
            minute (UTC)      group  stream  sent  acked  received  difference
            2025-12-06 05:47  g      s         10     10        10           0  ok
            2025-12-06 05:47  g      t          5      4         4          -1  MISMATCH
            """)
    }

    @Test func noRowsIsNotAgreement() {
        #expect(!AuditReconciliation(entries: []).agrees)
    }

    @Test func statDataRoundTripsThroughTheQueryShape() {
        let entry = Self.entry(.dataProxyInput, 7)
        let row = AuditStatData(entry)
        #expect(row.logTs == "2025-12-06 05:47:00")
        #expect(row.entry == entry)
        #expect(AuditStatData.time(parsing: "2025-12-06 05:47") == 1_765_000_020_000)
        #expect(AuditStatData.time(parsing: "2025-13-06 05:47") == nil)
    }
}
