#if ManagerDiscovery
import AsyncHTTPClient
import NIOSSL

/// TLS settings as configuration files and flags give them: a CA file to trust, a client certificate and key, how
/// the server's certificate is checked. The Manager (`manager.tls.*`) and the HTTP transport (`proxy.tls.*`) read
/// the same four settings, through this one type.
struct TLSSettings {
    /// How a server's certificate is checked.
    enum Verification: String {
        /// The chain against the trusted roots, and the host name.
        case full
        /// The chain, not the host name (a server reached by an address its certificate does not name).
        case noHostname
        /// Nothing: for tests only, it lets anyone in the middle read what is sent.
        case none
    }

    var caFile: String?
    var certificateFile: String?
    var keyFile: String?
    var verify: String?

    /// Whether nothing is set.
    var isEmpty: Bool { self.caFile == nil && self.certificateFile == nil && self.keyFile == nil && self.verify == nil }

    /// `base` with these settings applied. A file that cannot be read or parsed, or an unknown verification, is an
    /// ``DataProxyError/Code/invalidConfiguration`` naming the setting (`prefix.caFile`, ...) and the file.
    func applied(to base: TLSConfiguration, prefix: String) throws(DataProxyError) -> TLSConfiguration {
        func invalid(_ detail: String) -> DataProxyError { DataProxyError(.invalidConfiguration, detail) }
        var tls = base
        if let caFile = self.caFile {
            do {
                tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(caFile))
            } catch {
                throw invalid("\(prefix).caFile: cannot read PEM certificates from \(caFile): \(error)")
            }
        }
        switch (self.certificateFile, self.keyFile) {
        case (nil, nil):
            break
        case (let certificateFile?, let keyFile?):
            do {
                tls.certificateChain = try NIOSSLCertificate.fromPEMFile(certificateFile).map { .certificate($0) }
            } catch {
                throw invalid("\(prefix).certificateFile: cannot read PEM certificates from \(certificateFile): \(error)")
            }
            do {
                tls.privateKey = .privateKey(try NIOSSLPrivateKey(file: keyFile, format: .pem))
            } catch {
                throw invalid("\(prefix).keyFile: cannot read a PEM private key from \(keyFile): \(error)")
            }
        default:
            throw invalid("\(prefix).certificateFile and \(prefix).keyFile go together: give both or neither")
        }
        if let verify = self.verify {
            guard let verification = Verification(rawValue: verify) else {
                throw invalid("\(prefix).verify takes full, noHostname or none, not '\(verify)'")
            }
            switch verification {
            case .full: tls.certificateVerification = .fullVerification
            case .noHostname: tls.certificateVerification = .noHostnameVerification
            case .none: tls.certificateVerification = .none
            }
        }
        return tls
    }

    /// The TLS settings in force, in the words `--check` prints.
    static func describe(_ tls: TLSConfiguration) -> String {
        let verify = switch tls.certificateVerification {
        case .none: "none"
        case .noHostnameVerification: "noHostname"
        default: "full"
        }
        let trust = if case .certificates = tls.trustRoots { "given" } else { "system" }
        return "verify \(verify), trusted roots \(trust), client certificate \(tls.certificateChain.isEmpty ? "none" : "set")"
    }
}

extension DataProxyClient.Configuration.Manager {
    /// TLS for an `https://` Manager from settings (`manager.tls.*`). Nothing given changes nothing.
    mutating func applyTLS(caFile: String?, certificateFile: String?, keyFile: String?, verify: String?) throws(DataProxyError) {
        let settings = TLSSettings(caFile: caFile, certificateFile: certificateFile, keyFile: keyFile, verify: verify)
        guard !settings.isEmpty else { return }
        let base = self.httpClientConfiguration.tlsConfiguration ?? TLSConfiguration.makeClientConfiguration()
        self.httpClientConfiguration.tlsConfiguration = try settings.applied(to: base, prefix: "manager.tls")
    }

    /// The TLS settings in force, for `--check`; `nil` when none were set.
    package var tlsDescription: String? {
        self.httpClientConfiguration.tlsConfiguration.map(TLSSettings.describe)
    }
}

extension DataProxyClient.Configuration.HTTP {
    /// HTTPS to the proxies from settings (`proxy.tls.*`): `enabled` turns it on or off; any other setting given
    /// turns it on (and cannot go with `enabled: false`).
    mutating func applyTLS(
        enabled: Bool?,
        caFile: String?,
        certificateFile: String?,
        keyFile: String?,
        verify: String?
    ) throws(DataProxyError) {
        let settings = TLSSettings(caFile: caFile, certificateFile: certificateFile, keyFile: keyFile, verify: verify)
        if enabled == false, !settings.isEmpty {
            throw DataProxyError(.invalidConfiguration, "proxy.tls.enabled is false, yet other proxy.tls settings are given")
        }
        if let enabled { self.useTLS = enabled }
        guard !settings.isEmpty else { return }
        self.useTLS = true
        let base = self.tlsConfiguration ?? TLSConfiguration.makeClientConfiguration()
        self.tlsConfiguration = try settings.applied(to: base, prefix: "proxy.tls")
    }

    /// HTTPS in force, for `--check`; `nil` when requests go over plain HTTP.
    package var tlsDescription: String? {
        guard self.useTLS else { return nil }
        return TLSSettings.describe(self.tlsConfiguration ?? TLSConfiguration.makeClientConfiguration())
    }
}
#else
extension DataProxyClient.Configuration.Manager {
    /// Without Manager discovery there is no TLS to set: any TLS setting is refused rather than ignored.
    mutating func applyTLS(caFile: String?, certificateFile: String?, keyFile: String?, verify: String?) throws(DataProxyError) {
        guard caFile == nil, certificateFile == nil, keyFile == nil, verify == nil else {
            throw DataProxyError(.invalidConfiguration, "manager.tls settings need swift-inlong's package trait 'ManagerDiscovery'")
        }
    }

    package var tlsDescription: String? { nil }
}

extension DataProxyClient.Configuration.HTTP {
    /// Without the HTTP client (the trait `ManagerDiscovery`) there is no HTTPS: any setting is refused rather
    /// than ignored.
    mutating func applyTLS(
        enabled: Bool?,
        caFile: String?,
        certificateFile: String?,
        keyFile: String?,
        verify: String?
    ) throws(DataProxyError) {
        guard enabled == nil, caFile == nil, certificateFile == nil, keyFile == nil, verify == nil else {
            throw DataProxyError(.invalidConfiguration, "proxy.tls settings need swift-inlong's package trait 'ManagerDiscovery'")
        }
    }

    package var tlsDescription: String? { nil }
}
#endif
