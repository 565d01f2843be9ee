import Foundation
import NIOCore

/// Loads the golden vectors and captured SDK frames copied from the shared spec into the test bundle.
enum Fixtures {
    static let directory = Bundle.module.url(forResource: "Fixtures", withExtension: nil)!

    struct Vector: Decodable, Sendable {
        var id: String
        var direction: String
        var hex: String
        var inputs: [String: JSONValue]?
        var fields: [Field]?

        var bytes: [UInt8] { Hex.decode(self.hex) }
        var buffer: ByteBuffer { ByteBuffer(bytes: self.bytes) }
        func field(_ prefix: String) -> JSONValue? { self.fields?.first { $0.name.hasPrefix(prefix) }?.value }
    }

    struct Field: Decodable, Sendable {
        var off: Int
        var len: Int
        var name: String
        var value: JSONValue
    }

    struct VectorFile: Decodable, Sendable { var vectors: [Vector] }

    static let vectors: [Vector] = {
        let data = try! Data(contentsOf: directory.appendingPathComponent("vectors.json"))
        return try! JSONDecoder().decode(VectorFile.self, from: data).vectors
    }()

    static func vector(_ id: String) -> Vector { vectors.first { $0.id == id }! }

    struct CaptureIndex: Decodable {
        var content_generator: Generator?
        var files: [Capture]
    }

    struct Generator: Decodable { var rule: String }

    struct Capture: Decodable {
        var file: String
        var bytes: Int
        var scenario: String
        var receiver_parsed: Parsed
        var records_in_frame: RecordsInFrame?
        var messages_sent_in_run: Sent
        var ack_sent_hex: String?
        var response_sent_hex: String?
    }

    struct Parsed: Decodable {
        var type: Int
        var raw_type: Int?
        var ext_field: Int?
        var cnt: Int?
        var uniq: UInt32?
        var body_len: Int?
        var body_uncompressed_len: Int?
        var attr: String?
        var data_time: UInt32?
        var version: Int?
        var records: Int?
    }

    struct RecordsInFrame: Decodable { var message_indices: [Int] }

    struct Sent: Decodable {
        var size: Int
        var content: String
    }

    static func captures(_ sdk: String) -> [Capture] {
        let data = try! Data(contentsOf: directory.appendingPathComponent("\(sdk)/index.json"))
        return try! JSONDecoder().decode(CaptureIndex.self, from: data).files
    }

    static func frame(_ sdk: String, _ file: String) -> ByteBuffer {
        ByteBuffer(bytes: try! Data(contentsOf: directory.appendingPathComponent("\(sdk)/\(file)")))
    }

    /// The captures' content generator (index.json `content_generator.rule`).
    static func generatedMessage(index: Int, size: Int, content: String) -> [UInt8] {
        var bytes = Array(String(format: "%010d|", index).utf8.prefix(size))
        var x = UInt64(index + 1) &* 0x9E37_79B9_7F4A_7C15
        for k in 11..<max(11, size) {
            if content == "alpha" {
                bytes.append(UInt8(ascii: "a") + UInt8((k - 11) % 26))
            } else {
                x ^= x << 13
                x ^= x >> 7
                x ^= x << 17
                bytes.append(33 + UInt8(x % 94))
            }
        }
        return bytes
    }
}

enum JSONValue: Decodable, Equatable, Sendable {
    case int(Int), string(String), array([JSONValue]), bool(Bool), object([String: JSONValue]), null

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let value = try? container.decode(Int.self) {
            self = .int(value)
        } else if let value = try? container.decode(Bool.self) {
            self = .bool(value)
        } else if let value = try? container.decode(String.self) {
            self = .string(value)
        } else if let value = try? container.decode([JSONValue].self) {
            self = .array(value)
        } else {
            self = .object(try container.decode([String: JSONValue].self))
        }
    }

    var int: Int? { if case .int(let v) = self { v } else { nil } }
    var string: String? { if case .string(let v) = self { v } else { nil } }
    var strings: [String]? {
        if case .array(let values) = self { values.compactMap(\.string) } else { nil }
    }
}

enum Hex {
    static func decode(_ hex: String) -> [UInt8] {
        var result = [UInt8]()
        var iterator = hex.utf8.makeIterator()
        while let high = iterator.next(), let low = iterator.next() {
            result.append(UInt8(String(decoding: [high, low], as: UTF8.self), radix: 16)!)
        }
        return result
    }

    static func encode(_ bytes: some Sequence<UInt8>) -> String {
        bytes.map { String(format: "%02x", $0) }.joined()
    }
}

extension ByteBuffer {
    var bytes: [UInt8] { Array(self.readableBytesView) }
    var text: String { String(buffer: self) }
}
