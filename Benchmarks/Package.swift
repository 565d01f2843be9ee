// swift-tools-version:6.2
import PackageDescription

// Run with: swift package --package-path Benchmarks benchmark
let package = Package(
    name: "swift-inlong-benchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "swift-inlong", path: "../"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.0"),
        .package(url: "https://github.com/ordo-one/benchmark.git", from: "1.38.0", traits: ["MallocInterposer"]),
    ],
    targets: [
        .executableTarget(
            name: "InLongWireBenchmarks",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "InLongWire", package: "swift-inlong"),
                .product(name: "InLongSnappy", package: "swift-inlong"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            path: "Benchmarks/InLongWireBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
        .executableTarget(
            name: "InLongTransportBenchmarks",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "InLongTransport", package: "swift-inlong"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            path: "Benchmarks/InLongTransportBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
        .executableTarget(
            name: "InLongDataProxyBenchmarks",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "InLongDataProxy", package: "swift-inlong"),
                .product(name: "InLongDataProxyReceiver", package: "swift-inlong"),
                .product(name: "InLongTransport", package: "swift-inlong"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            path: "Benchmarks/InLongDataProxyBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
    ]
)
