//! Framing: `length u32 BE | type u8 | payload`, where `length = 1 + payload.len()`.
//! Blocking ([`std::io`]) and async (tokio) readers and writers.

use std::io::{Read, Write};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{Message, MessageType, WireError};

/// A frame as read: its type and raw payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Message type.
    pub ty: MessageType,
    /// Payload bytes (after the type byte).
    pub payload: Vec<u8>,
}

impl Frame {
    /// Decodes the payload ([`Message::decode`]).
    pub fn message(&self) -> Result<Message, WireError> {
        Message::decode(self.ty, &self.payload)
    }

    /// Bytes the frame took on the wire, header included.
    pub fn wire_len(&self) -> usize {
        5 + self.payload.len()
    }
}

fn header(ty: MessageType, payload_len: usize) -> Result<[u8; 5], WireError> {
    let len = payload_len
        .checked_add(1)
        .and_then(|l| u32::try_from(l).ok())
        .ok_or(WireError::FrameTooLarge {
            len: payload_len.saturating_add(1),
            max: u32::MAX as usize,
        })?;
    let mut h = [0u8; 5];
    h[..4].copy_from_slice(&len.to_be_bytes());
    h[4] = ty as u8;
    Ok(h)
}

/// A whole frame (header and payload) for `msg`, ready to write in one go.
pub fn encode_frame(msg: &Message) -> Vec<u8> {
    let mut v = vec![0u8; 5];
    msg.encode_payload(&mut v);
    let len = u32::try_from(v.len() - 4).unwrap_or(u32::MAX);
    v[..4].copy_from_slice(&len.to_be_bytes());
    v[4] = msg.message_type() as u8;
    v
}

/// Writes one frame.
pub fn write_frame<W: Write + ?Sized>(
    w: &mut W,
    ty: MessageType,
    payload: &[u8],
) -> Result<(), WireError> {
    w.write_all(&header(ty, payload.len())?)?;
    w.write_all(payload)?;
    Ok(())
}

/// Writes one message as a frame.
pub fn write_message<W: Write + ?Sized>(w: &mut W, msg: &Message) -> Result<(), WireError> {
    w.write_all(&encode_frame(msg))?;
    Ok(())
}

/// Validates a frame header; returns the type and the payload length.
fn parse_header(h: [u8; 5], max: usize) -> Result<(MessageType, usize), WireError> {
    let len = u32::from_be_bytes([h[0], h[1], h[2], h[3]]) as usize;
    if len == 0 {
        return Err(WireError::EmptyFrame);
    }
    if len > max {
        return Err(WireError::FrameTooLarge { len, max });
    }
    Ok((MessageType::from_u8(h[4])?, len - 1))
}

fn eof(what: &'static str, offset: usize, need: usize, have: usize) -> WireError {
    WireError::Truncated {
        what,
        offset,
        need,
        have,
    }
}

/// Bytes one read of the 5-byte header added (0 when interrupted); a close before any
/// byte is [`WireError::Closed`], a close inside the header is a truncated frame.
fn header_read(res: std::io::Result<usize>, got: usize) -> Result<usize, WireError> {
    match res {
        Ok(0) if got == 0 => Err(WireError::Closed),
        Ok(0) => Err(eof("frame header", 0, 5, got)),
        Ok(n) => Ok(n),
        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Ok(0),
        Err(e) => Err(e.into()),
    }
}

/// The frame, once its whole announced payload (`n` bytes) was read.
fn frame(ty: MessageType, n: usize, payload: Vec<u8>) -> Result<Frame, WireError> {
    if payload.len() != n {
        return Err(eof("frame payload", 5, n, payload.len()));
    }
    Ok(Frame { ty, payload })
}

/// Reads one frame whose length field is at most `max`. A clean end of stream before
/// the first header byte gives [`WireError::Closed`]; an oversized or empty length or an
/// unknown type is refused before the payload is read. The payload buffer grows with the
/// bytes that actually arrive, so a lying length field cannot make it allocate `max`.
pub fn read_frame<R: Read + ?Sized>(r: &mut R, max: usize) -> Result<Frame, WireError> {
    let mut h = [0u8; 5];
    let mut got = 0;
    while got < h.len() {
        got += header_read(r.read(&mut h[got..]), got)?;
    }
    let (ty, n) = parse_header(h, max)?;
    let mut payload = Vec::new();
    r.take(n as u64).read_to_end(&mut payload)?;
    frame(ty, n, payload)
}

/// Reads one frame and decodes its message.
pub fn read_message<R: Read + ?Sized>(r: &mut R, max: usize) -> Result<Message, WireError> {
    read_frame(r, max)?.message()
}

/// Async [`write_frame`]. Does not flush.
pub async fn write_frame_async<W: AsyncWrite + Unpin + ?Sized>(
    w: &mut W,
    ty: MessageType,
    payload: &[u8],
) -> Result<(), WireError> {
    w.write_all(&header(ty, payload.len())?).await?;
    w.write_all(payload).await?;
    Ok(())
}

/// Async [`write_message`]. Does not flush.
pub async fn write_message_async<W: AsyncWrite + Unpin + ?Sized>(
    w: &mut W,
    msg: &Message,
) -> Result<(), WireError> {
    w.write_all(&encode_frame(msg)).await?;
    Ok(())
}

