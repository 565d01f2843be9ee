/// Holds back a channel's `read()` while its connection is paused, and issues it once the connection resumes:
/// how a connection stops reading when inbound requests have nowhere to go.
@usableFromInline
struct ReadGate {
    /// Frames are not taken from the receive buffer, and no read is issued, while set.
    @usableFromInline var paused = false
    @usableFromInline var readPending = false

    /// The channel asked to read: `true` to pass the read on now.
    @inlinable
    mutating func readRequested() -> Bool {
        guard self.paused else { return true }
        self.readPending = true
        return false
    }

    /// Call after clearing `paused` and taking the buffered frames: `true` to issue the read held back.
    @inlinable
    mutating func resumed() -> Bool {
        guard !self.paused, self.readPending else { return false }
        self.readPending = false
        return true
    }
}
