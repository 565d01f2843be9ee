public import NIOCore

/// DataProxy's HTTP API, as its HTTP source serves it and InLong's Java SDK uses it: a `POST` (or `GET`) of
/// `application/x-www-form-urlencoded` fields to ``messagePath``; several records travel in one request as one
/// `body` field, joined by a one-byte separator (`\n` unless a `delimiter` field names another), with their count in
/// `cnt`. The proxy answers HTTP 200 with `{"code":"<DataProxyResultCode>","msg":"..."}` for every outcome it
/// judged, success included.
///
/// The real proxy decodes the form as UTF-8 text; this encoding carries any bytes, so records that are not UTF-8
/// arrive intact only at a server that decodes bytes (as `InLongDataProxyReceiver` does).
public enum InLongHTTPForm {
    /// The path records are posted to.
    public static let messagePath = "/dataproxy/message"
    /// The path that only answers success (a liveness probe).
    public static let heartbeatPath = "/dataproxy/heartbeat"
    /// The only content type the proxy reads a form body of.
    public static let contentType = "application/x-www-form-urlencoded"
    /// The content type of the proxy's answers.
    public static let answerContentType = "application/json;charset=utf-8"

    /// The form's field names.
    public enum Field {
        public static let group = "groupId"
        public static let stream = "streamId"
        /// Data time, milliseconds since the epoch; the receive time when absent or not a number.
        public static let dataTime = "dt"
        public static let body = "body"
        /// How many records `body` holds; 1 when absent or not a number.
        public static let count = "cnt"
        /// The one-character record separator, sent only when it is not `\n`.
        public static let delimiter = "delimiter"
        /// A JSONP callback name: the answer is wrapped as `callback(...)`.
        public static let callback = "callback"
    }

    /// Appends `name=value&` percent-encoded as `application/x-www-form-urlencoded` (space as `+`; letters,
    /// digits and `-._*` as themselves; every other byte as `%XX`), the way Java's form encoders write it.
    @inlinable
    public static func appendField(_ name: String, _ value: some Sequence<UInt8>, to buffer: inout ByteBuffer) {
        if buffer.readableBytes > 0 { buffer.writeInteger(UInt8(ascii: "&")) }
        Self.appendEncoded(name.utf8, to: &buffer)
        buffer.writeInteger(UInt8(ascii: "="))
        Self.appendEncoded(value, to: &buffer)
    }

    /// Appends `bytes` percent-encoded.
    @inlinable
    public static func appendEncoded(_ bytes: some Sequence<UInt8>, to buffer: inout ByteBuffer) {
        for byte in bytes {
            if Self.isUnreserved(byte) {
                buffer.writeInteger(byte)
            } else if byte == UInt8(ascii: " ") {
                buffer.writeInteger(UInt8(ascii: "+"))
            } else {
                buffer.writeInteger(UInt8(ascii: "%"))
                buffer.writeInteger(Self.hexDigits[Int(byte >> 4)])
                buffer.writeInteger(Self.hexDigits[Int(byte & 0x0F)])
            }
        }
    }

    /// Appends the readable bytes of `bytes` percent-encoded, in one pass over contiguous memory.
    public static func appendEncoded(_ bytes: ByteBuffer, to buffer: inout ByteBuffer) {
        bytes.withUnsafeReadableBytes { source in
            _ = buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: source.count * 3) { target in
                var written = 0
                for byte in source {
                    if Self.isUnreserved(byte) {
                        target[written] = byte
                        written += 1
                    } else if byte == UInt8(ascii: " ") {
                        target[written] = UInt8(ascii: "+")
                        written += 1
                    } else {
                        target[written] = UInt8(ascii: "%")
                        target[written + 1] = Self.hexDigits[Int(byte >> 4)]
                        target[written + 2] = Self.hexDigits[Int(byte & 0x0F)]
                        written += 3
                    }
                }
                return written
            }
        }
    }

    @usableFromInline
    static let hexDigits: [UInt8] = Array("0123456789ABCDEF".utf8)

    @inlinable
    static func isUnreserved(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            true
        case UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "*"):
            true
        default:
            false
        }
    }

    /// Decodes a query string or form body into its fields, in order; a name without `=` has an empty value.
    /// Throws on a `%` not followed by two hex digits.
    public static func decode(_ form: ByteBuffer) throws(InLongWireError) -> [(name: String, value: ByteBuffer)] {
        var fields: [(name: String, value: ByteBuffer)] = []
        let view = form.readableBytesView
        var start = view.startIndex
        while start <= view.endIndex {
            let end = view[start...].firstIndex(of: UInt8(ascii: "&")) ?? view.endIndex
            if end > start {
                let pair = view[start..<end]
                let equals = pair.firstIndex(of: UInt8(ascii: "="))
                let name = try Self.decodeComponent(pair[..<(equals ?? end)])
                var value = ByteBuffer()
                if let equals { value = try Self.decodeComponent(pair[(equals + 1)...]) }
                fields.append((String(decoding: name.readableBytesView, as: UTF8.self), value))
            }
            start = end + 1
        }
        return fields
    }

    /// Decodes one percent-encoded component (`+` is a space).
    public static func decodeComponent(_ bytes: some Collection<UInt8>) throws(InLongWireError) -> ByteBuffer {
        var output = ByteBuffer()
        output.reserveCapacity(bytes.count)
        var index = bytes.startIndex
        while index != bytes.endIndex {
            let byte = bytes[index]
            index = bytes.index(after: index)
            switch byte {
            case UInt8(ascii: "+"):
                output.writeInteger(UInt8(ascii: " "))
            case UInt8(ascii: "%"):
                guard index != bytes.endIndex, let high = hexValue(bytes[index]) else {
                    throw InLongWireError(.invalidAttributes, "a % is not followed by two hex digits")
                }
                index = bytes.index(after: index)
                guard index != bytes.endIndex, let low = hexValue(bytes[index]) else {
                    throw InLongWireError(.invalidAttributes, "a % is not followed by two hex digits")
                }
                index = bytes.index(after: index)
                output.writeInteger(high << 4 | low)
            default:
                output.writeInteger(byte)
            }
        }
        return output
    }

    /// The proxy's answer: `{"code":"0","msg":"Ok"}`, wrapped as `callback(...)` when a callback is named.
    /// The code is a JSON string, as the proxy writes it.
    public static func answer(_ code: DataProxyResultCode, message: String, callback: String? = nil) -> String {
        var escaped = ""
        for scalar in message.unicodeScalars {
            switch scalar {
            case "\"": escaped += "\\\""
            case "\\": escaped += "\\\\"
            case "\n": escaped += "\\n"
            case "\r": escaped += "\\r"
            case "\t": escaped += "\\t"
            case _ where scalar.value < 0x20: escaped += "\\u" + String(scalar.value, radix: 16).leftPadded(to: 4)
            default: escaped.unicodeScalars.append(scalar)
            }
        }
        let json = #"{"code":"\#(code.rawValue)","msg":"\#(escaped)"}"#
        guard let callback, !callback.allSatisfy(\.isWhitespace) else { return json }
        return "\(callback)(\(json))"
    }
}

private func hexValue(_ byte: UInt8) -> UInt8? {
    switch byte {
    case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
    case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
    case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
    default: nil
    }
}

extension String {
    fileprivate func leftPadded(to width: Int) -> String {
        String(repeating: "0", count: max(0, width - self.count)) + self
    }
}
