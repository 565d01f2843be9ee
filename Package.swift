// swift-tools-version:6.2
import PackageDescription

let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
    .enableUpcomingFeature("InternalImportsByDefault"),
    .enableUpcomingFeature("NonisolatedNonsendingByDefault"),
]

let package = Package(
    name: "swift-inlong",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "InLongSnappy", targets: ["InLongSnappy"]),
        .library(name: "InLongWire", targets: ["InLongWire"]),
        .library(name: "InLongTransport", targets: ["InLongTransport"]),
        .library(name: "InLongTransportTLS", targets: ["InLongTransportTLS"]),
        .library(name: "InLongDataProxyReceiver", targets: ["InLongDataProxyReceiver"]),
        .library(name: "InLongDataProxy", targets: ["InLongDataProxy"]),
        .library(name: "InLongAgent", targets: ["InLongAgent"]),
        .library(name: "InLongAudit", targets: ["InLongAudit"]),
        .executable(name: "inlong", targets: ["InLongCLI"]),
        // Not API: a product only because the separately built fuzzers (Fuzz/) can depend on nothing else.
        .library(name: "_InLongFuzzTargets", targets: ["InLongFuzzTargets"]),
    ],
    // An application that sends to known proxies only can turn both off (`traits: []`) and build no HTTP client,
    // TLS or YAML parser.
    traits: [
        .trait(
            name: "ManagerDiscovery",
            description: "Proxy discovery through the InLong Manager over HTTP(S) (AsyncHTTPClient, and with it NIOSSL)."
        ),
        .trait(
            name: "YAML",
            description: "YAML configuration files (swift-configuration's YAML trait, Yams); the agent and the CLI need it."
        ),
        .trait(
            name: "Audit",
            description: "Per-minute counts to InLong Audit from the client (InLongAudit, and with it SwiftProtobuf)."
        ),
        .default(enabledTraits: ["ManagerDiscovery", "YAML", "Audit"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.0"),
        .package(url: "https://github.com/apple/swift-collections.git", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-async-algorithms.git", from: "1.0.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.0.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift.git", from: "0.1.0"),
        .package(
            url: "https://github.com/apple/swift-configuration.git",
            from: "1.4.0",
            traits: [.defaults, .trait(name: "YAML", condition: .when(traits: ["YAML"]))]
        ),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.0"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.0.0"),
        .package(url: "https://github.com/apple/swift-protobuf.git", from: "1.39.0"),
        // Documentation only: `swift package generate-documentation` (scripts/check-docs.sh).
        .package(url: "https://github.com/swiftlang/swift-docc-plugin", from: "1.4.0"),
    ],
    targets: [
        .target(
            name: "InLongSnappy",
            swiftSettings: swiftSettings
        ),
        .target(
            name: "InLongWire",
            dependencies: [
                "InLongSnappy",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Configuration", package: "swift-configuration"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "InLongTransport",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        // TLS for the transport's connections and servers: a module of its own, so that an application of the
        // transport (and the DataProxy SDK, whose port has no TLS) builds no TLS unless it asks.
        .target(
            name: "InLongTransportTLS",
            dependencies: [
                "InLongTransport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
            swiftSettings: swiftSettings
        ),
        // CRC-32C with the processor's instruction (Swift has no access to it): the spool checksums every record.
        .target(name: "CInLongCRC32C"),
        .target(
            name: "InLongDataProxyReceiver",
            dependencies: [
                "InLongTransport",
                "InLongWire",
                "InLongSnappy",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Configuration", package: "swift-configuration"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "InLongDataProxy",
            dependencies: [
                "CInLongCRC32C",
                .target(name: "InLongAudit", condition: .when(traits: ["Audit"])),
                "InLongTransport",
                // HTTPS to the proxies says a failed handshake as the transport's TLS does.
                .target(name: "InLongTransportTLS", condition: .when(traits: ["ManagerDiscovery"])),
                "InLongWire",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio", condition: .when(traits: ["ManagerDiscovery"])),
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "AsyncHTTPClient", package: "async-http-client", condition: .when(traits: ["ManagerDiscovery"])),
                .product(name: "NIOSSL", package: "swift-nio-ssl", condition: .when(traits: ["ManagerDiscovery"])),
                .product(name: "AsyncAlgorithms", package: "swift-async-algorithms"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
                .product(name: "Configuration", package: "swift-configuration"),
            ],
            swiftSettings: swiftSettings
        ),
        // InLong Audit: per-minute counts over InLong's audit protocol. AuditApi.pb.swift is generated from
        // AuditApi.proto once and committed (no plugin at build time).
        .target(
            name: "InLongAudit",
            dependencies: [
                "InLongTransport",
                "InLongWire",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "AsyncHTTPClient", package: "async-http-client", condition: .when(traits: ["ManagerDiscovery"])),
                .product(name: "NIOHTTP1", package: "swift-nio", condition: .when(traits: ["ManagerDiscovery"])),
                .product(name: "Configuration", package: "swift-configuration"),
            ],
            exclude: ["Protocol/AuditApi.proto"],
            swiftSettings: swiftSettings
        ),
        // Test support (loopback receivers, raw clients, fixtures, child processes): not product code.
        .target(
            name: "InLongTestUtils",
            dependencies: [
                "InLongTransport",
                "InLongWire",
                "InLongDataProxyReceiver",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            path: "Tests/InLongTestUtils",
            resources: [.copy("Fixtures")],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "InLongFuzzTargets",
            dependencies: [
                "InLongWire",
                "InLongSnappy",
                "InLongDataProxyReceiver",
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "InLongAgent",
            dependencies: [
                "InLongDataProxy",
                "InLongWire",
                "InLongTransport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "AsyncAlgorithms", package: "swift-async-algorithms"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Configuration", package: "swift-configuration"),
                .product(name: "Yams", package: "Yams"),
                // Tasks from the Manager (ManagerTaskFetcher).
                .product(name: "AsyncHTTPClient", package: "async-http-client", condition: .when(traits: ["ManagerDiscovery"])),
                .product(name: "NIOHTTP1", package: "swift-nio", condition: .when(traits: ["ManagerDiscovery"])),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "InLongCLI",
            dependencies: [
                "InLongAgent",
                "InLongAudit",
                "InLongDataProxy",
                "InLongDataProxyReceiver",
                "InLongTransport",
                "InLongWire",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "AsyncAlgorithms", package: "swift-async-algorithms"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Configuration", package: "swift-configuration"),
                .product(name: "Yams", package: "Yams"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "InLongTransportExample",
            dependencies: [
                "InLongTransport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            path: "Examples/InLongTransportExample",
            swiftSettings: swiftSettings
        ),
        // Each module's tests come in two targets: `…Tests` runs without sockets or child processes (the pure
        // machines, embedded channels, files), `…IntegrationTests` over loopback sockets and real processes, so
        // `swift test --skip IntegrationTests` is the fast run.
        .testTarget(
            name: "InLongTransportExampleTests",
            dependencies: [
                "InLongTransportExample",
                "InLongTransport",
                "InLongTestUtils",
                "InLongWire",
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "InLongTransportExampleIntegrationTests",
            dependencies: [
                "InLongTransportExample",
                "InLongTransport",
                "InLongTestUtils",
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "InLongTransportTests",
            dependencies: [
                "InLongTransport",
                "InLongTestUtils",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "ServiceLifecycleTestKit", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "MetricsTestKit", package: "swift-metrics"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "InLongTransportIntegrationTests",
            dependencies: [
                "InLongTransport",
                "InLongTransportTLS",
                "InLongTestUtils",
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "ServiceLifecycleTestKit", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "MetricsTestKit", package: "swift-metrics"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "InLongAgentTests",
            dependencies: [
                "InLongAgent",
                "InLongDataProxy",
                "InLongDataProxyReceiver",
                "InLongTestUtils",
                "InLongTransport",
                "InLongWire",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "MetricsTestKit", package: "swift-metrics"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "InLongAgentIntegrationTests",
            dependencies: [
                "InLongAgent",
                "InLongDataProxy",
                "InLongDataProxyReceiver",
                "InLongTestUtils",
                "InLongTransport",
                "InLongWire",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "MetricsTestKit", package: "swift-metrics"),
            ],
            swiftSettings: swiftSettings
        ),
        // Seeded, deterministic simulations of the pure machines on a simulated clock (scripts/simulate.sh runs
        // them long): no sockets, no sleeping.
        .testTarget(
            name: "InLongSimulationTests",
            dependencies: [
                "InLongAgent",
                "InLongDataProxy",
                "InLongTransport",
                "InLongWire",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "DequeModule", package: "swift-collections"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "InLongSnappyTests",
            dependencies: ["InLongSnappy", "InLongWire"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "InLongDataProxyReceiverTests",
            dependencies: [
                "InLongDataProxyReceiver",
                "InLongTestUtils",
                "InLongWire",
                "InLongSnappy",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "MetricsTestKit", package: "swift-metrics"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "InLongDataProxyReceiverIntegrationTests",
            dependencies: [
                "InLongDataProxyReceiver",
                "InLongTestUtils",
                "InLongWire",
                "InLongSnappy",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "MetricsTestKit", package: "swift-metrics"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "InLongDataProxyTests",
            dependencies: [
                "CInLongCRC32C",
                "InLongDataProxy",
                .product(name: "DequeModule", package: "swift-collections"),
                "InLongDataProxyReceiver",
                "InLongTestUtils",
                "InLongTransport",
                "InLongWire",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "MetricsTestKit", package: "swift-metrics"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "InLongDataProxyIntegrationTests",
            dependencies: [
                "InLongDataProxy",
                .product(name: "DequeModule", package: "swift-collections"),
                "InLongDataProxyReceiver",
                "InLongTestUtils",
                "InLongTransport",
                "InLongWire",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "MetricsTestKit", package: "swift-metrics"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Configuration", package: "swift-configuration"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "InLongCLITests",
            dependencies: [
                "InLongCLI",
                "InLongAgent",
                "InLongDataProxy",
                "InLongDataProxyReceiver",
                "InLongTestUtils",
                "InLongTransport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                "InLongWire",
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "InLongCLIIntegrationTests",
            dependencies: [
                "InLongCLI",
                "InLongDataProxy",
                "InLongDataProxyReceiver",
                "InLongTestUtils",
                "InLongTransport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                "InLongWire",
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "InLongFuzzReplayTests",
            dependencies: ["InLongFuzzTargets"],
            resources: [.copy("Corpus")],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "InLongAuditTests",
            dependencies: [
                "InLongAudit",
                "InLongTransport",
                "InLongWire",
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "InLongAuditIntegrationTests",
            dependencies: [
                "InLongAudit",
                "InLongDataProxy",
                "InLongDataProxyReceiver",
                "InLongTestUtils",
                "InLongTransport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Configuration", package: "swift-configuration"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "InLongWireTests",
            dependencies: [
                "InLongTestUtils",
                "InLongWire",
                "InLongSnappy",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOTestUtils", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
    ]
)
