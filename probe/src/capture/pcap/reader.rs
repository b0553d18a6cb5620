//! Streaming reader for pcap and pcapng capture files.
//!
//! The `pcap-file` crate parses the global pcap header, the pcapng section header and
//! interface description blocks (and tracks sections and interfaces); packet records are
//! decoded here, leniently where real-world files are sloppy (snap length exceeded,
//! undecodable per-packet options) and strictly where the framing itself is broken. The
//! reader owns its buffer, so it knows the byte offset of every record and can say exactly
//! where and how a file is truncated or corrupt.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};

use pcap_file::pcap::PcapHeader;
use pcap_file::pcapng::PcapNgParser;
use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;
use pcap_file::{Endianness, PcapError, TsResolution};

/// Largest packet record accepted (Wireshark's largest per-link-type maximum); anything
/// bigger is treated as a corrupt record header.
pub const MAX_RECORD: usize = 128 << 20;
/// Largest record accepted in a classic pcap file whose snap length is smaller
/// (Wireshark's standard maximum packet size).
const PCAP_STD_MAX: usize = 262_144;

const INITIAL_BUF: usize = 1 << 20;

const PCAPNG_SHB: u32 = 0x0A0D_0D0A;
const PCAPNG_IDB: u32 = 0x0000_0001;
const PCAPNG_PB: u32 = 0x0000_0002;
const PCAPNG_SPB: u32 = 0x0000_0003;
const PCAPNG_EPB: u32 = 0x0000_0006;

/// Container format of a capture file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Classic pcap, microsecond timestamps.
    Pcap,
    /// Classic pcap, nanosecond timestamps (magic `a1b23c4d`).
    PcapNs,
    /// pcapng (any number of sections and interfaces).
    PcapNg,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Pcap => "pcap",
            Format::PcapNs => "pcap-ns",
            Format::PcapNg => "pcapng",
        })
    }
}

/// Why a capture file could not be read (completely).
#[derive(Debug, thiserror::Error)]
pub enum FileErrorKind {
    /// The file could not be opened.
    #[error("cannot open: {0}")]
    Open(io::Error),
    /// Reading failed (I/O error).
    #[error("read error at byte {offset}: {error}")]
    Read {
        /// Byte offset of the record being read.
        offset: u64,
        /// The I/O error.
        error: io::Error,
    },
    /// The file is not a pcap or pcapng file.
    #[error("not a pcap or pcapng file ({0})")]
    NotCapture(String),
    /// The file ends inside a header or record.
    #[error("truncated: {what} at byte {offset} ({detail}); {packets} complete packets read")]
    Truncated {
        /// What was cut off, e.g. "file ends inside packet record 12".
        what: String,
        /// Byte offset of the incomplete header or record.
        offset: u64,
        /// How much was missing.
        detail: String,
        /// Complete packet records read before it.
        packets: u64,
    },
    /// A header or record is invalid.
    #[error("corrupt {what} at byte {offset}: {detail}; {packets} complete packets read")]
    Corrupt {
        /// Which structure is corrupt, e.g. "packet record 12".
        what: String,
        /// Byte offset of the corrupt header or record.
        offset: u64,
        /// What is wrong with it.
        detail: String,
        /// Complete packet records read before it.
        packets: u64,
    },
}

/// One packet read from a capture file.
#[derive(Clone, Copy, Debug)]
pub struct Frame<'a> {
    /// Capture timestamp, Unix-epoch nanoseconds; `None` for a pcapng simple packet
    /// block, which carries none.
    pub ts_ns: Option<u64>,
    /// pcap LINKTYPE_* of the interface it was captured on.
    pub linktype: u32,
    /// Length of the frame on the wire (may exceed `data.len()` when the capture was
    /// snapped).
    pub orig_len: u32,
    /// The captured bytes, starting with the link-layer header.
    pub data: &'a [u8],
}

#[derive(Clone, Copy, Debug)]
struct Iface {
    linktype: u32,
    snaplen: u32,
    /// Timestamp units per second (if_tsresol).
    units_per_sec: u128,
    /// Seconds added to every timestamp (if_tsoffset).
    offset_s: i64,
}

