import ArgumentParser
import CDCCore
import CDCKafka
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
            guard let json = try? JSONParser.parse(String(line)), let topic = topicOverride ?? json["topic"]?.stringValue else {
                throw ValidationError("\(file):\(n + 1): not a JSON object with a topic")
            }
            let key: [UInt8]? = json["key"].flatMap { $0.isNull ? nil : Array($0.serialized.utf8) }
            let value: [UInt8]?
            if let raw = json["value_raw"]?.stringValue {
                value = Array(raw.utf8)
            } else if let v = json["value"], !v.isNull {
                value = Array(v.serialized.utf8)
            } else {
                value = nil
            }
            let partition = json["partition"]?.int64Value.map { Int32($0) }
            messages.append(OutgoingMessage(topic: topic, partition: partition, key: key, value: value))
        }
        do {
            let producer = try KafkaProducer(properties: settings.kafkaClientProperties())
            try producer.send(messages)
            producer.close()
        } catch {
            fail("\(error)")
        }
        print("produced \(messages.count) message(s)")
    }
}
