import InLongTransport
import NIOCore
import Testing

@testable import InLongTransportExample

/// The example's server and client modes against each other over loopback.
@Suite struct ExampleProtocolTests {
    @Test func theClientMatchesEveryAnswerFromTheServer() async throws {
        let server = makeExampleServer(host: "127.0.0.1", port: 0)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await server.run() }
            let port = try #require(try await server.localAddress().port)
            let result = try await runExampleClient(
                endpoint: Endpoint(host: "127.0.0.1", port: port),
                requests: 2_000,
                concurrency: 64
            )
            #expect(result.matched == 2_000)
            #expect(result.failed == 0)
            server.stop()
            try await group.next()
        }
        #expect(server.statistics().requestsHandled == 2_000)
    }

    @Test func answersHaveTheDesignFieldNamesOnOneLine() throws {
        var buffer = ByteBuffer()
        try ExampleServerCodec().encode(ExampleAnswer(Uid: "u1", Val: "server: hello, x", Ts: "t"), into: &buffer)
        let line = String(buffer: buffer)
        #expect(line.hasSuffix("\n"))
        #expect(line.dropLast().contains("\n") == false)
        for field in ["\"Uid\":\"u1\"", "\"Val\":\"server: hello, x\"", "\"Ts\":\"t\""] { #expect(line.contains(field)) }
        let request = try ExampleServerCodec().decode(ByteBuffer(string: "{\"Uid\": \"7\", \"Val\": \"hi\"}\n"))
        #expect(request == ExampleRequest(Uid: "7", Val: "hi"))
    }
}