impl Iface {
    fn ts_ns(&self, units: u64) -> u64 {
        let ns = (units as u128 * 1_000_000_000 / self.units_per_sec) as i128
            + self.offset_s as i128 * 1_000_000_000;
        ns.clamp(0, u64::MAX as i128) as u64
    }
}

enum State {
    Pcap {
        header: PcapHeader,
        linktype: u32,
        max_record: usize,
    },
    PcapNg {
        parser: Box<PcapNgParser>,
        ifaces: Vec<Iface>,
    },
}

/// What the current record turned out to be.
enum Next {
    /// A packet: its bytes are `buf[start..end]`.
    Frame {
        ts_ns: Option<u64>,
        linktype: u32,
        orig_len: u32,
        start: usize,
        end: usize,
    },
    /// A non-packet block (pcapng); skip it.
    Skip,
}

/// Reads packets from one pcap or pcapng file, record by record.
pub struct CaptureReader<R: Read = File> {
    src: R,
    buf: Vec<u8>,
    pos: usize,
    len: usize,
    eof: bool,
    /// File offset of `buf[pos]`.
    offset: u64,
    /// Bytes to consume before reading the next record.
    pending: usize,
    packets: u64,
    format: Format,
    state: State,
}

impl CaptureReader<File> {
    /// Opens a file and reads its file header.
    pub fn open(path: &std::path::Path) -> Result<Self, FileErrorKind> {
        let f = File::open(path).map_err(FileErrorKind::Open)?;
        if f.metadata().map(|m| m.is_dir()).unwrap_or(false) {
            return Err(FileErrorKind::Open(io::Error::other("is a directory")));
        }
        Self::new(f)
    }
}

fn u32_at(b: &[u8], off: usize, e: Endianness) -> u32 {
    let a = [b[off], b[off + 1], b[off + 2], b[off + 3]];
    match e {
        Endianness::Big => u32::from_be_bytes(a),
        Endianness::Little => u32::from_le_bytes(a),
    }
}

fn u16_at(b: &[u8], off: usize, e: Endianness) -> u16 {
    let a = [b[off], b[off + 1]];
    match e {
        Endianness::Big => u16::from_be_bytes(a),
        Endianness::Little => u16::from_le_bytes(a),
    }
}

fn pcap_err(e: PcapError) -> String {
    match e {
        PcapError::IncompleteBuffer => "incomplete".to_string(),
        e => e.to_string(),
    }
}

impl<R: Read> CaptureReader<R> {
    /// Wraps a reader positioned at the start of a capture and reads the file header
    /// (pcap global header, or the first pcapng section header).
    pub fn new(src: R) -> Result<Self, FileErrorKind> {
        let mut r = CaptureReader {
            src,
            buf: vec![0; INITIAL_BUF],
            pos: 0,
            len: 0,
            eof: false,
            offset: 0,
            pending: 0,
            packets: 0,
            format: Format::Pcap,
            state: State::Pcap {
                header: PcapHeader::default(),
                linktype: 1,
                max_record: 0,
            },
        };
        r.read_file_header()?;
        Ok(r)
    }

    /// The container format.
    pub fn format(&self) -> Format {
        self.format
    }

    /// Bytes of the file consumed so far.
    pub fn position(&self) -> u64 {
        self.offset + self.pending as u64
    }

    /// Complete packet records returned so far.
    pub fn packets(&self) -> u64 {
        self.packets
    }

    fn avail(&self) -> usize {
        self.len - self.pos
    }

