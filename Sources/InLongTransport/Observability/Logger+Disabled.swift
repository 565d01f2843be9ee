public import Logging

extension Logger {
    /// The default of every `logger:` parameter in the package: silent unless the application passes its own
    /// (as async-http-client's `HTTPClient.loggingDisabled`). One definition, so every component is silent the
    /// same way.
    @usableFromInline
    package static let disabled = Logger(label: "inlong.disabled", factory: { _ in SwiftLogNoOpLogHandler() })
}
