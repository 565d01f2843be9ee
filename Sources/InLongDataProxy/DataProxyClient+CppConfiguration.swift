public import Foundation
import InLongWire

extension DataProxyClient.Configuration {
    /// Reads the JSON configuration file of the reference C++ SDK (its `init-param` object), so that a
    /// deployment moving to this SDK keeps its file. See ``init(cppSDKConfiguration:)``.
    public init(cppSDKConfigurationFile path: String) throws(DataProxyError) {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw DataProxyError(.invalidConfiguration, "cannot read \(path): \(error.localizedDescription)")
        }
        try self.init(cppSDKConfiguration: data)
    }

    /// Reads a C++ SDK configuration: a JSON object whose `init-param` object holds the settings.
    ///
    /// | C++ key | Here |
    /// |---|---|
    /// | `inlong_group_ids`, `manager_url` | ``Manager/groups``, ``Manager/url`` (required) |
    /// | `manager_update_interval` (minutes), `manager_url_timeout` (seconds) | ``Manager/refreshInterval``, ``Manager/requestTimeout`` |
    /// | `need_auth`, `auth_id`, `auth_key` | ``Manager/credentials`` |
    /// | `enable_local_cache` | ``Manager/cacheFile`` (`nil` when false) |
    /// | `max_proxy_num` | ``Connection/maxProxies`` |
    /// | `heart_beat_interval` (ms) | ``Connection/heartbeatInterval`` |
    /// | `tcp_idle_time` (ms) | ``Connection/maxIdleTime`` |
    /// | `enable_balance` | ``Connection/balanceByReportedLoad`` |
    /// | `recv_buf_size` | ``Buffer/maxBytes`` |
    /// | `pack_size`, `pack_timeout` (ms) | ``Batching/maxBytes`` (still capped by the frame limit), ``Batching/linger`` |
    /// | `enable_zip`, `min_zip_len` | ``Batching/compressionThreshold`` |
    /// | `extend_field` | ``Batching/extendedField`` (the trace bit; the others are set per batch) |
    /// | `retry_times` | ``Retry/maxAttempts`` (`retry_times` + 1) |
    ///
    /// Keys that are absent keep this SDK's defaults. A value of the wrong type or out of range keeps the
    /// default, as in the C++ SDK. `enable_pack`, `enable_tcp_nagle`, `ser_port`, `enable_setaffinity` and
    /// `mask_cpuaffinity`, which the C++ SDK reads but never uses, are accepted silently. Every other key
    /// (threads, logging, isolation, `msg_type` other than 7, unknown keys) and every invalid value is listed in
    /// ``unsupportedKeys``, which the client logs once, as one warning, when it is created.
    public init(cppSDKConfiguration json: Data) throws(DataProxyError) {
        let root: [String: CppValue]
        do {
            root = try JSONDecoder().decode([String: CppValue].self, from: json)
        } catch {
            throw DataProxyError(.invalidConfiguration, "not a JSON object: \(error)")
        }
        guard case .object(let parameters) = root["init-param"] else {
            throw DataProxyError(.invalidConfiguration, "no \"init-param\" object")
        }
        var reader = CppParameters(parameters)
        let groups = (reader.string("inlong_group_ids") ?? "")
            .split(separator: ",")
            .map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty }
        guard !groups.isEmpty else {
            throw DataProxyError(.invalidConfiguration, "inlong_group_ids is required: the groups whose proxies the Manager lists")
        }
        let url = reader.string("manager_url") ?? "http://127.0.0.1:8099/inlong/manager/openapi/dataproxy/getIpList"
        var manager = DataProxyClient.Configuration.Manager(url: url, groups: groups)
        if let minutes = reader.integer("manager_update_interval", in: 1...) { manager.refreshInterval = .seconds(minutes * 60) }
        if let seconds = reader.integer("manager_url_timeout", in: 1...) { manager.requestTimeout = .seconds(seconds) }
        let needAuth = reader.bool("need_auth") ?? false
        let authID = reader.string("auth_id")
        let authKey = reader.string("auth_key")
        if needAuth, let authID, let authKey { manager.credentials = (authID, authKey) }
        if reader.bool("enable_local_cache") == false { manager.cacheFile = nil }
        self.init(manager: manager)

        if let count = reader.integer("max_proxy_num", in: 1...) { self.connection.maxProxies = count }
        if let milliseconds = reader.integer("heart_beat_interval", in: 1...) {
            self.connection.heartbeatInterval = .milliseconds(milliseconds)
        }
        if let milliseconds = reader.integer("tcp_idle_time", in: 1...) { self.connection.maxIdleTime = .milliseconds(milliseconds) }
        if let balance = reader.bool("enable_balance") { self.connection.balanceByReportedLoad = balance }
        if let bytes = reader.integer("recv_buf_size", in: 1...) { self.buffer.maxBytes = bytes }
        if let bytes = reader.integer("pack_size", in: 1...) { self.batching.maxBytes = bytes }
        if let milliseconds = reader.integer("pack_timeout", in: 1...) { self.batching.linger = .milliseconds(milliseconds) }
        let zip = reader.bool("enable_zip")
        if let length = reader.integer("min_zip_len", in: 0...) { self.batching.compressionThreshold = length }
        if zip == false { self.batching.compressionThreshold = nil }
        if let bits = reader.integer("extend_field", in: 0...Int(UInt16.max)) {
            self.batching.extendedField = InLongExtendedField(rawValue: UInt16(bits)).intersection(.trace)
        }
        if let retries = reader.integer("retry_times", in: 1...) { self.retry.maxAttempts = retries + 1 }
        if let type = reader.integer("msg_type", in: 1...8), type != 7 { reader.report("msg_type=\(type) (type 7 is sent)") }
        for key in ["enable_pack", "enable_tcp_nagle", "ser_port", "enable_setaffinity", "mask_cpuaffinity"] {
            reader.accept(key)
        }
        self.unsupportedKeys = reader.unsupported()
    }
}

