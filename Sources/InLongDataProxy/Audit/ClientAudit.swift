import Foundation
import InLongTransport
import Logging

#if Audit
import InLongAudit

/// The client's audit counts: one reporter, told per batch (never per record), outside the client's lock.
final class ClientAudit: Sendable {
    let reporter: AuditReporter
    let settings: DataProxyClient.Configuration.Audit

    /// `nil` without settings, or with neither proxies nor a Manager (nothing could be sent).
    init?(_ settings: DataProxyClient.Configuration.Audit?, logger: Logging.Logger) {
        guard let settings, !settings.proxies.isEmpty || settings.managerURL != nil else { return nil }
        var configuration: AuditReporter.Configuration
        if let url = settings.managerURL {
            var manager = AuditReporter.Manager(url: url)
            manager.component = settings.managerComponent
            manager.credentials = settings.managerCredentials
            configuration = AuditReporter.Configuration(manager: manager)
            configuration.proxies = settings.proxies
        } else {
            configuration = AuditReporter.Configuration(proxies: settings.proxies)
        }
        configuration.flushInterval = settings.flushInterval
        configuration.maxPendingRequests = settings.maxPendingRequests
        configuration.localIP = settings.localIP
        self.reporter = AuditReporter(configuration: configuration, logger: logger)
        self.settings = settings
    }

    /// A batch was sealed: its records count as sent in the minute of its data time.
    func sealed(group: String, stream: String, dataTime: UInt32, records: Int, bytes: Int) {
        self.count(AuditID(rawValue: self.settings.sentAuditID), group: group, stream: stream, dataTime: dataTime, records: records, bytes: bytes)
    }

    /// A batch ended, acked or failed for good.
    func ended(group: String, stream: String, dataTime: UInt32, records: Int, bytes: Int, acked: Bool) {
        guard let id = acked ? self.settings.ackedAuditID : self.settings.failedAuditID else { return }
        self.count(AuditID(rawValue: id), group: group, stream: stream, dataTime: dataTime, records: records, bytes: bytes)
    }

    private func count(_ id: AuditID, group: String, stream: String, dataTime: UInt32, records: Int, bytes: Int) {
        let logTime = Int64(dataTime) * 1000
        let delay = max(0, Int64(Date().timeIntervalSince1970 * 1000) - logTime) * Int64(records)
        self.reporter.add(id, group: group, stream: stream, logTime: logTime, count: records, size: bytes, delay: delay)
    }

    func run() async {
        await self.reporter.runUntilClosed()
    }

    /// Sends the last counts (for up to the configured deadline) and waits for the reporter to end.
    func close() async {
        self.reporter.close(deadline: self.settings.closeDeadline)
        await self.reporter.waitUntilEnded()
    }
}

extension DataProxyClient {
    func checkAuditAvailable() throws(DataProxyError) {}
}
#else
/// Without the `Audit` trait there is no reporter; a configuration that asks for one is refused by `run()`.
final class ClientAudit: Sendable {
    init?(_ settings: DataProxyClient.Configuration.Audit?, logger: Logging.Logger) { nil }
    func sealed(group: String, stream: String, dataTime: UInt32, records: Int, bytes: Int) {}
    func ended(group: String, stream: String, dataTime: UInt32, records: Int, bytes: Int, acked: Bool) {}
    func run() async {}
    func close() async {}
}

extension DataProxyClient {
    func checkAuditAvailable() throws(DataProxyError) {
        guard self.configuration.audit != nil else { return }
        throw DataProxyError(
            .invalidConfiguration,
            "audit is configured but this build has no audit reporter: enable swift-inlong's package trait 'Audit'"
        )
    }
}
#endif
