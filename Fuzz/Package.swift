// swift-tools-version:6.2
// The libFuzzer executables, one per `FuzzTarget`; built and run by `scripts/fuzz.sh`.
import Foundation
import PackageDescription

// A path dependency's identity is its directory name, whatever the checkout is called.
let mainPackage = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .lastPathComponent

let fuzzers = [
    "FuzzFrameDecoder", "FuzzFramer", "FuzzBinaryAck", "FuzzHeartbeat", "FuzzAttributes", "FuzzSnappyDecompress",
    "FuzzSnappyRoundTrip", "FuzzReceiverRequest", "FuzzHTTPForm", "FuzzReceiverHTTPRequest",
]

let package = Package(
    name: "swift-inlong-fuzz",
    platforms: [.macOS(.v15)],
    dependencies: [.package(path: "..")],
    targets: fuzzers.map { name in
        .executableTarget(
            name: name,
            dependencies: [.product(name: "_InLongFuzzTargets", package: mainPackage)],
            // libFuzzer provides `main`.
            swiftSettings: [.unsafeFlags(["-parse-as-library"])]
        )
    }
)
