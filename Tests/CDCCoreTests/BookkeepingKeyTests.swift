import CDCCore
import Testing

@Suite("bookkeeping keys")
struct BookkeepingKeyTests {
    @Test("SHA-256 matches the FIPS 180-4 test vectors, across block boundaries")
    func sha256Vectors() {
        #expect(SHA256.hex(Array("".utf8)) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(SHA256.hex(Array("abc".utf8)) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(SHA256.hex(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8))
                == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        #expect(SHA256.hex([UInt8](repeating: 0x61, count: 1_000)) == "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3")
    }

    @Test("short keys are stored as they are; long ones, and ones that look like a digest, as their digest")
    func storedForms() {
        #expect(BookkeepingKey.stored("dbz:public.orders:42:w:{\"id\":1}") == "dbz:public.orders:42:w:{\"id\":1}")
        let long = String(repeating: "k", count: BookkeepingKey.maxStoredBytes + 1)
        #expect(BookkeepingKey.stored(long) == "sha256:" + SHA256.hex(Array(long.utf8)))
        #expect(BookkeepingKey.stored(String(repeating: "k", count: BookkeepingKey.maxStoredBytes)).count == BookkeepingKey.maxStoredBytes)
        // A text that already looks like a digest is hashed too, so it can never equal another key's digest.
        let forged = BookkeepingKey.stored(long)
        #expect(BookkeepingKey.stored(forged) != forged)
        #expect(BookkeepingKey.stored(forged).hasPrefix("sha256:") && BookkeepingKey.stored(forged).utf8.count == 71)
        // Multi-byte characters count by bytes, as the btree limit does.
        let wide = String(repeating: "é", count: 300)  // 600 bytes
        #expect(BookkeepingKey.isHashed(wide))
    }
}
