import ArgumentParser

struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Benchmarks (not tests): print throughput and ratios measured in one run.",
        subcommands: []
    )
}
