import Foundation
import Testing

@testable import InLongAgent

/// `paths` patterns: plain globs, and `**` over directories.
@Suite struct GlobTests {
    private func withTree(_ files: [String], _ body: (String) throws -> Void) throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("inlong-glob-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: root) }
        for file in files {
            let path = root + "/" + file
            try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            #expect(FileManager.default.createFile(atPath: path, contents: Data("x\n".utf8)))
        }
        try body(root)
    }

    @Test func aDoubleStarMatchesNoneToEightDirectories() throws {
        let files = ["a.log", "b.txt", "app/c.log", "app/2026/12/d.log", "1/2/3/4/5/6/7/8/deep.log", "1/2/3/4/5/6/7/8/9/deeper.log"]
        try self.withTree(files) { root in
            let found = expandGlob(root + "/**/*.log").map { String($0.dropFirst(root.count + 1)) }
            #expect(found == ["1/2/3/4/5/6/7/8/deep.log", "a.log", "app/2026/12/d.log", "app/c.log"])
            // At the end it matches the files under it, at any of those depths.
            let all = expandGlob(root + "/app/**").map { String($0.dropFirst(root.count + 1)) }
            #expect(all == ["app/2026/12/d.log", "app/c.log"])
        }
    }

    @Test func aPatternWithoutADoubleStarIsAPlainGlob() throws {
        try self.withTree(["a.log", "app/c.log"]) { root in
            #expect(expandGlob(root + "/*.log") == [root + "/a.log"])
            #expect(expandGlob(root + "/*/*.log") == [root + "/app/c.log"])
            #expect(expandGlob(root + "/app") == [])  // a directory is not a file to read
            #expect(recursiveGlobVariants("/var/log/*.log") == ["/var/log/*.log"])
            #expect(recursiveGlobVariants("/var/**/x").prefix(3) == ["/var/x", "/var/*/x", "/var/*/*/x"])
            #expect(recursiveGlobVariants("/var/**/x").count == 9)
        }
    }
}
