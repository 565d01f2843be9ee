// Builds and parses a DataProxy type-7 message with InLongWire alone.
// snippet.show
import InLongWire
import NIOCore

let message = try InLongBinaryMessage(
    records: [InLongRecord("hello inlong")],
    attributes: "groupId=test_group&streamId=test_stream",
    uniq: 1,
    dataTime: 1_700_000_000,  // seconds since the epoch
    compressionThreshold: 512  // snappy above 512 bytes, as the C++ SDK does
)
var frame = ByteBuffer()
try message.encode(into: &frame)

// ... and on the other side:
guard case .binary(let received) = try InLongRequest(frame: frame) else { fatalError("not a type-7 message") }
for record in try received.records() { print(String(buffer: record.data)) }
// snippet.end
