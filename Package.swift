// swift-tools-version:6.0
import PackageDescription

let strict: [SwiftSetting] = [.enableUpcomingFeature("ExistentialAny")]

let package = Package(
    name: "cdc-reconciler",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "cdcr", targets: ["cdcr"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.6.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.0.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.0.0"),
    ],
    targets: [
        // C libraries: only CDCKafka imports CRdKafka, only CDCPostgres imports CLibPQ.
        .systemLibrary(name: "CRdKafka", pkgConfig: "rdkafka", providers: [.apt(["librdkafka-dev"])]),
        .systemLibrary(name: "CLibPQ", pkgConfig: "libpq", providers: [.apt(["libpq-dev"])]),
        // Pure core: event model, JSON, decoders, apply planning, version rules. No I/O.
        .target(name: "CDCCore", swiftSettings: strict),
        .target(name: "CDCKafka", dependencies: ["CRdKafka"], swiftSettings: strict),
        .target(name: "CDCPostgres", dependencies: ["CLibPQ"], swiftSettings: strict),
        // The engine: consume loop, applier, bookkeeping schema, configuration.
        .target(
            name: "CDCR",
            dependencies: [
                "CDCCore", "CDCKafka", "CDCPostgres",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Hummingbird", package: "hummingbird"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "cdcr",
            dependencies: [
                "CDCR", "CDCCore", "CDCKafka", "CDCPostgres",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),
        .testTarget(name: "CDCCoreTests", dependencies: ["CDCCore"], swiftSettings: strict),
        .testTarget(
            name: "IntegrationTests",
            dependencies: ["CDCR", "CDCCore", "CDCKafka", "CDCPostgres"],
            swiftSettings: strict
        ),
    ]
)
