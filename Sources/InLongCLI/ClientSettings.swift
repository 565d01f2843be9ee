import ArgumentParser
import Configuration
import Foundation
import InLongDataProxy
import InLongTransport
import InLongWire
import Yams

/// Client settings for a command, by precedence: flags, then `INLONG_*` environment variables, then the
/// `--config` file (JSON or YAML), then the defaults. Secrets (`INLONG_MANAGER_AUTH`) need never be on the
/// command line.
func readClientConfiguration(
    file: String?,
    target: TargetOptions,
    group: String,
    environment: [String: String] = ProcessInfo.processInfo.environment,
    keys: SettingKeys = DataProxyClient.Configuration.settingKeys
) async throws -> DataProxyClient.Configuration {
    try refuseTypos(in: environment, keys: keys, prefix: "INLONG")
    var flags: [AbsoluteConfigKey: ConfigValue] = [:]
    if !target.proxies.isEmpty { flags["proxies"] = ConfigValue(.stringArray(target.proxies), isSecret: false) }
    let proxyTLS = target.https || target.proxyCa != nil || target.proxyCert != nil || target.proxyKey != nil || target.proxyVerify != nil
    if target.http || proxyTLS { flags["proxy.protocol"] = ConfigValue(.string("http"), isSecret: false) }
    if target.https { flags["proxy.tls.enabled"] = ConfigValue(.bool(true), isSecret: false) }
    if let file = target.proxyCa { flags["proxy.tls.caFile"] = ConfigValue(.string(file), isSecret: false) }
    if let file = target.proxyCert { flags["proxy.tls.certificateFile"] = ConfigValue(.string(file), isSecret: false) }
    if let file = target.proxyKey { flags["proxy.tls.keyFile"] = ConfigValue(.string(file), isSecret: false) }
    if let verify = target.proxyVerify { flags["proxy.tls.verify"] = ConfigValue(.string(verify), isSecret: false) }
    if let manager = target.manager { flags["manager.url"] = ConfigValue(.string(manager), isSecret: false) }
    if let auth = target.auth { flags["manager.auth"] = ConfigValue(.string(auth), isSecret: true) }
    if let tenant = target.tenant { flags["manager.tenant"] = ConfigValue(.string(tenant), isSecret: false) }
    if let file = target.managerCa { flags["manager.tls.caFile"] = ConfigValue(.string(file), isSecret: false) }
    if let file = target.managerCert { flags["manager.tls.certificateFile"] = ConfigValue(.string(file), isSecret: false) }
    if let file = target.managerKey { flags["manager.tls.keyFile"] = ConfigValue(.string(file), isSecret: false) }
    if let verify = target.managerVerify { flags["manager.tls.verify"] = ConfigValue(.string(verify), isSecret: false) }
    var providers: [any ConfigProvider] = [
        InMemoryProvider(name: "flags", values: flags),
        DataProxyClient.Configuration.environmentProvider(environment),
    ]
    if let file { providers.append(try await configFileProvider(file, keys: DataProxyClient.Configuration.settingKeys)) }
    let reader = ConfigReader(providers: providers)
    let configuration: DataProxyClient.Configuration
    do {
        configuration = try DataProxyClient.Configuration(config: reader, groups: [group])
    } catch {
        if error.detail.hasPrefix("give proxies") {
            throw ValidationError("give --proxy host:port or --manager URL (or INLONG_PROXIES / INLONG_MANAGER_URL, or --config FILE)")
        }
        throw ValidationError("\(error.detail)")
    }
    return configuration
}

