public import Foundation

#if canImport(Glibc)
import Glibc
#else
import Darwin
#endif

/// A child process with its standard output and error in files; SIGKILLed when dropped while running.
public final class ChildProcess: @unchecked Sendable {
    public enum Status: Equatable, Sendable {
        case exit(Int32)
        case signal(Int32)
    }

    public let name: String
    public let outputPath: String
    public let errorPath: String
    private let process = Process()

    /// `input` is the child's standard input (nothing when `nil`).
    public init(
        _ executable: URL,
        _ arguments: [String],
        environment: [String: String] = [:],
        input: Pipe? = nil,
        logs directory: URL,
        name: String
    ) throws {
        self.name = name
        self.outputPath = directory.appendingPathComponent("\(name).stdout").path
        self.errorPath = directory.appendingPathComponent("\(name).stderr").path
        _ = FileManager.default.createFile(atPath: self.outputPath, contents: nil)
        _ = FileManager.default.createFile(atPath: self.errorPath, contents: nil)
        let output = try FileHandle(forWritingTo: URL(fileURLWithPath: self.outputPath))
        let error = try FileHandle(forWritingTo: URL(fileURLWithPath: self.errorPath))
        defer {
            try? output.close()
            try? error.close()
        }
        self.process.executableURL = executable
        self.process.arguments = arguments
        if !environment.isEmpty {
            self.process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        }
        self.process.standardInput = input ?? FileHandle.nullDevice
        self.process.standardOutput = output
        self.process.standardError = error
        try self.process.run()
    }

    deinit {
        if self.process.isRunning {
            kill(self.process.processIdentifier, SIGKILL)
            self.process.waitUntilExit()
        }
    }

    public var isRunning: Bool { self.process.isRunning }

    public func signal(_ signal: Int32) {
        if self.process.isRunning { kill(self.process.processIdentifier, signal) }
    }

    /// How the process ended, or `nil` if it still runs after `timeout` (then it is SIGKILLed).
    public func waitForExit(timeout: Duration = .seconds(60)) async -> Status? {
        guard await eventually(timeout: timeout, { !self.process.isRunning }) else {
            kill(self.process.processIdentifier, SIGKILL)
            return nil
        }
        let status = self.process.terminationStatus
        return self.process.terminationReason == .exit ? .exit(status) : .signal(status)
    }

    public func error() -> String { (try? String(contentsOfFile: self.errorPath, encoding: .utf8)) ?? "" }

    /// The ends of both outputs, for failure messages.
    public func output() -> String {
        let output = (try? String(contentsOfFile: self.outputPath, encoding: .utf8)) ?? ""
        return "\(self.name) stdout: \(output.suffix(2000))\n\(self.name) stderr: \(self.error().suffix(4000))"
    }
}

/// Runs `body` with a new empty directory under the system's temporary directory, removed afterwards.
public func withTemporaryDirectory<Result>(_ body: (URL) async throws -> Result) async throws -> Result {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("inlong-test-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: directory) }
    return try await body(directory)
}

/// An executable of the package built with the tests: next to the test runner (`.build/debug/<name>` on Linux,
/// where the runner is `.build/debug/<package>PackageTests.xctest`; beside the `.xctest` bundle on macOS), or the
/// path in the environment variable `variable` when it is set.
public func builtExecutable(_ name: String, unlessNamedIn variable: String? = nil) throws -> URL {
    var candidates: [URL] = []
    if let variable, let path = ProcessInfo.processInfo.environment[variable] {
        candidates.append(URL(fileURLWithPath: path))
    }
    let runner = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
    candidates.append(runner.deletingLastPathComponent().appendingPathComponent(name))
    candidates.append(Bundle.main.bundleURL.appendingPathComponent(name))
    for bundle in Bundle.allBundles where bundle.bundleURL.pathExtension == "xctest" {
        candidates.append(bundle.bundleURL.deletingLastPathComponent().appendingPathComponent(name))
    }
    if let found = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0.path) }) { return found }
    throw ExecutableNotFound(
        description: "the \(name) executable is not next to the test runner (looked at "
            + "\(candidates.map(\.path).joined(separator: ", "))): build it with `swift build` first"
            + (variable.map { ", or name it with \($0)" } ?? "")
    )
}

public struct ExecutableNotFound: Error, CustomStringConvertible {
    public var description: String

    public init(description: String) {
        self.description = description
    }
}