/// Async [`read_frame`]. Not cancel-safe: dropping it mid-frame loses the stream's
/// framing, so cancel only when the connection is being abandoned.
pub async fn read_frame_async<R: AsyncRead + Unpin + ?Sized>(
    r: &mut R,
    max: usize,
) -> Result<Frame, WireError> {
    let start = read_frame_start_async(r, max).await?;
    read_frame_rest_async(r, start).await
}

/// The start of a frame: its type, payload length, and the first bytes of its payload
/// (see [`read_frame_start_async`]).
#[derive(Debug)]
pub struct FrameStart {
    /// Message type.
    pub ty: MessageType,
    /// Payload length announced.
    pub len: usize,
    /// The payload's first bytes read so far.
    pub head: Vec<u8>,
}

/// Reads a frame's header (refusing an empty or oversized length or an unknown type),
/// so the caller can decide from the type and the length whether (and with what memory)
/// to read the payload, with [`read_frame_head_async`] (its first bytes) and
/// [`read_frame_rest_async`].
pub async fn read_frame_start_async<R: AsyncRead + Unpin + ?Sized>(
    r: &mut R,
    max: usize,
) -> Result<FrameStart, WireError> {
    let mut h = [0u8; 5];
    let mut got = 0;
    while got < h.len() {
        got += header_read(r.read(&mut h[got..]).await, got)?;
    }
    let (ty, len) = parse_header(h, max)?;
    Ok(FrameStart {
        ty,
        len,
        head: Vec::new(),
    })
}

/// Reads the first `peek` bytes of the payload of `start` (all of it if shorter).
pub async fn read_frame_head_async<R: AsyncRead + Unpin + ?Sized>(
    r: &mut R,
    start: &mut FrameStart,
    peek: usize,
) -> Result<(), WireError> {
    let want = start.len.min(peek);
    let more = want.saturating_sub(start.head.len());
    (&mut *r)
        .take(more as u64)
        .read_to_end(&mut start.head)
        .await?;
    if start.head.len() < want {
        return Err(eof("frame payload", 5, start.len, start.head.len()));
    }
    Ok(())
}

/// Reads the rest of the frame `start` began.
pub async fn read_frame_rest_async<R: AsyncRead + Unpin + ?Sized>(
    r: &mut R,
    start: FrameStart,
) -> Result<Frame, WireError> {
    let FrameStart { ty, len, mut head } = start;
    let rest = len.saturating_sub(head.len());
    (&mut *r).take(rest as u64).read_to_end(&mut head).await?;
    frame(ty, len, head)
}

/// Async [`read_message`].
pub async fn read_message_async<R: AsyncRead + Unpin + ?Sized>(
    r: &mut R,
    max: usize,
) -> Result<Message, WireError> {
    read_frame_async(r, max).await?.message()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Ack, PROTOCOL_VERSION};

    #[test]
    fn frames_round_trip_sync_and_async() {
        let msgs = [
            Message::Ack(Ack {
                seq: 9,
                duplicate: false,
            }),
            Message::Batch(vec![7; 1000]),
            Message::Error {
                reason: "bye".into(),
            },
        ];
        let mut buf = Vec::new();
        for m in &msgs {
            write_message(&mut buf, m).unwrap();
        }
        let mut r = &buf[..];
        for m in &msgs {
            assert_eq!(&read_message(&mut r, 4096).unwrap(), m);
        }
        assert!(matches!(read_frame(&mut r, 4096), Err(WireError::Closed)));

        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut out = Vec::new();
            for m in &msgs {
                write_message_async(&mut out, m).await.unwrap();
            }
            assert_eq!(out, buf);
            let mut r = &buf[..];
            for m in &msgs {
                assert_eq!(&read_message_async(&mut r, 4096).await.unwrap(), m);
            }
            assert!(matches!(
                read_frame_async(&mut r, 4096).await,
                Err(WireError::Closed)
            ));
        });
    }

    #[test]
    fn bad_headers_are_refused_before_the_payload() {
        // Oversized: refused from the header alone (no payload follows at all).
        let h = [0, 0x10, 0, 1, MessageType::Batch as u8];
        assert!(matches!(
            read_frame(&mut &h[..], 1 << 20),
            Err(WireError::FrameTooLarge {
                len: 0x0010_0001,
                max: 0x0010_0000
            })
        ));
        assert!(matches!(
            read_frame(&mut &[0u8, 0, 0, 0, 1][..], 100),
            Err(WireError::EmptyFrame)
        ));
        assert!(matches!(
            read_frame(&mut &[0u8, 0, 0, 1, 99][..], 100),
            Err(WireError::UnknownMessageType(99))
        ));
        assert!(matches!(
            read_frame(&mut &[0u8, 0][..], 100),
            Err(WireError::Truncated {
                what: "frame header",
                ..
            })
        ));
        // A length promising more than arrives.
        assert!(matches!(
            read_frame(&mut &[0u8, 0, 0, 9, 4, 1, 2][..], 100),
            Err(WireError::Truncated {
                what: "frame payload",
                need: 8,
                have: 2,
                ..
            })
        ));
        let mut hello = Vec::new();
        write_message(
            &mut hello,
            &Message::Hello(crate::Hello {
                version: PROTOCOL_VERSION,
                probe_id: "p".into(),
                epoch: 1,
                software: "s".into(),
                capabilities: 0,
            }),
        )
        .unwrap();
        assert!(read_message(&mut &hello[..], hello.len() - 4).is_ok());
        assert!(matches!(
            read_message(&mut &hello[..], hello.len() - 5),
            Err(WireError::FrameTooLarge { .. })
        ));
    }
}