/// A JSON value as the C++ SDK's parser sees it.
private enum CppValue: Decodable {
    case bool(Bool)
    case integer(Int)
    case number(Double)
    case string(String)
    case object([String: CppValue])
    case other

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let value = try? container.decode(Bool.self) {
            self = .bool(value)
        } else if let value = try? container.decode(Int.self) {
            self = .integer(value)
        } else if let value = try? container.decode(Double.self) {
            self = .number(value)
        } else if let value = try? container.decode(String.self) {
            self = .string(value)
        } else if let value = try? container.decode([String: CppValue].self) {
            self = .object(value)
        } else {
            self = .other
        }
    }
}

/// Reads parameters and remembers which keys were used, so that the rest can be reported.
private struct CppParameters {
    private var remaining: [String: CppValue]
    private var reported: [String] = []

    init(_ parameters: [String: CppValue]) {
        self.remaining = parameters
    }

    mutating func string(_ key: String) -> String? {
        guard let value = self.remaining.removeValue(forKey: key) else { return nil }
        if case .string(let text) = value { return text }
        self.report("\(key) (not a string; default kept)")
        return nil
    }

    mutating func integer(_ key: String, in range: some RangeExpression<Int>) -> Int? {
        guard let value = self.remaining.removeValue(forKey: key) else { return nil }
        if case .integer(let number) = value, range.contains(number) { return number }
        self.report("\(key) (invalid value; default kept)")
        return nil
    }

    mutating func bool(_ key: String) -> Bool? {
        guard let value = self.remaining.removeValue(forKey: key) else { return nil }
        if case .bool(let flag) = value { return flag }
        self.report("\(key) (not a boolean; default kept)")
        return nil
    }

    mutating func accept(_ key: String) {
        self.remaining.removeValue(forKey: key)
    }

    mutating func report(_ entry: String) {
        self.reported.append(entry)
    }

    /// Everything reported, then the keys never read, sorted.
    func unsupported() -> [String] {
        self.reported + self.remaining.keys.sorted()
    }
}
