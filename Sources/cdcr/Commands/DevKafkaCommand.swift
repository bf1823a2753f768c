import ArgumentParser
import CDCKafka
import Foundation

struct DevKafkaCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dev-kafka",
        abstract: "Run an embedded Kafka-protocol broker (librdkafka's mock cluster) on loopback until killed.",
        discussion: "Prints bootstrap=HOST:PORT on its first line. For development, demos and tests only: data lives in memory."
    )

    @Option(parsing: .unconditional, help: "Also accept bootstrap connections on this loopback port (forwarded to the broker).")
    var port: Int?

    @Option(parsing: .unconditional, help: "Partitions of each --topic.")
    var partitions: Int = 1

    @Option(name: .customLong("topic"), help: "Topic to create; repeatable.")
    var topics: [String] = []

    @Option(help: "Config file (accepted for symmetry with other commands; unused).")
    var config: String?

    func validate() throws {
        guard (1...1024).contains(partitions) else { throw ValidationError("--partitions must be between 1 and 1024") }
        if let port, !(1...65535).contains(port) { throw ValidationError("--port must be between 1 and 65535") }
    }

    func run() throws {
        let cluster: MockCluster
        do {
            cluster = try MockCluster()
            for t in topics { try cluster.createTopic(t, partitions: partitions) }
        } catch {
            fail(error)
        }
        var bootstrap = cluster.bootstrapServers
        if let port {
            do {
                let target = cluster.bootstrapServers.split(separator: ",")[0]
                let targetPort = Int(target.split(separator: ":").last ?? "") ?? 0
                try TCPForwarder.start(listenPort: port, targetPort: targetPort)
                bootstrap = "127.0.0.1:\(port)"
            } catch {
                fail("cannot listen on 127.0.0.1:\(port): \(error)")
            }
        }
        // Written unbuffered: scripts read this line while the broker keeps running.
        FileHandle.standardOutput.write(Data("bootstrap=\(bootstrap)\n".utf8))
        while true { sleep(3600) }
    }
}
