import Configuration
import InLongDataProxy
import InLongTransport
import Testing

/// The client's `audit.*` settings, as files and `INLONG_AUDIT_*` variables give them.
@Suite struct AuditSettingsTests {
    static func read(_ values: [AbsoluteConfigKey: ConfigValue]) throws(DataProxyError) -> DataProxyClient.Configuration {
        var all = values
        all["proxies"] = .init(.stringArray(["127.0.0.1:46801"]), isSecret: false)
        return try DataProxyClient.Configuration(config: ConfigReader(provider: InMemoryProvider(values: all)))
    }

    @Test func auditIsOnWithProxiesOrAManager() throws {
        #expect(try Self.read([:]).audit == nil)
        let audit = try #require(try Self.read([
            "audit.proxies": .init(.stringArray(["127.0.0.1:10081", "audit:10082"]), isSecret: false),
            "audit.flushInterval": .init(.string("500ms"), isSecret: false),
            "audit.maxPendingRequests": .init(.int(7), isSecret: false),
            "audit.localIP": .init(.string("10.1.2.3"), isSecret: false),
        ]).audit)
        #expect(audit.proxies == [Endpoint(host: "127.0.0.1", port: 10081), Endpoint(host: "audit", port: 10082)])
        #expect(audit.flushInterval == .milliseconds(500) && audit.maxPendingRequests == 7 && audit.localIP == "10.1.2.3")
        #expect(audit.sentAuditID == 1 && audit.ackedAuditID == 2)
        let managed = try #require(try Self.read(["audit.manager": .init(.string("http://manager:8083"), isSecret: false)]).audit)
        #expect(managed.managerURL == "http://manager:8083" && managed.proxies.isEmpty)
    }

    @Test func badAuditSettingsAreTypedErrorsNamingTheKey() {
        func detail(_ values: [AbsoluteConfigKey: ConfigValue]) -> String? {
            do {
                _ = try Self.read(values)
                return nil
            } catch {
                return error.code == .invalidConfiguration ? error.detail : "\(error.code)"
            }
        }
        #expect(detail(["audit.proxies": .init(.stringArray(["nowhere"]), isSecret: false)])?.contains("audit.proxies") == true)
        let proxies: ConfigValue = .init(.stringArray(["127.0.0.1:10081"]), isSecret: false)
        #expect(detail(["audit.proxies": proxies, "audit.flushInterval": .init(.string("0"), isSecret: false)])?.contains("audit.flushInterval") == true)
        #expect(detail(["audit.proxies": proxies, "audit.maxPendingRequests": .init(.string("many"), isSecret: false)])?.contains("audit.maxPendingRequests") == true)
    }
}
