// Runs a receiver and its Manager endpoint in-process, and sends to it through Manager discovery: what a test of
// code that uses the SDK needs, with no InLong cluster.
// snippet.show
import InLongDataProxy
import InLongDataProxyReceiver
import InLongTransport
import NIOCore

var receiverConfiguration = DataProxyReceiver.Configuration.loopback  // 127.0.0.1, a free port
receiverConfiguration.manager = DataProxyManagerServer.Configuration()  // the Manager's proxy list, on a free port
let sink = InMemorySink()
let receiver = DataProxyReceiver(configuration: receiverConfiguration, sink: sink)

try await withThrowingTaskGroup(of: Void.self) { group in
    group.addTask { try await receiver.run() }
    // Both listen once these return.
    let managerURL = try await receiver.manager!.baseURL()
    let manager = DataProxyClient.Configuration.Manager(url: managerURL, groups: ["g"])
    var configuration = DataProxyClient.Configuration(manager: manager)
    configuration.manager?.cacheFile = nil  // no proxy-list cache file in a test
    try await withDataProxyClient(configuration: configuration) { client in
        let summary = try await client.sendAndWait(contentsOf: ["a", "b", "c"].map { ByteBuffer(string: $0) }, group: "g", stream: "s")
        precondition(summary.allAcked)
    }
    print(sink.recordCount, "records,", receiver.statistics().messages, "messages")
    receiver.stop()
    try await group.waitForAll()
}
// snippet.end
