/// The keys a configuration file may hold. A key the file has and the list does not is a typo (`lingr`,
/// `atributes`): refused, with the nearest known key, rather than ignored while its default silently applies.
///
/// Keys are dotted paths (`batching.linger`); `[]` marks a list of objects (`sources[].paths`), and a key ending
/// in `.*` takes any keys below it (`sources[].attributes.*`).
package struct SettingKeys: Sendable {
    package struct Unknown: Sendable, Hashable, CustomStringConvertible {
        /// Where it is in the file: `batching.lingr`, `sources[0].atributes`.
        package var key: String
        /// The known key it is nearest to, written the same way, if one is near.
        package var suggestion: String?

        package init(key: String, suggestion: String?) {
            self.key = key
            self.suggestion = suggestion
        }

        package var description: String {
            let kind = self.key.contains(".") || self.key.contains("[") || self.key.first?.isLowercase == true ? "key" : "variable"
            return "unknown \(kind) '\(self.key)'" + (self.suggestion.map { " (did you mean '\($0)'?)" } ?? "")
        }
    }

    package let keys: Set<String>

    package init(_ keys: some Sequence<String>) {
        self.keys = Set(keys)
    }

    package func union(_ other: SettingKeys) -> SettingKeys {
        SettingKeys(self.keys.union(other.keys))
    }

    /// The unknown keys of a parsed document (the dictionaries, arrays and scalars of JSON or YAML), in order.
    package func unknownKeys(in document: Any) -> [Unknown] {
        var unknown: [Unknown] = []
        self.walk(document, pattern: "", shown: "", into: &unknown)
        return unknown
    }

    /// The environment variable a key is read from under `prefix`: `batching.maxRecords` under `INLONG` is
    /// `INLONG_BATCHING_MAX_RECORDS`.
    package static func environmentName(of key: String, prefix: String) -> String {
        var name = prefix + "_"
        for character in key {
            if character == "." {
                name += "_"
            } else if character.isUppercase {
                name += "_" + character.uppercased()
            } else {
                name += character.uppercased()
            }
        }
        return name
    }

    /// Variables of `environment` that miss one of these keys' names under `prefix` by a letter or two
    /// (`INLONG_BATCHING_LINGR`): typos, said with the name meant. Names far from every key are left alone (other
    /// tools' `INLONG_*` variables).
    package func environmentTypos(in environment: [String: String], prefix: String) -> [Unknown] {
        let names = Set(self.keys.filter { !$0.contains("[]") && !$0.hasSuffix(".*") }.map { Self.environmentName(of: $0, prefix: prefix) })
        return environment.keys.filter { $0.hasPrefix(prefix + "_") && !names.contains($0) }.sorted().compactMap { variable in
            let near = names.map { ($0, editDistance(variable, $0)) }.min { $0.1 < $1.1 || ($0.1 == $1.1 && $0.0 < $1.0) }
            guard let near, near.1 <= 2 else { return nil }
            return Unknown(key: variable, suggestion: near.0)
        }
    }

    private func walk(_ value: Any, pattern: String, shown: String, into unknown: inout [Unknown]) {
        if let list = value as? [Any] {
            for (index, element) in list.enumerated() where Self.mapping(element) != nil {
                self.walk(element, pattern: pattern + "[]", shown: shown + "[\(index)]", into: &unknown)
            }
            return
        }
        guard let mapping = Self.mapping(value) else { return }
        for (key, child) in mapping.sorted(by: { $0.key < $1.key }) {
            let childPattern = pattern.isEmpty ? key : pattern + "." + key
            let childShown = shown.isEmpty ? key : shown + "." + key
            if self.keys.contains(childPattern + ".*") { continue }
            let hasChildren = self.keys.contains { $0.hasPrefix(childPattern + ".") || $0.hasPrefix(childPattern + "[].") }
            if hasChildren {
                self.walk(child, pattern: childPattern, shown: childShown, into: &unknown)
            } else if !self.keys.contains(childPattern) {
                unknown.append(Unknown(key: childShown, suggestion: self.suggestion(for: childPattern, shownParent: shown)))
            }
        }
    }

    /// The known key nearest to `pattern`: among its siblings first (written under the same parent as found),
    /// then anywhere; none when every known key is far from it.
    private func suggestion(for pattern: String, shownParent: String) -> String? {
        let (parent, name) = Self.split(pattern)
        // `a.b.*` names `a.b` itself.
        let names = self.keys.map { $0.hasSuffix(".*") ? String($0.dropLast(2)) : $0 }
        let siblings = names.compactMap { key -> String? in
            let (keyParent, keyName) = Self.split(key)
            return keyParent == parent ? keyName : nil
        }
        if let near = Self.nearest(name, among: siblings) {
            return shownParent.isEmpty ? near : shownParent + "." + near
        }
        return Self.nearest(pattern, among: self.keys.filter { !$0.contains("[]") && !$0.hasSuffix(".*") })
    }

    private static func split(_ pattern: String) -> (parent: String, name: String) {
        guard let dot = pattern.lastIndex(of: ".") else { return ("", pattern) }
        return (String(pattern[..<dot]), String(pattern[pattern.index(after: dot)...]))
    }

    /// The candidate at the smallest edit distance (case ignored), if within a third of the word (at least 2).
    private static func nearest(_ word: String, among candidates: some Sequence<String>) -> String? {
        let limit = max(2, word.count / 3)
        let best = candidates.map { ($0, editDistance(word.lowercased(), $0.lowercased())) }
            .min { $0.1 < $1.1 || ($0.1 == $1.1 && $0.0 < $1.0) }
        guard let best, best.1 <= limit else { return nil }
        return best.0
    }

    private static func mapping(_ value: Any) -> [String: Any]? {
        if let mapping = value as? [String: Any] { return mapping }
        if let mapping = value as? [AnyHashable: Any] {
            var strings: [String: Any] = [:]
            for (key, value) in mapping { strings["\(key.base)"] = value }
            return strings
        }
        return nil
    }
}

/// Levenshtein distance.
private func editDistance(_ a: String, _ b: String) -> Int {
    let a = Array(a)
    let b = Array(b)
    guard !a.isEmpty else { return b.count }
    guard !b.isEmpty else { return a.count }
    var previous = Array(0...b.count)
    var current = [Int](repeating: 0, count: b.count + 1)
    for i in 1...a.count {
        current[0] = i
        for j in 1...b.count {
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
        }
        swap(&previous, &current)
    }
    return previous[b.count]
}
