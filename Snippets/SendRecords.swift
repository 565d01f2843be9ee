// Sends records and waits for their acks: the README's example, compiled by `swift build`.
// snippet.show
import InLongDataProxy
import InLongTransport
import NIOCore

let configuration = DataProxyClient.Configuration(proxies: [Endpoint(host: "127.0.0.1", port: 46801)])
// or: DataProxyClient.Configuration(manager: .init(url: "http://manager:8083/inlong/manager/openapi/dataproxy/getIpList", groups: ["g"]))
let lines = ["first", "second", "third"].map { ByteBuffer(string: $0) }
try await withDataProxyClient(configuration: configuration) { client in
    let id = try await client.send("hello", group: "g", stream: "s")  // accepted into the buffer
    let ack = try await client.sendAndWait(ByteBuffer(string: "important"), group: "g", stream: "s")
    let ids = try await client.send(contentsOf: lines, group: "g", stream: "s", attributes: [("env", "prod")])
    // One waiter for a whole call, however many records and batches:
    let summary = try await client.sendAndWait(contentsOf: lines, group: "g", stream: "s")
    print(id, ack.proxy, ids, summary.acked, summary.failures.map(\.error))
    await client.flush()
}
// snippet.end
