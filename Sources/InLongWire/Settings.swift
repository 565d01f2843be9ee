package import Configuration

extension Duration {
    /// A setting given in seconds (fractions allowed), or `nil` when it is negative or not finite: the one reading
    /// of seconds for every configuration of the package.
    package init?(settingSeconds seconds: Double) {
        // Past Int64 milliseconds (about 292 million years) is a mistake, not a setting.
        guard seconds.isFinite, seconds >= 0, seconds * 1000 < 9.2e18 else { return nil }
        self = .milliseconds(Int64(seconds * 1000))
    }
}

extension ConfigReader {
    /// The whole number at `key`; `nil` when there is none, and `invalid`'s error when there is a value of
    /// another kind (`256MiB`, `8.0`, `abc`): swift-configuration alone would answer `nil` and the default would
    /// silently apply.
    package func wholeNumber<Failure: Error>(_ key: ConfigKey, _ invalid: (String) -> Failure) throws(Failure) -> Int? {
        if let value = self.int(forKey: key) { return value }
        guard self.hasValue(key) else { return nil }
        throw invalid("\(key) takes a whole number")
    }

    /// The number at `key` (as ``wholeNumber(_:_:)``).
    package func number<Failure: Error>(_ key: ConfigKey, _ invalid: (String) -> Failure) throws(Failure) -> Double? {
        if let value = self.double(forKey: key) { return value }
        guard self.hasValue(key) else { return nil }
        throw invalid("\(key) takes a number")
    }

    /// The `true` or `false` at `key` (as ``wholeNumber(_:_:)``).
    package func flag<Failure: Error>(_ key: ConfigKey, _ invalid: (String) -> Failure) throws(Failure) -> Bool? {
        if let value = self.bool(forKey: key) { return value }
        guard self.hasValue(key) else { return nil }
        throw invalid("\(key) takes true or false")
    }

    /// Whether `key` holds a value of any kind.
    private func hasValue(_ key: ConfigKey) -> Bool {
        self.string(forKey: key) != nil || self.double(forKey: key) != nil || self.bool(forKey: key) != nil
            || self.stringArray(forKey: key) != nil
    }
}
