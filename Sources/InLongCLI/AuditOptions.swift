import ArgumentParser
import InLongDataProxy
import InLongTransport

/// Where a command reports its per-minute counts to InLong Audit (`audit.*` settings, overridden here).
struct AuditTargetOptions: ParsableArguments {
    @Option(name: .customLong("audit-proxy"), help: "Report per-minute counts (sent, acked) to this InLong audit proxy, host:port (repeat for several).")
    var auditProxies: [String] = []

    @Option(help: "Report per-minute counts to the audit proxies this InLong Manager lists, http://HOST:PORT.")
    var auditManager: String?

    @Option(help: "Seconds between audit reports (default 60); the last counts are always sent at the end.")
    var auditInterval: Double?

    func validate() throws {
        for proxy in self.auditProxies where Endpoint(proxy) == nil { throw ValidationError("--audit-proxy takes host:port, not '\(proxy)'") }
        if let interval = self.auditInterval, !(interval > 0 && interval.isFinite) { throw ValidationError("--audit-interval takes positive seconds") }
        if self.auditInterval != nil, self.auditProxies.isEmpty, self.auditManager == nil {
            throw ValidationError("--audit-interval needs --audit-proxy or --audit-manager")
        }
    }

    /// `audit` with the flags applied: flags name the proxies or Manager, keeping the other settings.
    func applied(to audit: DataProxyClient.Configuration.Audit?) -> DataProxyClient.Configuration.Audit? {
        guard !self.auditProxies.isEmpty || self.auditManager != nil || self.auditInterval != nil else { return audit }
        var audit = audit ?? DataProxyClient.Configuration.Audit(proxies: [])
        if !self.auditProxies.isEmpty {
            audit.proxies = self.auditProxies.compactMap { Endpoint($0) }
            audit.managerURL = nil
        }
        if let manager = self.auditManager { audit.managerURL = manager }
        if let interval = self.auditInterval { audit.flushInterval = .milliseconds(Int64(interval * 1000)) }
        return audit.proxies.isEmpty && audit.managerURL == nil ? nil : audit
    }
}

/// The audit settings as `--check` prints them.
func auditSettings(_ audit: DataProxyClient.Configuration.Audit?) -> [String] {
    guard let audit else { return [] }
    var lines: [String] = []
    if !audit.proxies.isEmpty { lines.append("audit.proxies: \(audit.proxies.map(\.description).joined(separator: ", "))") }
    if let manager = audit.managerURL { lines.append("audit.manager: \(manager)") }
    lines.append("audit.flushInterval: \(seconds(audit.flushInterval))")
    lines.append("audit.maxPendingRequests: \(audit.maxPendingRequests)")
    return lines
}

/// The agent counts as InLong's agent does: lines read (`AGENT_INPUT`, 3; counted as their batches are sealed) and
/// delivered (`AGENT_OUTPUT`, 4).
func agentAudit(_ audit: DataProxyClient.Configuration.Audit) -> DataProxyClient.Configuration.Audit {
    var audit = audit
    audit.sentAuditID = 3
    audit.ackedAuditID = 4
    audit.failedAuditID = 4 | (1 << 19)
    return audit
}
