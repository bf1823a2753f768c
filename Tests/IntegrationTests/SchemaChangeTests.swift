import CDCKafka
import CDCPostgres
import CDCR
import Foundation
import Testing

@Suite("schema changes while the applier runs")
struct SchemaChangeTests {
    @Test("a column and a table added to the target while running are used at once, not dead-lettered")
    func addedColumnAndTable() throws {
        let pg = try TestPostgres.sharedCluster()
        let kafka = try TestKafka()
        let target = try pg.createDatabase()
        try kafka.createTopic("ddl")
        let applier = try CDCRProcess.start(["run", "--brokers", kafka.brokers, "--topic", "ddl", "--group", "ddl", "--target", target,
                                             "--kafka-property", "log_level=3"])
        defer { applier.signal(SIGKILL); _ = applier.wait(timeout: .seconds(10)) }
        func send(_ json: String) throws { try kafka.send([OutgoingMessage(topic: "ddl", partition: 0, key: nil, value: Array(json.utf8))]) }

        try send(#"{"change_id": "1", "table": "public.orders", "operation": "INSERT", "key": {"id": 1}, "data": {"id": 1, "status": "new"}, "version": 1}"#)
        #expect(waitUntil(timeout: .seconds(30)) { ledgerCount(target) == 1 }, "\(applier.stderr.suffix(2000))")
        // Before the table exists its change is poison (and the applier now remembers it as missing).
        try send(#"{"change_id": "2", "table": "public.extra", "operation": "INSERT", "key": {"k": "a"}, "data": {"k": "a", "v": 1}, "version": 2}"#)
        #expect(try kafka.read(topic: "ddl.dlq", count: 1).first?.header(DeadLetterWriter.Header.changeID) == "2")

        let conn = try PGConnection.connect(target)
        try conn.execute("ALTER TABLE public.orders ADD COLUMN priority int; CREATE TABLE public.extra (k text PRIMARY KEY, v int)")
        try send(#"{"change_id": "3", "table": "public.orders", "operation": "INSERT", "key": {"id": 2}, "data": {"id": 2, "status": "new", "priority": 3}, "version": 3}"#)
        try send(#"{"change_id": "4", "table": "public.extra", "operation": "INSERT", "key": {"k": "b"}, "data": {"k": "b", "v": 7}, "version": 4}"#)
        // Changes 3 and 4 applied (each change ends applied or dead-lettered, never both).
        #expect(waitUntil(timeout: .seconds(30)) { ledgerCount(target) == 3 }, "\(applier.stderr.suffix(2000))")
        #expect(try conn.query("SELECT priority FROM public.orders WHERE id = 2").scalar == "3")
        #expect(try conn.query("SELECT v FROM public.extra WHERE k = 'b'").scalar == "7")
    }
}
