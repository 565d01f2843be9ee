package import Configuration
import Foundation

extension Duration {
    /// A setting given in seconds (fractions allowed), or `nil` when it is negative or not finite: the one reading
    /// of seconds for every configuration of the package.
    package init?(settingSeconds seconds: Double) {
        // Past Int64 milliseconds (about 292 million years) is a mistake, not a setting.
        guard seconds.isFinite, seconds >= 0, seconds * 1000 < 9.2e18 else { return nil }
        self = .milliseconds(Int64(seconds * 1000))
    }
}

extension Duration {
    /// A duration written with a unit (`250ms`, `2.5s`, `1m`, `1h`, `500us`, `10ns`) or as bare seconds (`2.5`).
    package init?(setting text: String) {
        let text = text.trimmingCharacters(in: .whitespaces)
        let units: [(suffix: String, seconds: Double)] = [("ns", 1e-9), ("us", 1e-6), ("ms", 1e-3), ("s", 1), ("m", 60), ("h", 3600)]
        for unit in units where text.hasSuffix(unit.suffix) {
            let number = text.dropLast(unit.suffix.count).trimmingCharacters(in: .whitespaces)
            // `ms` ends in `s` too: only a number before the suffix counts.
            guard let value = Double(number) else { continue }
            self.init(settingSeconds: value * unit.seconds)
            return
        }
        guard let seconds = Double(text) else { return nil }
        self.init(settingSeconds: seconds)
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

    /// The duration at `key`: a number of seconds (`2.5`), or a number with a unit (`250ms`, `2.5s`, `1m`, `1h`,
    /// also `us` and `ns`), the same in files, the environment and flags; `nil` when there is none, and `invalid`'s
    /// error for anything else, or a negative or endless one.
    package func duration<Failure: Error>(_ key: ConfigKey, _ invalid: (String) -> Failure) throws(Failure) -> Duration? {
        let problem = "\(key) takes seconds or a duration such as 250ms"
        if let seconds = self.double(forKey: key) {
            guard let duration = Duration(settingSeconds: seconds) else { throw invalid(problem) }
            return duration
        }
        guard self.hasValue(key) else { return nil }
        guard let text = self.string(forKey: key), let duration = Duration(setting: text) else { throw invalid(problem) }
        return duration
    }

    /// Whether `key` holds a value of any kind.
    package func hasValue(_ key: ConfigKey) -> Bool {
        self.string(forKey: key) != nil || self.double(forKey: key) != nil || self.bool(forKey: key) != nil
            || self.stringArray(forKey: key) != nil
    }
}
