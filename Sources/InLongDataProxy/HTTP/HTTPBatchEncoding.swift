import Foundation
import InLongTransport
import InLongWire
import NIOCore

/// A batch as DataProxy's HTTP API takes it, and the API's answer as a delivery outcome: the HTTP transport's wire,
/// with no I/O. The batch is the one the TCP path would send; only its encoding differs.
enum HTTPBatchEncoding {
    /// Why a batch cannot travel over HTTP.
    struct Unrepresentable: Error, CustomStringConvertible {
        var description: String
    }

    /// The form body of `batch`: `groupId`, `streamId`, `dt` (milliseconds), `body` (the records joined by `\n`)
    /// and `cnt`, in the Java SDK's order. Records with their own attributes, or holding a `\n`, have no HTTP
    /// form: the API has no per-record attributes, and `\n` separates its records.
    static func form(of batch: SealedBatch) throws(Unrepresentable) -> ByteBuffer {
        guard !batch.key.perRecordAttributes else {
            throw Unrepresentable(description: "records with their own attributes cannot be sent over HTTP")
        }
        var block = batch.block
        // Percent-encoding makes most bytes 1 or 3: sized for the common case, grown when needed.
        var form = ByteBufferAllocator().buffer(capacity: block.readableBytes + block.readableBytes / 4 + 256)
        InLongHTTPForm.appendField(InLongHTTPForm.Field.group, batch.key.group.utf8, to: &form)
        InLongHTTPForm.appendField(InLongHTTPForm.Field.stream, batch.key.stream.utf8, to: &form)
        InLongHTTPForm.appendField(InLongHTTPForm.Field.dataTime, String(Int64(batch.dataTime) * 1000).utf8, to: &form)
        InLongHTTPForm.appendField(InLongHTTPForm.Field.body, EmptyCollection(), to: &form)
        var first = true
        while let length = block.readInteger(as: UInt32.self) {
            guard let record = block.readSlice(length: Int(length)) else {
                throw Unrepresentable(description: "the record block is truncated")
            }
            guard !record.readableBytesView.contains(UInt8(ascii: "\n")) else {
                throw Unrepresentable(description: "a record holds a newline, which separates records over HTTP")
            }
            if !first { form.writeStaticString("%0A") }
            first = false
            InLongHTTPForm.appendEncoded(record, to: &form)
        }
        InLongHTTPForm.appendField(InLongHTTPForm.Field.count, String(batch.recordCount).utf8, to: &form)
        return form
    }

    /// What an answer says of the batch: HTTP 200 with code 0 is an ack; another code is the proxy's refusal (with
    /// the TCP path's dispositions); any other status or body says the proxy did not judge it.
    static func outcome(status: Int, body: ByteBuffer, proxy: Endpoint) -> DeliveryOutcome {
        guard status == 200 else {
            return .unexpectedReply("HTTP \(status) from \(proxy)")
        }
        guard let answer = Self.answer(body) else {
            return .unexpectedReply("HTTP 200 from \(proxy) with an answer that is not DataProxy's JSON")
        }
        guard answer.code != .success else { return .acked(proxyIP: proxy.host) }
        return .rejected(answer.code, message: answer.message)
    }

    /// The `code` and `msg` of `{"code":"0","msg":"Ok"}` (the code as a string, as the proxy writes it, or a
    /// number), or `nil`.
    static func answer(_ body: ByteBuffer) -> (code: DataProxyResultCode, message: String?)? {
        guard let object = try? JSONSerialization.jsonObject(with: Data(body.readableBytesView)) as? [String: Any] else {
            return nil
        }
        let code: Int?
        switch object["code"] {
        case let text as String: code = Int(text.trimmingCharacters(in: .whitespaces))
        case let number as NSNumber: code = number.intValue
        default: code = nil
        }
        guard let code else { return nil }
        return (DataProxyResultCode(rawValue: code), object["msg"] as? String)
    }
}
