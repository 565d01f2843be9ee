extension Duration {
    /// A setting given in seconds (fractions allowed), or `nil` when it is negative or not finite: the one reading
    /// of seconds for every configuration of the package.
    package init?(settingSeconds seconds: Double) {
        guard seconds.isFinite, seconds >= 0 else { return nil }
        self = .milliseconds(Int64(seconds * 1000))
    }
}