/// A `--config` file as a provider: JSON when it ends in `.json`, YAML otherwise. A key not among `keys` is
/// refused (a typo must not leave a default silently in force).
func configFileProvider(_ file: String, keys: SettingKeys) async throws -> any ConfigProvider {
    guard let data = FileManager.default.contents(atPath: file) else {
        throw ValidationError("cannot read --config \(file): \(String(cString: strerror(errno)).lowercased())")
    }
    let document: Any?
    do {
        document = file.hasSuffix(".json")
            ? try JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed])
            : try Yams.load(yaml: String(decoding: data, as: UTF8.self))
    } catch {
        throw ValidationError("\(file) is not valid \(file.hasSuffix(".json") ? "JSON" : "YAML"): \(error)")
    }
    let unknown = keys.unknownKeys(in: document ?? [String: Any]())
    guard unknown.isEmpty else { throw ValidationError("\(file): " + unknown.map(\.description).joined(separator: "; ")) }
    let location = ConfigReader(provider: InMemoryProvider(values: ["filePath": ConfigValue(.string(file), isSecret: false)]))
    do {
        if file.hasSuffix(".json") { return try await FileProvider<JSONSnapshot>(config: location) }
        return try await FileProvider<YAMLSnapshot>(config: location)
    } catch {
        throw ValidationError("\(file) is not a valid configuration: \(error)")
    }
}

/// The settings a client runs with, one `key: value` per line in the configuration files' key names (the Manager's
/// secret shown as set, never its value): what `--check` prints.
func effectiveSettings(_ configuration: DataProxyClient.Configuration) -> [String] {
    var lines: [String] = []
    if !configuration.proxies.isEmpty { lines.append("proxies: \(configuration.proxies.map(\.description).joined(separator: ", "))") }
    if configuration.transport != .tcp { lines.append("proxy.protocol: \(configuration.transport)") }
    if let tls = configuration.http.tlsDescription { lines.append("proxy.tls: \(tls)") }
    if let manager = configuration.manager {
        lines.append("manager.url: \(manager.url)")
        lines.append("manager.groups: \(manager.groups.joined(separator: ", "))")
        lines.append("manager.auth: \(manager.credentials == nil ? "none" : "set")")
        if let tenant = manager.tenant { lines.append("manager.tenant: \(tenant)") }
        lines.append("manager.cacheFile: \(manager.cacheFile ?? "none")")
        lines.append("manager.refreshInterval: \(seconds(manager.refreshInterval))")
        if let tls = manager.tlsDescription { lines.append("manager.tls: \(tls)") }
    }
    lines.append("batching.linger: \(seconds(configuration.batching.linger))")
    lines.append("batching.maxRecords: \(configuration.batching.maxRecords)")
    lines.append("batching.maxBytes: \(configuration.batching.maxBytes)")
    lines.append("batching.compression: \(configuration.batching.compressionThreshold != nil)")
    lines.append("buffer.maxBytes: \(configuration.buffer.maxBytes)")
    lines.append("buffer.maxRecords: \(configuration.buffer.maxRecords)")
    lines.append("buffer.whenFull: \(configuration.buffer.whenFull == .wait ? "wait" : "fail")")
    lines.append("retry.deliveryTimeout: \(seconds(configuration.retry.deliveryTimeout))")
    lines.append("connection.maxProxies: \(configuration.connection.maxProxies)")
    lines.append("connection.requestTimeout: \(seconds(configuration.connection.requestTimeout))")
    lines.append("connection.heartbeatInterval: \(seconds(configuration.connection.heartbeatInterval))")
    if let spool = configuration.spool {
        lines.append("spool.directory: \(spool.directory)")
        switch spool.sync {
        case .always: lines.append("spool.sync: always")
        case .never: lines.append("spool.sync: never")
        case .interval(let interval): lines.append("spool.sync: \(seconds(interval))")
        }
        lines.append("spool.segmentBytes: \(spool.segmentBytes)")
        lines.append("spool.maxBytes: \(spool.maxBytes)")
    }
    return lines + auditSettings(configuration.audit)
}

/// A duration as the configuration files write it: seconds.
func seconds(_ duration: Duration) -> String {
    let (whole, fraction) = duration.components
    return "\(Double(whole) + Double(fraction) / 1e18)"
}

/// `INLONG_*` variables a letter or two away from a setting's name are typos: refused, with the name meant.
func refuseTypos(in environment: [String: String], keys: SettingKeys, prefix: String) throws {
    let typos = keys.environmentTypos(in: environment, prefix: prefix)
    guard typos.isEmpty else { throw ValidationError(typos.map(\.description).joined(separator: "; ")) }
}
