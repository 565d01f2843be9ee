@testable import InLongAudit
import InLongTransport
import Testing

/// The Manager's answer for audit proxies, as its `AuditController` writes `Response<List<AuditProxy>>`.
@Suite struct AuditProxyListTests {
    @Test func theManagersListIsRead() throws {
        let body = #"{"success":true,"errMsg":null,"data":[{"host":"10.0.0.7","port":10081},{"host":"audit-2","port":10082}]}"#
        #expect(try AuditProxyList.parse(body) == [Endpoint(host: "10.0.0.7", port: 10081), Endpoint(host: "audit-2", port: 10082)])
    }

    @Test func failuresAndEmptyListsAreErrors() {
        #expect(throws: AuditError.self) { try AuditProxyList.parse(#"{"success":false,"errMsg":"no permission","data":null}"#) }
        #expect(throws: AuditError.self) { try AuditProxyList.parse(#"{"success":true,"data":[]}"#) }
        #expect(throws: AuditError.self) { try AuditProxyList.parse(#"{"success":true,"data":[{"host":"h","port":0}]}"#) }
        #expect(throws: AuditError.self) { try AuditProxyList.parse("<html>") }
    }

    @Test func theRequestURLIsTheAuditSDKs() {
        var manager = AuditReporter.Manager(url: "manager:8083")
        #expect(manager.requestURL == "http://manager:8083/inlong/manager/openapi/audit/getAuditProxy?component=Agent")
        manager.url = "https://m/inlong/manager/openapi/audit/getAuditProxy"
        manager.component = "Data Proxy"
        #expect(manager.requestURL == "https://m/inlong/manager/openapi/audit/getAuditProxy?component=Data%20Proxy")
    }
}
