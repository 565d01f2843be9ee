import InLongTransport
import InLongWire
import NIOCore
import Testing

@testable import InLongDataProxy

/// The HTTP transport's pure parts: a batch's form, the answer's outcome, and the picker's rules by example.
@Suite struct HTTPTransportTests {
    static func batch(_ records: [String], group: String = "g", stream: String = "s", perRecordAttributes: Bool = false) -> SealedBatch {
        var block = ByteBuffer()
        for record in records { InLongRecordBlock.write(ByteBuffer(string: record), into: &block) }
        return SealedBatch(
            key: BatchKey(group: group, stream: stream, perRecordAttributes: perRecordAttributes),
            block: block,
            recordCount: records.count,
            chargedBytes: 0,
            ids: DataProxyRecordIDs(0..<UInt64(records.count)),
            observers: [],
            createdAt: .now,
            dataTime: 1_700_000_000
        )
    }

    @Test func formCarriesTheRecordsJoinedByNewlines() throws {
        let form = try HTTPBatchEncoding.form(of: Self.batch(["a b", "c&d=e", "ü%"], group: "g 1", stream: "s/2"))
        #expect(
            String(buffer: form)
                == "groupId=g+1&streamId=s%2F2&dt=1700000000000&body=a+b%0Ac%26d%3De%0A%C3%BC%25&cnt=3"
        )
        // The receiver's decoder gets the records back byte for byte.
        let fields = try InLongHTTPForm.decode(form)
        let body = try #require(fields.first { $0.name == "body" }?.value)
        #expect(String(buffer: body) == "a b\nc&d=e\nü%")
    }

    @Test func recordsWithoutAnHTTPFormFailTheBatch() {
        #expect(throws: HTTPBatchEncoding.Unrepresentable.self) { try HTTPBatchEncoding.form(of: Self.batch(["one", "two\nlines"])) }
        #expect(throws: HTTPBatchEncoding.Unrepresentable.self) {
            try HTTPBatchEncoding.form(of: Self.batch(["x"], perRecordAttributes: true))
        }
    }

    @Test func answersBecomeOutcomes() {
        let proxy = Endpoint(host: "127.0.0.1", port: 1)
        func outcome(_ status: Int, _ body: String) -> DeliveryOutcome {
            HTTPBatchEncoding.outcome(status: status, body: ByteBuffer(string: body), proxy: proxy)
        }
        guard case .acked = outcome(200, #"{"code":"0","msg":"Ok"}"#) else { Issue.record("code 0 is an ack"); return }
        guard case .acked = outcome(200, #"{"code":0,"msg":"Ok"}"#) else { Issue.record("a numeric code is read"); return }
        guard case .rejected(let code, let message) = outcome(200, #"{"code":"101","msg":"Field streamId must exist and not blank!"}"#) else {
            Issue.record("another code is a refusal")
            return
        }
        #expect(code == .missRequiredStreamID)
        #expect(message == "Field streamId must exist and not blank!")
        guard case .unexpectedReply = outcome(500, "") else { Issue.record("a 500 is no answer"); return }
        guard case .unexpectedReply = outcome(200, "<html>") else { Issue.record("a body that is not JSON is no answer"); return }
        guard case .unexpectedReply = outcome(200, #"{"msg":"Ok"}"#) else { Issue.record("no code is no answer"); return }
    }

    @Test func pickerPrefersHealthyProxiesAndHonoursCaps() {
        let a = Endpoint(host: "a", port: 1)
        let b = Endpoint(host: "b", port: 1)
        let start = ContinuousClock.now
        var picker = HTTPProxyPicker(proxies: [a, b], maxInFlightPerProxy: 1, pauseAfterFailure: .seconds(1))
        // Avoided while another has room.
        #expect(picker.pick(avoiding: [a], now: start) == b)
        // The only one with room, avoided or not.
        #expect(picker.pick(avoiding: [a], now: start) == a)
        #expect(picker.pick(avoiding: [], now: start) == nil)
        // A failure pauses a proxy: the other is taken while the pause lasts, even when avoided.
        picker.finished(a, succeeded: false, now: start)
        picker.finished(b, succeeded: true, now: start)
        #expect(picker.pick(avoiding: [b], now: start + .milliseconds(10)) == b)
        picker.finished(b, succeeded: true, now: start)
        // Once the pause ended, round-robin again.
        #expect(picker.pick(avoiding: [], now: start + .seconds(2)) == a)
        #expect(picker.pick(avoiding: [], now: start + .seconds(2)) == b)
    }

    /// The Manager's answer to `protocolType=HTTP`: nodes it says are HTTP, or of no type, are taken; a TCP node (a
    /// Manager that ignored the filter) is skipped; only TCP nodes is no answer. TCP parsing takes every node.
    @Test func managerHTTPNodesAreParsed() throws {
        let body = #"{"success":true,"errMsg":null,"data":{"clusterId":1,"load":20,"nodeList":[{"id":1,"ip":"10.0.0.1","port":46801,"protocolType":"TCP"},{"id":2,"ip":"10.0.0.1","port":8080,"protocolType":"HTTP"},{"id":3,"ip":"10.0.0.2","port":"8081","protocolType":"http"},{"id":4,"ip":"10.0.0.3","port":8082}]}}"#
        #if ManagerDiscovery
        let http = try ProxyDiscovery.parse(body, group: "g", protocolType: "HTTP")
        #expect(http.endpoints == [Endpoint(host: "10.0.0.1", port: 8080), Endpoint(host: "10.0.0.2", port: 8081), Endpoint(host: "10.0.0.3", port: 8082)])
        #expect(try ProxyDiscovery.parse(body, group: "g").endpoints.count == 4)
        let tcpOnly = #"{"success":true,"data":{"clusterId":1,"nodeList":[{"id":1,"ip":"10.0.0.1","port":46801,"protocolType":"TCP"}]}}"#
        let error = #expect(throws: DataProxyError.self) { try ProxyDiscovery.parse(tcpOnly, group: "g", protocolType: "HTTP") }
        #expect(error?.detail == "the Manager lists no HTTP proxy for g")
        #endif
    }

    /// Routes of the HTTP transport: every proxy without a Manager; with one, a group's own list, else the
    /// configured proxies as a fallback, else none; a group met without a list is told once.
    @Test func httpRoutesFollowTheManagersLists() {
        let configured = Endpoint(host: "c", port: 1)
        let listed = Endpoint(host: "m", port: 2)
        var fixed = HTTPRoutes(configured: [configured], discovers: false)
        let every = fixed.route(for: "g")
        #expect(every == (.every, false))
        var routes = HTTPRoutes(configured: [], discovers: true)
        let first = routes.route(for: "g")
        let second = routes.route(for: "g")
        #expect(first == (.none, true))
        #expect(second == (.none, false))
        #expect(routes.unrouted == ["g"])
        let changed = routes.apply([listed], for: "g")
        let again = routes.apply([listed], for: "g")
        #expect(changed && !again)
        let own = routes.route(for: "g")
        #expect(own == (.among([listed]), false))
        #expect(routes.unrouted.isEmpty)
        #expect(routes.isRouted("g"))
        var fallback = HTTPRoutes(configured: [configured], discovers: true)
        let before = fallback.route(for: "h")
        #expect(before == (.among([configured]), true))
        let applied = fallback.apply([listed], for: "h")
        #expect(applied)
        #expect(fallback.endpoints == [configured, listed])
    }

    /// A pick among a group's proxies never takes another's, and a proxy added later is picked.
    @Test func pickerPicksAmongCandidatesAndTakesAddedProxies() {
        let a = Endpoint(host: "a", port: 1)
        let b = Endpoint(host: "b", port: 1)
        let now = ContinuousClock.now
        var picker = HTTPProxyPicker(proxies: [a], maxInFlightPerProxy: 1, pauseAfterFailure: .seconds(1))
        let none = picker.pick(among: [b], avoiding: [], now: now)
        #expect(none == nil)
        picker.add([b, a])
        #expect(picker.proxies == [a, b])
        let onB = picker.pick(among: [b], avoiding: [], now: now)
        let full = picker.pick(among: [b], avoiding: [], now: now)
        let onA = picker.pick(avoiding: [], now: now)
        #expect(onB == b && full == nil && onA == a)
    }

    @Test func transportNamesParse() {
        #expect(DataProxyClient.Transport("HTTP") == .http)
        #expect(DataProxyClient.Transport("tcp") == .tcp)
        #expect(DataProxyClient.Transport("udp") == nil)
    }
}
