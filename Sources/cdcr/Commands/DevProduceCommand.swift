import ArgumentParser
import CDCCore
import CDCKafka
import CDCR
import Foundation

struct DevProduceCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dev-produce",
        abstract: "Produce messages from a JSONL file (the fixtures' format) to Kafka, for demos and testing.",
        discussion: "Each line: {\"topic\", \"partition\", \"key\": JSON|null, \"value\": JSON|null} or \"value_raw\": text."
    )

    @OptionGroup var global: GlobalOptions

    @Argument(help: "JSONL file; - for standard input.")
    var file: String

    @Option(help: "Send every message to this topic instead of the line's own.")
    var topicOverride: String?

    func run() throws {
        let settings = try global.settings()
        let data: Data
        if file == "-" {
            data = FileHandle.standardInput.readDataToEndOfFile()
        } else {
            guard let d = FileManager.default.contents(atPath: file) else { throw ValidationError("cannot read \(file)") }
            data = d
        }
        var messages: [OutgoingMessage] = []
        for (n, line) in String(decoding: data, as: UTF8.self).split(separator: "\n").enumerated() where !line.allSatisfy(\.isWhitespace) {
            guard let parsed = try? JSONLMessage(parsing: String(line)), let message = parsed.outgoing(topic: topicOverride) else {
                throw ValidationError("\(file):\(n + 1): not a JSON object with a topic")
            }
            messages.append(message)
        }
        do {
            let producer = try KafkaProducer(properties: settings.kafkaClientProperties())
            try producer.send(messages)
            producer.close()
        } catch {
            fail(error)
        }
        print("produced \(messages.count) message(s)")
    }
}
