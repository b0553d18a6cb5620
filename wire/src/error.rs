//! Errors of the wire protocol: every way bytes from the network or the spool can be
//! wrong, each naming what was being read.

/// A frame, message or batch that cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The underlying stream failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The peer closed the stream cleanly between frames.
    #[error("connection closed by peer")]
    Closed,
    /// A frame's length field exceeds the receiver's limit.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge {
        /// Declared length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A frame's length field is 0 (no room for the message type).
    #[error("empty frame (length 0, no message type)")]
    EmptyFrame,
    /// A frame's type byte names no known message.
    #[error("unknown message type {0}")]
    UnknownMessageType(u8),
    /// Input ended before a field was complete.
    #[error("truncated {what}: need {need} bytes at offset {offset}, only {have} left")]
    Truncated {
        /// The field being read.
        what: &'static str,
        /// Offset of the field.
        offset: usize,
        /// Bytes the field needs.
        need: usize,
        /// Bytes left.
        have: usize,
    },
    /// Bytes left over after a complete message or batch.
    #[error("{extra} unexpected trailing bytes after {what}")]
    TrailingBytes {
        /// What was complete.
        what: &'static str,
        /// How many bytes were left.
        extra: usize,
    },
    /// A string field is not UTF-8.
    #[error("{what} at offset {offset} is not valid UTF-8")]
    BadUtf8 {
        /// The field.
        what: &'static str,
        /// Offset of the string bytes.
        offset: usize,
    },
    /// The peer speaks another protocol version.
    #[error("protocol version {got} is not supported (this side speaks {want})")]
    UnsupportedVersion {
        /// Version the peer sent.
        got: u16,
        /// Version this side speaks.
        want: u16,
    },
    /// The bytes do not start with the batch magic.
    #[error("not an encoded batch (bad magic {0:02x?})")]
    BadMagic([u8; 3]),
    /// The batch layout version is unknown.
    #[error("batch format {0} is not supported")]
    UnsupportedBatchFormat(u8),
    /// The batch compression codec is unknown.
    #[error("batch codec {0} is not supported")]
    UnsupportedCodec(u8),
    /// The compressed body is not a valid zstd frame.
    #[error("batch body does not decompress: {0}")]
    Decompress(String),
    /// The decompressed body length differs from the declared one.
    #[error("batch body is {actual} bytes, header declares {declared}")]
    BodyLength {
        /// Length in the header.
        declared: usize,
        /// Length after decompression (at most `declared + 1` is read).
        actual: usize,
    },
    /// The declared decompressed body length exceeds the limit.
    #[error("batch body of {declared} bytes exceeds the limit of {max} bytes")]
    BodyTooLarge {
        /// Length in the header.
        declared: usize,
        /// The limit.
        max: usize,
    },
    /// A batch holds more records than any probe sends.
    #[error("batch of {count} records refused: at most {max} per batch")]
    TooManyRecords {
        /// Records declared.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A count cannot fit in the bytes that follow it.
    #[error("{what} count {count} cannot fit in the {have} bytes left")]
    CountTooLarge {
        /// What is counted.
        what: &'static str,
        /// The count.
        count: usize,
        /// Bytes left.
        have: usize,
    },
    /// A field holds a value outside its domain.
    #[error("invalid {what}: {detail}")]
    Invalid {
        /// The field.
        what: &'static str,
        /// Why.
        detail: String,
    },
}

impl WireError {
    /// A short, stable label for metrics (`frame_too_large`, `truncated`, ...).
    pub fn reason(&self) -> &'static str {
        match self {
            WireError::Io(_) => "io",
            WireError::Closed => "closed",
            WireError::FrameTooLarge { .. } => "frame_too_large",
            WireError::EmptyFrame => "empty_frame",
            WireError::UnknownMessageType(_) => "unknown_message_type",
            WireError::Truncated { .. } => "truncated",
            WireError::TrailingBytes { .. } => "trailing_bytes",
            WireError::BadUtf8 { .. } => "bad_utf8",
            WireError::UnsupportedVersion { .. } => "version_mismatch",
            WireError::BadMagic(_) => "bad_magic",
            WireError::UnsupportedBatchFormat(_) => "batch_format",
            WireError::UnsupportedCodec(_) => "batch_codec",
            WireError::Decompress(_) => "decompress",
            WireError::BodyLength { .. } => "body_length",
            WireError::BodyTooLarge { .. } => "body_too_large",
            WireError::CountTooLarge { .. } => "count_too_large",
            WireError::TooManyRecords { .. } => "too_many_records",
            WireError::Invalid { .. } => "invalid_field",
        }
    }
}
