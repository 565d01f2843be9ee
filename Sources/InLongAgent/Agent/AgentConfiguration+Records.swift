import Foundation
import InLongDataProxy

#if canImport(Glibc)
import Glibc
#endif

/// A source's record rules (multiline, filters, origin attributes, excluded files, old files): checked once when
/// the configuration is read, compiled again for each file (a compiled pattern belongs to one file's reader).
extension AgentConfiguration.FileSource {
    /// Throws when a pattern does not compile (``AgentConfigurationError/Code-swift.struct/invalidPattern``) or a
    /// limit or attribute key cannot be used.
    public func validate() throws(AgentConfigurationError) {
        let name = "source \(self.group)/\(self.stream)"
        do {
            _ = try self.recordRules()
        } catch {
            throw AgentConfigurationError(invalidPattern: error.pattern, "\(name): \(error)")
        }
        if let multiline = self.multiline {
            guard multiline.maxLines > 0 else { throw AgentConfigurationError("\(name): multiline.maxLines must be positive") }
            guard multiline.maxBytes > 0 else { throw AgentConfigurationError("\(name): multiline.maxBytes must be positive") }
            guard multiline.timeout > .zero else { throw AgentConfigurationError("\(name): multiline.timeout must be positive") }
        }
        if let ignoreOlder = self.ignoreOlder, ignoreOlder <= .zero {
            throw AgentConfigurationError("\(name): ignoreOlder must be positive")
        }
        try self.rateLimit?.validate(key: "rateLimit")
        if let closeInactive = self.closeInactive, closeInactive <= .zero {
            throw AgentConfigurationError(key: "closeInactive", "\(name): closeInactive must be positive")
        }
        let origin = self.origin
        var keys = [origin.fileName, origin.path, origin.host, origin.offset].compactMap { $0 }
        if let pattern = origin.pathPattern {
            do {
                _ = try Regex(pattern)
            } catch {
                throw AgentConfigurationError(invalidPattern: pattern, "\(name): '\(pattern)' is not a valid regular expression: \(error)")
            }
            keys += Self.groupNames(pattern)
        }
        for key in keys {
            guard !key.isEmpty, !key.contains("&"), !key.contains("="), !DataProxyClient.reservedAttributeKeys.contains(key) else {
                throw AgentConfigurationError("\(name): '\(key)' cannot be an attribute key (empty, reserved, or holding & or =)")
            }
        }
    }

    /// The rules every file of this source is read with; `nil` when there are none (lines go straight to the sink).
    func recordRules() throws(LinePatternError) -> RecordAssembler.Rules? {
        guard self.multiline != nil || !self.include.isEmpty || !self.exclude.isEmpty || self.origin.offset != nil else { return nil }
        var rules = RecordAssembler.Rules()
        if let multiline = self.multiline {
            rules.multiline = (
                try LineMatcher(multiline.pattern),
                MultilineStateMachine.Rules(
                    negate: multiline.negate,
                    match: multiline.match == .after ? .after : .before,
                    maxLines: multiline.maxLines,
                    maxBytes: multiline.maxBytes,
                    timeout: multiline.timeout
                )
            )
        }
        for pattern in self.include { rules.include.append(try LineMatcher(pattern)) }
        for pattern in self.exclude { rules.exclude.append(try LineMatcher(pattern)) }
        rules.offsets = self.origin.offset != nil
        return rules
    }

    /// Whether `path` matches one of ``excludeFiles``.
    func excludes(_ path: String) -> Bool {
        self.excludeFiles.contains { fnmatch($0, path, 0) == 0 }
    }

    /// The message attributes of a file at `path`: the source's, then its origin (file name, path, the path
    /// pattern's named groups, the host). Values are percent-encoded where they hold `%`, `&` or `=`, which the
    /// attribute string cannot carry.
    func attributes(path: String, host: String) -> [(String, String)] {
        var attributes = self.attributes.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
        let origin = self.origin
        if let key = origin.fileName { attributes.append((key, String(path.split(separator: "/").last ?? Substring(path)))) }
        if let key = origin.path { attributes.append((key, path)) }
        if let pattern = origin.pathPattern, let regex = try? Regex(pattern), let match = try? regex.firstMatch(in: path) {
            for group in match.output {
                if let name = group.name, let value = group.substring { attributes.append((name, String(value))) }
            }
        }
        if let key = origin.host { attributes.append((key, host)) }
        return attributes.map { ($0, Self.escaped($1)) }
    }

    /// Where a file without a checkpoint starts, given when it was last modified: from its end when it is older
    /// than ``ignoreOlder``.
    func start(_ offset: FileTail.Offset, modified: Duration, now: Duration) -> FileTail.Offset {
        guard offset == .beginning, let ignoreOlder = self.ignoreOlder, now - modified > ignoreOlder else { return offset }
        return .end
    }

    /// The names of a regular expression's named groups, `(?<name>...)` or `(?P<name>...)`.
    static func groupNames(_ pattern: String) -> [String] {
        var names: [String] = []
        var rest = Substring(pattern)
        while let open = rest.range(of: "(?") {
            rest = rest[open.upperBound...]
            if rest.hasPrefix("P") { rest = rest.dropFirst() }
            guard rest.hasPrefix("<"), !rest.hasPrefix("<="), !rest.hasPrefix("<!"), let close = rest.firstIndex(of: ">") else { continue }
            names.append(String(rest[rest.index(after: rest.startIndex)..<close]))
            rest = rest[close...]
        }
        return names
    }

    static func escaped(_ value: String) -> String {
        guard value.contains(where: { $0 == "%" || $0 == "&" || $0 == "=" }) else { return value }
        return value.replacingOccurrences(of: "%", with: "%25").replacingOccurrences(of: "&", with: "%26").replacingOccurrences(of: "=", with: "%3D")
    }
}

/// The host's name, as `gethostname` gives it.
func hostName() -> String {
    var name = [CChar](repeating: 0, count: 256)
    guard gethostname(&name, name.count - 1) == 0 else { return "localhost" }
    return String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}
