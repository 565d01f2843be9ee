public import NIOCore

/// The server's ack of a type-7 request (wire-protocol.md §5.1).
///
/// ```
/// totalLen(4)=9+A type(1)=7 uniq(4) attrLen(2) attr magic(2)
/// ```
/// The attributes are `dpIp=<ip>[&errCode=<n>[&errMsg=<text>]]&<request attributes>`; no `errCode` means success.
public struct InLongBinaryAck: Sendable, Hashable {
    /// The `uniq` of the request this acknowledges.
    public var uniq: UInt32
    /// The attribute string.
    public var attributes: String

    public init(uniq: UInt32, attributes: String) {
        self.uniq = uniq
        self.attributes = attributes
    }

    /// The size of the encoded frame, length prefix included.
    public var frameLength: Int { 13 + self.attributes.utf8.count }

    /// Appends the frame.
    public func encode(into buffer: inout ByteBuffer) throws(InLongWireError) {
        guard self.attributes.utf8.count <= Int(UInt16.max) else {
            throw InLongWireError(.fieldOutOfRange, "ack attributes exceed 65535 bytes")
        }
        buffer.writeMultipleIntegers(
            UInt32(self.frameLength - 4),
            InLongMessageType.binaryMultiBody.rawValue,
            self.uniq,
            UInt16(self.attributes.utf8.count)
        )
        buffer.writeString(self.attributes)
        buffer.writeInteger(InLongWireConstants.magic)
    }

    /// Decodes a whole frame, requiring exact lengths and the magic.
    public init(frame: ByteBuffer) throws(InLongWireError) {
        let base = frame.readerIndex
        let size = try frame.validatedFrameSize()
        guard size >= 13,
            let (typeByte, uniq, attributeLength) = frame.getMultipleIntegers(
                at: base + 4,
                as: (UInt8, UInt32, UInt16).self
            ), typeByte & InLongMessageType.typeMask == InLongMessageType.binaryMultiBody.rawValue
        else {
            throw InLongWireError(.truncatedFrame, "type-7 ack of \(size) bytes is shorter than 13")
        }
        guard size == 13 + Int(attributeLength) else {
            throw InLongWireError(
                .inconsistentLengths,
                "ack of \(size) bytes with attrLen \(attributeLength)",
                typeByte: typeByte,
                uniq: uniq
            )
        }
        guard frame.getInteger(at: base + 11 + Int(attributeLength), as: UInt16.self) == InLongWireConstants.magic else {
            throw InLongWireError(.badMagic, "type-7 ack without 0xEE01", typeByte: typeByte, uniq: uniq)
        }
        self.uniq = uniq
        self.attributes = frame.getString(at: base + 11, length: Int(attributeLength))!
    }

    /// The outcome the ack reports, read the tolerant way: the first `errCode=` entry, absent = success.
    public var result: InLongAckResult { InLongAckResult(attributes: self.attributes) }
}

/// The outcome an ack's attributes report: error code, message and the proxy's address.
public struct InLongAckResult: Sendable, Hashable {
    /// The `errCode`, or ``DataProxyResultCode/success`` when there is none. A value that is not a number is
    /// reported as ``DataProxyResultCode/unknownError``.
    public var errorCode: DataProxyResultCode
    /// The `errMsg`, verbatim (it may contain `=`, `(` and `,`).
    public var errorMessage: String?
    /// The `dpIp` the proxy reported.
    public var proxyIP: String?

    public init(attributes: String) {
        // Read as ``InLongAttributes/init(parsingLeniently:)`` reads (first entry of a key wins), but over the
        // bytes, keeping only the three values: an ack is parsed per batch on the client's hot path.
        var code: String?
        var message: String?
        var proxyIP: String?
        var attributes = attributes
        attributes.withUTF8 { bytes in
            var start = 0
            while start < bytes.count {
                let end = bytes[start...].firstIndex(of: UInt8(ascii: "&")) ?? bytes.count
                defer { start = end + 1 }
                guard let equals = bytes[start..<end].firstIndex(of: UInt8(ascii: "=")) else { continue }
                let key = bytes[start..<equals]
                func value() -> String { String(decoding: UnsafeBufferPointer(rebasing: bytes[(equals + 1)..<end]), as: UTF8.self) }
                if code == nil, key.elementsEqual("errCode".utf8) {
                    code = value()
                } else if message == nil, key.elementsEqual("errMsg".utf8) {
                    message = value()
                } else if proxyIP == nil, key.elementsEqual("dpIp".utf8) {
                    proxyIP = value()
                }
            }
        }
        if let code {
            self.errorCode = Int(code.trimmingPrefix(" ")).map(DataProxyResultCode.init(rawValue:)) ?? .unknownError
        } else {
            self.errorCode = .success
        }
        self.errorMessage = message
        self.proxyIP = proxyIP
    }

    /// Whether the request was accepted (no `errCode`, `errCode=0`, or a duplicate the server already stored).
    public var isDelivered: Bool {
        self.errorCode.disposition == .success || self.errorCode.disposition == .delivered
    }
}
