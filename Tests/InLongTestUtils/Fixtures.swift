public import Foundation
public import NIOCore

/// Loads the golden vectors and captured SDK frames copied from the shared spec (`Fixtures/`).
public enum Fixtures {
    public static let directory = Bundle.module.url(forResource: "Fixtures", withExtension: nil)!

    public struct Vector: Decodable, Sendable {
        public var id: String
        public var direction: String
        public var hex: String
        public var inputs: [String: JSONValue]?
        public var fields: [Field]?

        public var bytes: [UInt8] { Hex.decode(self.hex) }
        public var buffer: ByteBuffer { ByteBuffer(bytes: self.bytes) }
        public func field(_ prefix: String) -> JSONValue? { self.fields?.first { $0.name.hasPrefix(prefix) }?.value }
    }

    public struct Field: Decodable, Sendable {
        public var off: Int
        public var len: Int
        public var name: String
        public var value: JSONValue
    }

    public struct VectorFile: Decodable, Sendable { public var vectors: [Vector] }

    public static let vectors: [Vector] = {
        let data = try! Data(contentsOf: directory.appendingPathComponent("vectors.json"))
        return try! JSONDecoder().decode(VectorFile.self, from: data).vectors
    }()

    public static func vector(_ id: String) -> Vector { vectors.first { $0.id == id }! }

    public struct CaptureIndex: Decodable {
        public var content_generator: Generator?
        public var files: [Capture]
    }

    public struct Generator: Decodable { public var rule: String }

    public struct Capture: Decodable {
        public var file: String
        public var bytes: Int
        public var scenario: String
        public var receiver_parsed: Parsed
        public var records_in_frame: RecordsInFrame?
        public var messages_sent_in_run: Sent
        public var ack_sent_hex: String?
        public var response_sent_hex: String?
    }

    public struct Parsed: Decodable {
        public var type: Int
        public var raw_type: Int?
        public var ext_field: Int?
        public var cnt: Int?
        public var uniq: UInt32?
        public var body_len: Int?
        public var body_uncompressed_len: Int?
        public var attr: String?
        public var data_time: UInt32?
        public var version: Int?
        public var records: Int?
    }

    public struct RecordsInFrame: Decodable { public var message_indices: [Int] }

    public struct Sent: Decodable {
        public var size: Int
        public var content: String
    }

    public static func captures(_ sdk: String) -> [Capture] {
        let data = try! Data(contentsOf: directory.appendingPathComponent("\(sdk)/index.json"))
        return try! JSONDecoder().decode(CaptureIndex.self, from: data).files
    }

    public static func frame(_ sdk: String, _ file: String) -> ByteBuffer {
        ByteBuffer(bytes: try! Data(contentsOf: directory.appendingPathComponent("\(sdk)/\(file)")))
    }

    /// The captures' content generator (index.json `content_generator.rule`).
    public static func generatedMessage(index: Int, size: Int, content: String) -> [UInt8] {
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

public enum JSONValue: Decodable, Equatable, Sendable {
    case int(Int), string(String), array([JSONValue]), bool(Bool), object([String: JSONValue]), null

    public init(from decoder: any Decoder) throws {
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

    public var int: Int? { if case .int(let v) = self { v } else { nil } }
    public var string: String? { if case .string(let v) = self { v } else { nil } }
    public var strings: [String]? {
        if case .array(let values) = self { values.compactMap(\.string) } else { nil }
    }
}

public enum Hex {
    public static func decode(_ hex: String) -> [UInt8] {
        var result = [UInt8]()
        var iterator = hex.utf8.makeIterator()
        while let high = iterator.next(), let low = iterator.next() {
            result.append(UInt8(String(decoding: [high, low], as: UTF8.self), radix: 16)!)
        }
        return result
    }

    public static func encode(_ bytes: some Sequence<UInt8>) -> String {
        bytes.map { String(format: "%02x", $0) }.joined()
    }
}

extension ByteBuffer {
    public var bytes: [UInt8] { Array(self.readableBytesView) }
    public var text: String { String(buffer: self) }
}
