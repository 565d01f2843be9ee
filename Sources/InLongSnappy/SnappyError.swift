/// A compressed block that cannot be decompressed.
public struct SnappyError: Error, Hashable, Sendable, CustomStringConvertible {
    /// What was wrong with the input.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: Hashable, Sendable {
            case truncatedPreamble, invalidPreamble, lengthLimitExceeded, outputBufferTooSmall
            case truncatedElement, invalidOffset, outputOverrun, lengthMismatch, trailingBytes
        }

        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// The input ended inside the uncompressed-length varint.
        public static let truncatedPreamble = Code(.truncatedPreamble)
        /// The uncompressed-length varint is longer than 5 bytes or above 4 GiB.
        public static let invalidPreamble = Code(.invalidPreamble)
        /// The declared uncompressed length is above the caller's limit.
        public static let lengthLimitExceeded = Code(.lengthLimitExceeded)
        /// The caller's output buffer is smaller than the declared length.
        public static let outputBufferTooSmall = Code(.outputBufferTooSmall)
        /// An element's tag promises bytes the input does not have.
        public static let truncatedElement = Code(.truncatedElement)
        /// A copy refers to zero or to bytes before the start of the output.
        public static let invalidOffset = Code(.invalidOffset)
        /// An element would write past the declared length.
        public static let outputOverrun = Code(.outputOverrun)
        /// The elements produce fewer bytes than the declared length.
        public static let lengthMismatch = Code(.lengthMismatch)
        /// Bytes follow a block whose declared length is already reached.
        public static let trailingBytes = Code(.trailingBytes)

        public var description: String {
            switch self.base {
            case .truncatedPreamble: "truncated preamble"
            case .invalidPreamble: "invalid preamble"
            case .lengthLimitExceeded: "declared length above the limit"
            case .outputBufferTooSmall: "output buffer too small"
            case .truncatedElement: "truncated element"
            case .invalidOffset: "invalid copy offset"
            case .outputOverrun: "element overruns the declared length"
            case .lengthMismatch: "decompressed length differs from the declared length"
            case .trailingBytes: "trailing bytes"
            }
        }
    }

    /// What was wrong.
    public var code: Code
    /// The input offset at which the problem was found.
    public var offset: Int

    public init(_ code: Code, offset: Int) {
        self.code = code
        self.offset = offset
    }

    public var description: String { "snappy: \(self.code) at input offset \(self.offset)" }
}
