import Foundation

/// The `Authorization` header InLong's Manager checks: HTTP Basic over the secret id and key. One rule for every
/// client of the Manager (proxy discovery, audit proxies, agent tasks) and for the receiver's stand-in.
package enum ManagerAuthorization {
    package static func basic(secretID: String, secretKey: String) -> String {
        "Basic " + Data("\(secretID):\(secretKey)".utf8).base64EncodedString()
    }
}
