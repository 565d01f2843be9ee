import Foundation
import InLongDataProxy
import InLongDataProxyReceiver
import InLongTestUtils
import InLongTransport
import InLongWire
import Testing

/// The C++ SDK's JSON configuration (`init-param`) read as-is.
@Suite struct CppConfigurationTests {
    /// Every key of the C++ SDK's shipped example, with values of our own.
    private func exampleJSON(managerURL: String = "http://127.0.0.1:8099/inlong/manager/openapi/dataproxy/getIpList") -> String {
        """
        {
          "init-param": {
            "inlong_group_ids": "group_a, group_b",
            "manager_url": "\(managerURL)",
            "manager_update_interval": 3,
            "manager_url_timeout": 4,
            "msg_type": 7,
            "max_proxy_num": 5,
            "per_groupid_thread_nums": 2,
            "dispatch_interval_zip": 8,
            "dispatch_interval_send": 10,
            "recv_buf_size": 20480000,
            "send_buf_size": 10240000,
            "enable_pack": true,
            "pack_size": 32768,
            "pack_timeout": 250,
            "ext_pack_size": 409600,
            "enable_zip": true,
            "min_zip_len": 1024,
            "tcp_detection_interval": 60000,
            "tcp_idle_time": 300000,
            "log_num": 10,
            "log_size": 10,
            "log_level": 3,
            "log_path": "./",
            "need_auth": true,
            "auth_id": "id",
            "auth_key": "secret"
          }
        }
        """
    }

    @Test func theShippedExampleKeysMap() throws {
        let configuration = try DataProxyClient.Configuration(cppSDKConfiguration: Data(self.exampleJSON().utf8))
        let manager = try #require(configuration.manager)
        #expect(manager.groups == ["group_a", "group_b"])
        #expect(manager.url == "http://127.0.0.1:8099/inlong/manager/openapi/dataproxy/getIpList")
        #expect(manager.refreshInterval == .seconds(180))
        #expect(manager.requestTimeout == .seconds(4))
        #expect(manager.credentials?.secretID == "id")
        #expect(manager.credentials?.secretKey == "secret")
        #expect(configuration.connection.maxProxies == 5)
        #expect(configuration.connection.maxIdleTime == .seconds(300))
        #expect(configuration.buffer.maxBytes == 20_480_000)
        #expect(configuration.batching.maxBytes == 32768)
        #expect(configuration.batching.linger == .milliseconds(250))
        #expect(configuration.batching.compressionThreshold == 1024)
        // Reported once, sorted; keys the C++ SDK ignores itself (enable_pack) are not.
        #expect(
            configuration.unsupportedKeys == [
                "dispatch_interval_send", "dispatch_interval_zip", "ext_pack_size", "log_level", "log_num", "log_path",
                "log_size", "per_groupid_thread_nums", "send_buf_size", "tcp_detection_interval",
            ]
        )
    }

    @Test func invalidValuesKeepDefaultsAndAreReported() throws {
        let json = """
            {"init-param": {"inlong_group_ids": "g", "max_proxy_num": -1, "pack_timeout": "soon", "enable_zip": false,
             "retry_times": 4, "extend_field": 3, "enable_local_cache": false, "msg_type": 3, "enable_balance": false,
             "made_up_key": 1}}
            """
        let configuration = try DataProxyClient.Configuration(cppSDKConfiguration: Data(json.utf8))
        let defaults = DataProxyClient.Configuration(proxies: [])
        #expect(configuration.connection.maxProxies == defaults.connection.maxProxies)
        #expect(configuration.batching.linger == defaults.batching.linger)
        #expect(configuration.batching.compressionThreshold == nil)
        #expect(configuration.retry.maxAttempts == 5)
        #expect(configuration.batching.extendedField == .trace)
        #expect(configuration.manager?.cacheFile == nil)
        #expect(configuration.connection.balanceByReportedLoad == false)
        #expect(
            configuration.unsupportedKeys == [
                "max_proxy_num (invalid value; default kept)", "pack_timeout (invalid value; default kept)",
                "msg_type=3 (type 7 is sent)", "made_up_key",
            ]
        )
    }

    @Test func malformedFilesAreTypedErrors() throws {
        for json in ["", "[1]", "{\"init\": {}}", "{\"init-param\": {\"manager_url\": \"http://x\"}}", "{\"init-param\": 5}"] {
            #expect(throws: DataProxyError.self) { try DataProxyClient.Configuration(cppSDKConfiguration: Data(json.utf8)) }
            do {
                _ = try DataProxyClient.Configuration(cppSDKConfiguration: Data(json.utf8))
            } catch {
                #expect(error.code == .invalidConfiguration)
            }
        }
        do {
            _ = try DataProxyClient.Configuration(cppSDKConfigurationFile: "/nonexistent/inlong-config.json")
            Issue.record("a missing file was read")
        } catch {
            #expect(error.code == .invalidConfiguration)
        }
    }

    @Test func aClientStartedFromTheFileSendsThroughTheManager() async throws {
        var receiverConfiguration = DataProxyReceiver.Configuration.loopback
        var manager = DataProxyManagerServer.Configuration()
        manager.credentials = .init(secretID: "id", secretKey: "secret")
        receiverConfiguration.manager = manager
        try await withReceiver(receiverConfiguration) { receiver in
            let file = FileManager.default.temporaryDirectory.appendingPathComponent("inlong-cpp-\(UUID().uuidString).json")
            defer { try? FileManager.default.removeItem(at: file) }
            let json = self.exampleJSON(managerURL: try await receiver.manager!.baseURL())
                .replacingOccurrences(of: "\"log_path\": \"./\",", with: "\"log_path\": \"./\", \"enable_local_cache\": false,")
            try Data(json.utf8).write(to: file)
            let configuration = try DataProxyClient.Configuration(cppSDKConfigurationFile: file.path)
            try await withDataProxyClient(configuration: configuration) { client in
                for index in 0..<100 { try await client.send("c\(index)", group: "group_a", stream: "s") }
                #expect(await client.flush())
                #expect(client.statistics().acked == 100)
            }
            #expect(receiver.memorySink.recordCount == 100)
            #expect(receiver.manager!.requestCount >= 1)
        }
    }
}