    /// Makes at least `n` bytes available at `buf[pos..]`; false if the file ends first.
    fn ensure(&mut self, n: usize) -> Result<bool, FileErrorKind> {
        while self.avail() < n {
            if self.eof {
                return Ok(false);
            }
            if self.buf.len() - self.pos < n {
                self.buf.copy_within(self.pos..self.len, 0);
                self.len -= self.pos;
                self.pos = 0;
                if self.buf.len() < n {
                    self.buf.resize(n.next_power_of_two(), 0);
                }
            }
            match self.src.read(&mut self.buf[self.len..]) {
                Ok(0) => self.eof = true,
                Ok(k) => self.len += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(FileErrorKind::Read {
                        offset: self.offset,
                        error: e,
                    });
                }
            }
        }
        Ok(true)
    }

    fn consume(&mut self, n: usize) {
        self.pos += n;
        self.offset += n as u64;
    }

    fn truncated(&self, what: String, need: usize) -> FileErrorKind {
        FileErrorKind::Truncated {
            what,
            offset: self.offset,
            detail: format!("needs {need} bytes, {} present", self.avail()),
            packets: self.packets,
        }
    }

    fn corrupt(&self, what: String, detail: impl Into<String>) -> FileErrorKind {
        FileErrorKind::Corrupt {
            what,
            offset: self.offset,
            detail: detail.into(),
            packets: self.packets,
        }
    }

    fn read_file_header(&mut self) -> Result<(), FileErrorKind> {
        self.ensure(4)?;
        if self.avail() < 4 {
            return Err(FileErrorKind::NotCapture(if self.avail() == 0 {
                "empty file".into()
            } else {
                format!("only {} bytes", self.avail())
            }));
        }
        let head = &self.buf[self.pos..self.pos + 4];
        let magic = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        match magic {
            0xA1B2_C3D4 | 0xD4C3_B2A1 | 0xA1B2_3C4D | 0x4D3C_B2A1 => {
                if !self.ensure(24)? {
                    return Err(self.truncated("file ends inside the pcap file header".into(), 24));
                }
                let (_, header) = PcapHeader::from_slice(&self.buf[self.pos..self.pos + 24])
                    .map_err(|e| self.corrupt("pcap file header".into(), pcap_err(e)))?;
                self.consume(24);
                let linktype = u32::from(header.datalink) & 0xffff;
                let max_record = (header.snaplen as usize).clamp(PCAP_STD_MAX, MAX_RECORD);
                self.format = match header.ts_resolution {
                    TsResolution::MicroSecond => Format::Pcap,
                    TsResolution::NanoSecond => Format::PcapNs,
                };
                self.state = State::Pcap {
                    header,
                    linktype,
                    max_record,
                };
                Ok(())
            }
            PCAPNG_SHB => {
                self.format = Format::PcapNg;
                let len = self.block_len("section header block", None)?;
                let (_, parser) = PcapNgParser::new(&self.buf[self.pos..self.pos + len])
                    .map_err(|e| self.corrupt("section header block".into(), pcap_err(e)))?;
                self.consume(len);
                self.state = State::PcapNg {
                    parser: Box::new(parser),
                    ifaces: Vec::new(),
                };
                Ok(())
            }
            _ => {
                let hint = match head {
                    [0x1f, 0x8b, ..] => " — gzip-compressed? decompress it first",
                    [0x28, 0xb5, 0x2f, 0xfd] => " — zstd-compressed? decompress it first",
                    _ => "",
                };
                Err(FileErrorKind::NotCapture(format!(
                    "starts with {:02x} {:02x} {:02x} {:02x}{hint}",
                    head[0], head[1], head[2], head[3]
                )))
            }
        }
    }

    /// Reads a pcapng block's total length (validated) and makes the whole block
    /// available. `e` is the section's byte order (`None` for a section header, whose
    /// byte-order magic decides).
    fn block_len(&mut self, what: &str, e: Option<Endianness>) -> Result<usize, FileErrorKind> {
        let hdr = if e.is_none() { 12 } else { 8 };
        if !self.ensure(hdr)? {
            return Err(self.truncated(format!("file ends inside the header of {what}"), hdr));
        }
        let b = &self.buf[self.pos..self.pos + hdr];
        let e = match e {
            Some(e) => e,
            None => match u32::from_be_bytes([b[8], b[9], b[10], b[11]]) {
                0x1A2B_3C4D => Endianness::Big,
                0x4D3C_2B1A => Endianness::Little,
                m => {
                    return Err(
                        self.corrupt(what.to_string(), format!("bad byte-order magic {m:08x}"))
                    );
                }
            },
        };
        let len = u32_at(b, 4, e) as usize;
        if len < 12 || !len.is_multiple_of(4) || len > MAX_RECORD {
            return Err(self.corrupt(what.to_string(), format!("invalid block length {len}")));
        }
        if !self.ensure(len)? {
            return Err(self.truncated(format!("file ends inside {what}"), len));
        }
        let trailer = u32_at(&self.buf[self.pos..self.pos + len], len - 4, e) as usize;
        if trailer != len {
            return Err(self.corrupt(
                what.to_string(),
                format!("block length {len} but trailing length {trailer}"),
            ));
        }
        Ok(len)
    }

    /// The next packet, `None` at the end of the file.
    pub fn next_frame(&mut self) -> Result<Option<Frame<'_>>, FileErrorKind> {
        let p = std::mem::take(&mut self.pending);
        self.consume(p);
        loop {
            match self.next_record()? {
                None => return Ok(None),
                Some(Next::Skip) => {
                    let p = std::mem::take(&mut self.pending);
                    self.consume(p);
                }
                Some(Next::Frame {
                    ts_ns,
                    linktype,
                    orig_len,
                    start,
                    end,
                }) => {
                    self.packets += 1;
                    return Ok(Some(Frame {
                        ts_ns,
                        linktype,
                        orig_len,
                        data: &self.buf[start..end],
                    }));
                }
            }
        }
    }

    /// Decodes the record at `pos`; sets `pending` to its size.
    fn next_record(&mut self) -> Result<Option<Next>, FileErrorKind> {
        if !self.ensure(1)? {
            return Ok(None);
        }
        match &self.state {
            State::Pcap { .. } => self.next_pcap(),
            State::PcapNg { .. } => self.next_pcapng(),
        }
    }

    fn next_pcap(&mut self) -> Result<Option<Next>, FileErrorKind> {
        let State::Pcap {
            header,
            linktype,
            max_record,
        } = &self.state
        else {
            unreachable!()
        };
        let (e, nanos, linktype, max_record) = (
            header.endianness,
            header.ts_resolution == TsResolution::NanoSecond,
            *linktype,
            *max_record,
        );
        let n = self.packets + 1;
        if !self.ensure(16)? {
            return Err(self.truncated(
                format!("file ends inside the header of packet record {n}"),
                16,
            ));
        }
        let h = &self.buf[self.pos..self.pos + 16];
        let (sec, frac, incl, orig) = (
            u32_at(h, 0, e),
            u32_at(h, 4, e),
            u32_at(h, 8, e),
            u32_at(h, 12, e),
        );
        let incl = incl as usize;
        if incl > max_record {
            return Err(self.corrupt(
                format!("packet record {n}"),
                format!(
                    "captured length {incl} exceeds the maximum {max_record} (bad record header)"
                ),
            ));
        }
        if !self.ensure(16 + incl)? {
            return Err(self.truncated(format!("file ends inside packet record {n}"), 16 + incl));
        }
        let frac_ns = if nanos {
            frac as u64
        } else {
            frac as u64 * 1000
        };
        let ts_ns = (sec as u64) * 1_000_000_000 + frac_ns;
        self.pending = 16 + incl;
        Ok(Some(Next::Frame {
            ts_ns: Some(ts_ns),
            linktype,
            orig_len: orig,
            start: self.pos + 16,
            end: self.pos + 16 + incl,
        }))
    }

    fn next_pcapng(&mut self) -> Result<Option<Next>, FileErrorKind> {
        let State::PcapNg { parser, .. } = &self.state else {
            unreachable!()
        };
        let e = parser.section().endianness;
        if !self.ensure(4)? {
            return Err(self.truncated("file ends inside a block header".into(), 8));
        }
        let btype = u32_at(&self.buf[self.pos..self.pos + 4], 0, e);
        // The section header type reads the same in both byte orders; a new section may
        // switch byte order, and its own byte-order magic decides.
        let is_shb = btype == PCAPNG_SHB;
        let n = self.packets + 1;
        let what = match btype {
            PCAPNG_EPB | PCAPNG_PB | PCAPNG_SPB => format!("packet block {n}"),
            _ if is_shb => "section header block".to_string(),
            PCAPNG_IDB => "interface description block".to_string(),
            t => format!("block of type {t:#x}"),
        };
        let len = self.block_len(&what, if is_shb { None } else { Some(e) })?;
        self.pending = len;
        let block = &self.buf[self.pos..self.pos + len];
        let State::PcapNg { parser, ifaces } = &mut self.state else {
            unreachable!()
        };
        if is_shb || btype == PCAPNG_IDB {
            if let Err(err) = parser.next_raw_block(block) {
                return Err(self.corrupt(what, pcap_err(err)));
            }
            if is_shb {
                ifaces.clear();
            } else if let Some(idb) = parser.interfaces().last() {
                let mut i = Iface {
                    linktype: u32::from(idb.linktype) & 0xffff,
                    snaplen: idb.snaplen,
                    units_per_sec: 1_000_000,
                    offset_s: 0,
                };
                for opt in &idb.options {
                    match *opt {
                        InterfaceDescriptionOption::IfTsResol(r) => {
                            i.units_per_sec = if r & 0x80 != 0 {
                                1u128 << (r & 0x7f).min(96)
                            } else {
                                10u128.pow((r as u32).min(30))
                            };
                        }
                        InterfaceDescriptionOption::IfTsOffset(o) => i.offset_s = o as i64,
                        _ => {}
                    }
                }
                ifaces.push(i);
            }
            return Ok(Some(Next::Skip));
        }
        let body = &block[8..len - 4];
        let body_start = self.pos + 8;
        match btype {
            PCAPNG_EPB | PCAPNG_PB => {
                if body.len() < 20 {
                    return Err(self.corrupt(what, "block too short for a packet header"));
                }
                let (if_id, ts_hi, ts_lo) = if btype == PCAPNG_EPB {
                    (u32_at(body, 0, e), u32_at(body, 4, e), u32_at(body, 8, e))
                } else {
                    (
                        u16_at(body, 0, e) as u32,
                        u32_at(body, 4, e),
                        u32_at(body, 8, e),
                    )
                };
                let caplen = u32_at(body, 12, e) as usize;
                let orig_len = u32_at(body, 16, e);
                if caplen > body.len() - 20 {
                    let room = body.len() - 20;
                    return Err(self.corrupt(
                        what,
                        format!("captured length {caplen} exceeds the block's {room} data bytes"),
                    ));
                }
                let Some(iface) = ifaces.get(if_id as usize).copied() else {
                    let known = ifaces.len();
                    return Err(self.corrupt(
                        what,
                        format!("interface {if_id} not described ({known} interfaces in section)"),
                    ));
                };
                let units = ((ts_hi as u64) << 32) | ts_lo as u64;
                Ok(Some(Next::Frame {
                    ts_ns: Some(iface.ts_ns(units)),
                    linktype: iface.linktype,
                    orig_len,
                    start: body_start + 20,
                    end: body_start + 20 + caplen,
                }))
            }
            PCAPNG_SPB => {
                if body.len() < 4 {
                    return Err(self.corrupt(what, "block too short for a packet header"));
                }
                let Some(iface) = ifaces.first().copied() else {
                    return Err(self.corrupt(what, "simple packet block without an interface"));
                };
                let orig_len = u32_at(body, 0, e);
                let mut caplen = (orig_len as usize).min(body.len() - 4);
                if iface.snaplen != 0 {
                    caplen = caplen.min(iface.snaplen as usize);
                }
                Ok(Some(Next::Frame {
                    ts_ns: None,
                    linktype: iface.linktype,
                    orig_len,
                    start: body_start + 4,
                    end: body_start + 4 + caplen,
                }))
            }
            _ => Ok(Some(Next::Skip)),
        }
    }
}
