/// A protobuf wire-format reader written for the tests from the encoding specification alone, so that frames are
/// checked by something other than the generated code: varints, length-delimited fields, nothing else (the audit
/// protocol has no fixed-width or group fields).
struct ProtobufWireReader {
    enum Value: Equatable {
        case varint(UInt64)
        case bytes([UInt8])
    }

    struct Malformed: Error {}

    /// Every field of a message, in order, as (field number, value).
    static func fields(_ bytes: [UInt8]) throws -> [(Int, Value)] {
        var fields: [(Int, Value)] = []
        var index = 0
        func varint() throws -> UInt64 {
            var value: UInt64 = 0
            var shift: UInt64 = 0
            while true {
                guard index < bytes.count, shift < 64 else { throw Malformed() }
                let byte = bytes[index]
                index += 1
                value |= UInt64(byte & 0x7F) << shift
                if byte & 0x80 == 0 { return value }
                shift += 7
            }
        }
        while index < bytes.count {
            let key = try varint()
            let number = Int(key >> 3)
            switch key & 7 {
            case 0:
                fields.append((number, .varint(try varint())))
            case 2:
                let length = Int(try varint())
                guard length >= 0, index + length <= bytes.count else { throw Malformed() }
                fields.append((number, .bytes(Array(bytes[index..<index + length]))))
                index += length
            default:
                throw Malformed()
            }
        }
        return fields
    }

    /// A message read as a dictionary of its last value per field (repeated fields: use ``all(_:in:)``).
    static func message(_ bytes: [UInt8]) throws -> [Int: Value] {
        var message: [Int: Value] = [:]
        for (number, value) in try self.fields(bytes) { message[number] = value }
        return message
    }

    static func all(_ number: Int, in bytes: [UInt8]) throws -> [Value] {
        try self.fields(bytes).filter { $0.0 == number }.map(\.1)
    }

    /// A frame's body: the 4-byte big-endian length checked against the rest.
    static func frameBody(_ frame: [UInt8]) throws -> [UInt8] {
        guard frame.count >= 4 else { throw Malformed() }
        let length = frame[0..<4].reduce(0) { $0 << 8 | Int($1) }
        guard length == frame.count - 4 else { throw Malformed() }
        return Array(frame[4...])
    }
}

extension ProtobufWireReader.Value {
    var number: UInt64? { if case .varint(let value) = self { value } else { nil } }
    var bytes: [UInt8]? { if case .bytes(let value) = self { value } else { nil } }
    var string: String? { self.bytes.map { String(decoding: $0, as: UTF8.self) } }
}

extension Optional where Wrapped == ProtobufWireReader.Value {
    /// A proto3 field absent from the wire holds its default.
    var number: UInt64 { self?.number ?? 0 }
    var string: String { self?.string ?? "" }
    var bytes: [UInt8] { self?.bytes ?? [] }
}

func hexBytes(_ hex: String) -> [UInt8] {
    var bytes: [UInt8] = []
    var index = hex.startIndex
    while index < hex.endIndex {
        let next = hex.index(index, offsetBy: 2)
        bytes.append(UInt8(hex[index..<next], radix: 16)!)
        index = next
    }
    return bytes
}
