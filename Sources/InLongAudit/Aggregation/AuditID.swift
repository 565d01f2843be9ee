/// An InLong audit item: which component counted what (received, sent), and how it ended.
///
/// InLong numbers its items from a base id per component and direction (`AuditIdEnum`: SDK 1 and 2, Agent 3 and
/// 4, DataProxy 5 and 6), with four flag bits above the 16-bit base (`AuditManagerUtils.buildAuditId`): bit 19
/// set for a failure, bit 18 for a non-realtime (checkpoint) count, bit 17 for a discard, bit 16 for a retry.
/// The base ids alone are the successful realtime counts, which is what dashboards reconcile.
public struct AuditID: Hashable, Sendable, Comparable, CustomStringConvertible {
    /// The id as InLong writes it in `AuditMessageBody.audit_id` (a decimal string on the wire).
    public var rawValue: Int

    public init(rawValue: Int) {
        self.rawValue = rawValue
    }

    /// The id of `base` with InLong's flag bits.
    public init(base: Int, success: Bool = true, realtime: Bool = true, discard: Bool = false, retry: Bool = false) {
        precondition((0..<(1 << 16)).contains(base), "an audit base id has 16 bits")
        var value = base
        if !success { value |= 1 << 19 }
        if !realtime { value |= 1 << 18 }
        if discard { value |= 1 << 17 }
        if retry { value |= 1 << 16 }
        self.rawValue = value
    }

    /// Records an application handed to an SDK (`SDK_INPUT`, 1): our client's "sent".
    public static let sdkInput = AuditID(rawValue: 1)
    /// Records an SDK delivered (`SDK_OUTPUT`, 2): our client's "acked".
    public static let sdkOutput = AuditID(rawValue: 2)
    /// Records an SDK gave up on (`SDK_OUTPUT` failed, 524290).
    public static let sdkOutputFailed = AuditID(base: 2, success: false)
    /// Lines an agent read (`AGENT_INPUT`, 3).
    public static let agentInput = AuditID(rawValue: 3)
    /// Lines an agent delivered (`AGENT_OUTPUT`, 4).
    public static let agentOutput = AuditID(rawValue: 4)
    /// Records a DataProxy received and stored (`DATA_PROXY_INPUT`, 5).
    public static let dataProxyInput = AuditID(rawValue: 5)
    /// Records a DataProxy forwarded (`DATA_PROXY_OUTPUT`, 6).
    public static let dataProxyOutput = AuditID(rawValue: 6)

    /// The base id, without the flag bits.
    public var base: Int { self.rawValue & 0xFFFF }
    /// Whether the failure bit is clear.
    public var isSuccess: Bool { self.rawValue & (1 << 19) == 0 }

    public var description: String { String(self.rawValue) }

    public static func < (lhs: AuditID, rhs: AuditID) -> Bool { lhs.rawValue < rhs.rawValue }
}
