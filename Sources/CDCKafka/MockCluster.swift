import CRdKafka

/// librdkafka's mock cluster: a real Kafka-protocol broker on a loopback TCP port, with consumer
/// groups, offset commits and fault injection. For development, demos and tests.
///
/// Ownership: the cluster lives inside a producer handle this object owns; `close()`/deinit destroys
/// the cluster and then the handle, each once.
public final class MockCluster: @unchecked Sendable {
    // @unchecked Sendable: pointers are set once in init and only read afterwards; the mock cluster
    // runs on its own librdkafka thread and its API is thread-safe.
    private var rk: OpaquePointer?
    private var cluster: OpaquePointer?
    /// `host:port[,host:port…]` to give clients as `bootstrap.servers`.
    public let bootstrapServers: String

    public init(brokers: Int = 1) throws(KafkaError) {
        let conf = try KafkaConf.make([("log_level", "3")])
        let rk = try KafkaConf.newHandle(RD_KAFKA_PRODUCER, conf)
        guard let cluster = rd_kafka_mock_cluster_new(rk, Int32(brokers)) else {
            rd_kafka_destroy(rk)
            throw KafkaError(code: RD_KAFKA_RESP_ERR__FAIL.rawValue, message: "cannot start the mock Kafka cluster")
        }
        self.rk = rk
        self.cluster = cluster
        self.bootstrapServers = String(cString: rd_kafka_mock_cluster_bootstraps(cluster))
    }

    deinit { close() }

    /// Creates `topic` with `partitions` partitions (replication factor 1).
    public func createTopic(_ topic: String, partitions: Int) throws(KafkaError) {
        guard let cluster else { throw KafkaError(code: RD_KAFKA_RESP_ERR__DESTROY.rawValue, message: "mock cluster is closed") }
        let err = rd_kafka_mock_topic_create(cluster, topic, Int32(partitions), 1)
        if err != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(err, "create topic \(topic)") }
    }

    /// Makes the next `count` requests of Kafka API `apiKey` (e.g. 8 = OffsetCommit, 1 = Fetch) fail
    /// with `error` (an `rd_kafka_resp_err_t` code), as a struggling broker would.
    public func failNextRequests(apiKey: Int16, error: Int32, count: Int) {
        guard let cluster else { return }
        var errors = [rd_kafka_resp_err_t](repeating: rd_kafka_resp_err_t(rawValue: error), count: count)
        rd_kafka_mock_push_request_errors_array(cluster, apiKey, count, &errors)
    }

    public func close() {
        if let cluster { rd_kafka_mock_cluster_destroy(cluster) }
        if let rk { rd_kafka_destroy(rk) }
        cluster = nil
        rk = nil
    }
}
