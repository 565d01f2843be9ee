#if ManagerDiscovery
import AsyncHTTPClient
import NIOSSL

extension DataProxyClient.Configuration.Manager {
    /// How an `https://` Manager's certificate is checked.
    enum TLSVerification: String {
        /// The chain against the trusted roots, and the host name.
        case full
        /// The chain, not the host name (a Manager reached by an address its certificate does not name).
        case noHostname
        /// Nothing: for tests only, it lets anyone in the middle read the credentials.
        case none
    }

    /// TLS for an `https://` Manager from settings: a CA file to trust, a client certificate and key, how the
    /// server's certificate is checked. Nothing given changes nothing. A file that cannot be read or parsed is an
    /// ``DataProxyError/Code/invalidConfiguration`` naming the setting and the file.
    mutating func applyTLS(caFile: String?, certificateFile: String?, keyFile: String?, verify: String?) throws(DataProxyError) {
        guard caFile != nil || certificateFile != nil || keyFile != nil || verify != nil else { return }
        func invalid(_ detail: String) -> DataProxyError { DataProxyError(.invalidConfiguration, detail) }
        var tls = self.httpClientConfiguration.tlsConfiguration ?? TLSConfiguration.makeClientConfiguration()
        if let caFile {
            do {
                tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(caFile))
            } catch {
                throw invalid("manager.tls.caFile: cannot read PEM certificates from \(caFile): \(error)")
            }
        }
        switch (certificateFile, keyFile) {
        case (nil, nil):
            break
        case (let certificateFile?, let keyFile?):
            do {
                tls.certificateChain = try NIOSSLCertificate.fromPEMFile(certificateFile).map { .certificate($0) }
            } catch {
                throw invalid("manager.tls.certificateFile: cannot read PEM certificates from \(certificateFile): \(error)")
            }
            do {
                tls.privateKey = .privateKey(try NIOSSLPrivateKey(file: keyFile, format: .pem))
            } catch {
                throw invalid("manager.tls.keyFile: cannot read a PEM private key from \(keyFile): \(error)")
            }
        default:
            throw invalid("manager.tls.certificateFile and manager.tls.keyFile go together: give both or neither")
        }
        if let verify {
            guard let verification = TLSVerification(rawValue: verify) else {
                throw invalid("manager.tls.verify takes full, noHostname or none, not '\(verify)'")
            }
            switch verification {
            case .full: tls.certificateVerification = .fullVerification
            case .noHostname: tls.certificateVerification = .noHostnameVerification
            case .none: tls.certificateVerification = .none
            }
        }
        self.httpClientConfiguration.tlsConfiguration = tls
    }

    /// The TLS settings in force, for `--check`; `nil` when none were set.
    package var tlsDescription: String? {
        guard let tls = self.httpClientConfiguration.tlsConfiguration else { return nil }
        let verify = switch tls.certificateVerification {
        case .none: "none"
        case .noHostnameVerification: "noHostname"
        default: "full"
        }
        let trust = if case .certificates = tls.trustRoots { "given" } else { "system" }
        return "verify \(verify), trusted roots \(trust), client certificate \(tls.certificateChain.isEmpty ? "none" : "set")"
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
#endif
