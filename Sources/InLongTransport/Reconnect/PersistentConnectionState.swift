/// The state of a persistent connection, as observed by the application.
public enum PersistentConnectionState: Hashable, Sendable, CustomStringConvertible {
    /// Not started yet.
    case idle
    /// A connect attempt is under way.
    case connecting
    /// Connected and usable.
    case ready
    /// The last attempt failed or the connection dropped; waiting to retry.
    case transientFailure
    /// Closed for good.
    case shutdown

    public var description: String {
        switch self {
        case .idle: "idle"
        case .connecting: "connecting"
        case .ready: "ready"
        case .transientFailure: "transientFailure"
        case .shutdown: "shutdown"
        }
    }
}
