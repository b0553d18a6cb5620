//! Batches of flow records: the unit of transport, acknowledgement, deduplication and
//! storage.
//!
//! Encoded layout, format [`BATCH_FORMAT`] (numbers big-endian, `str` = `u32` length +
//! UTF-8):
//!
//! ```text
//! header (uncompressed):
//!   magic "TGB" | format u8 = 2 | seq u64 | epoch u64 | created_ns u64 | probe_id str
//!   | codec u8 (1 = zstd) | body_len u32 (decompressed size)
//! body (one zstd frame, body_len bytes once decompressed):
//!   line_count u32, line_count × str                 (line-name table)
//!   n u32, then columns of n values each:
//!     flags u8    bit0 src IPv4, bit1 dst IPv4, bit2 vlan, bit3 icmp_type, bit4 icmp_code,
//!                 bit5 egress (bits 6-7 zero)
//!     src [16]    IPv4 as IPv4-mapped (::ffff:a.b.c.d) when bit0
//!     dst [16]    likewise with bit1
//!     proto u8 | sport u16 | dport u16 | vlan u16 (0 when absent) | tcp_flags u16
//!     icmp_type u8 | icmp_code u8 (0 when absent)
//!     packets u64 | bytes u64 | first_ns u64 | last_ns − first_ns u64 (wrapping)
//!     ifindex u32 | line u32 (index into the line-name table)
//!   health u8 (0/1); when 1: ts_ns u64, spool_bytes u64, spool_batches u64,
//!     counter_count u32, counter_count × (name str, value u64), line_count u32, × str
//!   rule_count u32, rule_count × str                 (enforcement rule-id table)
//!   verdict u8 × n (0 pass, 1 would_drop, 2 dropped)
//!   rule u32 × n (0 = none, else 1 + index into the rule-id table)
//!   source u8 × n (0 probe, 1 NetFlow v5, 2 NetFlow v9, 3 IPFIX)
//!   sampling u32 × n (1 in N packets counted; 1 = every packet; never 0)
//!   app u8 × n (0 none, 1 DNS question, 2 TLS server name, 3 both)
//!   then, for each record with a DNS question in order: qname str | qtype u16
//!     | rcode u8 (0xff: a query, no response code)
//!   then, for each record with a server name in order: sni str
//!   tunnel u8 × n (0 none; else bits 0-6 the kind: 1 GRE, 2 VXLAN, 3 GTP-U, 4 IP-in-IP;
//!     bit 7: the outer endpoints follow)
//!   then, for each tunnelled record in order: id u32, and with bit 7:
//!     outer_flags u8 (bit0 src IPv4, bit1 dst IPv4) | outer_src [16] | outer_dst [16]
//! ```
//!
//! Format 5 (before tunnels) ends after the server names. Format 4 (before application metadata) ends after the sampling column. Format 3 (before NetFlow/IPFIX ingest) ends after the rule column: its records decode
//! as probe records, unsampled. Format 2 (before enforcement) ends after `health`: its records decode with verdict
//! `pass`. Format 1 (before sequence epochs) is format 2 without `epoch`; it decodes as
//! epoch 0. Spools written by an older build drain after an upgrade.
//!
//! Columns keep like values together, which is what zstd compresses best. The header is
//! uncompressed so the collector's spool and the probe's resend logic can read the probe
//! id and sequence number without decompressing ([`peek_batch_header`]).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{
    WireError,
    codec::{Put, Reader, decompress_stream},
};
use crate::Name;
use crate::record::{FlowRecord, FlowSource, TunnelMeta, Verdict};
use tidegate_common::{Direction, Tunnel};

/// Version of the batch layout this build writes.
pub const BATCH_FORMAT: u8 = 6;
/// The layout before tunnels (records read as not decapsulated).
const BATCH_FORMAT_V5: u8 = 5;
/// The layout before application metadata (DNS questions, TLS server names).
const BATCH_FORMAT_V4: u8 = 4;
/// The layout before record sources and sampling (records read as probe, unsampled).
const BATCH_FORMAT_V3: u8 = 3;
/// The layout before enforcement verdicts (records read as `pass`).
const BATCH_FORMAT_V2: u8 = 2;
/// The layout before sequence epochs (read as epoch 0).
const BATCH_FORMAT_V1: u8 = 1;

/// Longest DNS name or server name a record carries (escaped presentation form of a
/// 255-octet name).
const APP_NAME_MAX: usize = 1024;

/// Largest decompressed body [`decode_batch`] accepts (32 MiB): a full batch of
/// [`MAX_BATCH_RECORDS`] records takes about 8 MiB, plus its DNS/TLS names (the probe
/// seals a batch before its names would take it past [`BATCH_BODY_TARGET`]).
pub const MAX_BATCH_BODY: usize = 32 << 20;
/// Largest body a probe builds: half of [`MAX_BATCH_BODY`].
pub const BATCH_BODY_TARGET: usize = MAX_BATCH_BODY / 2;
/// Most records in one batch (what probes and the NetFlow listener send at most).
pub const MAX_BATCH_RECORDS: usize = 100_000;
/// Longest encoded batch header (magic, format, sequence, epoch, creation time, probe id,
/// codec, body length): [`peek_batch_header`] reads a batch's header from this many bytes.
pub const MAX_BATCH_HEADER: usize = 3 + 1 + 8 + 8 + 8 + 4 + crate::MAX_PROBE_ID + 1 + 4;
/// Most counters, and most lines, in a probe's health report.
pub const MAX_HEALTH_ITEMS: usize = 4096;

/// Encoded body bytes `r` adds to a batch, at most (for [`BATCH_BODY_TARGET`]).
pub fn record_body_bytes(r: &FlowRecord) -> usize {
    RECORD_BYTES
        + 16
        + r.dns.as_ref().map_or(0, |d| 8 + d.qname.len())
        + r.sni.as_ref().map_or(0, |s| 4 + s.len())
        + r.tunnel.as_ref().map_or(0, |_| 4 + 1 + 32)
}

const MAGIC: [u8; 3] = *b"TGB";
const CODEC_ZSTD: u8 = 1;
/// zstd level of a batch body. Measured on 1 M synthetic records (96 body bytes each),
/// per record: level 3 compresses in 218 ns to 19.8 bytes, level 1 in 143 ns to 21.0
/// bytes (decompression 67 against 63 ns): a third less of the probe's CPU for 6 % more
/// bytes on the wire and in the spools. (Level −1: 128 ns, 24.5 bytes.)
const ZSTD_LEVEL: i32 = 1;
/// Largest decompressed / compressed ratio of a body decompressed in one call into a
/// buffer of its declared size (batches compress ~5×); a body declaring more is
/// decompressed as a stream into a buffer grown with what actually comes out, so a
/// small frame declaring a large body makes no large allocation.
const BULK_RATIO_MAX: usize = 64;
/// Offset of `seq` in the header.
const SEQ_OFFSET: usize = 4;
/// Offset of `epoch` in a format-2 header.
const EPOCH_OFFSET: usize = 12;
/// Bytes one record takes in the columns.
const RECORD_BYTES: usize = 1 + 16 + 16 + 1 + 2 + 2 + 2 + 2 + 1 + 1 + 8 + 8 + 8 + 8 + 4 + 4;

const F_SRC_V4: u8 = 1;
const F_DST_V4: u8 = 2;
const F_VLAN: u8 = 4;
const F_ICMP_TYPE: u8 = 8;
const F_ICMP_CODE: u8 = 16;
const F_EGRESS: u8 = 32;
const F_KNOWN: u8 = 63;

/// A probe's state, attached to a batch now and then (at least every few seconds).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProbeHealth {
    /// When the snapshot was taken, Unix-epoch ns.
    pub ts_ns: u64,
    /// Counter name → absolute value.
    pub counters: Vec<(String, u64)>,
    /// Bytes in the probe's unacknowledged spool.
    pub spool_bytes: u64,
    /// Batches in the probe's unacknowledged spool.
    pub spool_batches: u64,
    /// Names of the lines the probe monitors.
    pub lines: Vec<String>,
}

/// A batch of flow records from one probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batch {
    /// The probe that produced it.
    pub probe_id: String,
    /// The sequence's epoch: a random number drawn when the probe's spool was created.
    /// `(probe_id, epoch)` names one sequence of batches, so a probe that starts over with
    /// a new spool (a forensic replay, a wiped disk) is never mistaken for a resend.
    pub epoch: u64,
    /// The sequence number: unique within `(probe_id, epoch)`, increasing, never reused.
    pub seq: u64,
    /// When the batch was sealed, Unix-epoch ns.
    pub created_ns: u64,
    /// The records.
    pub records: Vec<FlowRecord>,
    /// Probe health, when attached.
    pub health: Option<ProbeHealth>,
}

/// The uncompressed header of an encoded batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchHeader {
    /// Layout version.
    pub format: u8,
    /// Sequence number.
    pub seq: u64,
    /// The sequence's epoch (0 for format 1).
    pub epoch: u64,
    /// When the batch was sealed, Unix-epoch ns.
    pub created_ns: u64,
    /// Probe id.
    pub probe_id: String,
    /// Declared decompressed body length.
    pub body_len: usize,
}

/// Encodes a batch (header + zstd-compressed columnar body).
pub fn encode_batch(b: &Batch) -> Vec<u8> {
    encode_format(b, BATCH_FORMAT)
}

/// The encoding an older build wrote (format 1: no epoch; 2: no enforcement verdicts;
/// anything else: the current format), for upgrade tests. Fields the format lacks are
/// left out.
pub fn encode_batch_as(b: &Batch, format: u8) -> Vec<u8> {
    match format {
        BATCH_FORMAT_V1 => {
            let v2 = encode_format(b, BATCH_FORMAT_V2);
            let mut v1 = v2[..EPOCH_OFFSET].to_vec();
            v1[3] = BATCH_FORMAT_V1;
            v1.extend_from_slice(&v2[EPOCH_OFFSET + 8..]);
            v1
        }
        BATCH_FORMAT_V2 => encode_format(b, BATCH_FORMAT_V2),
        BATCH_FORMAT_V3 => encode_format(b, BATCH_FORMAT_V3),
        BATCH_FORMAT_V4 => encode_format(b, BATCH_FORMAT_V4),
        BATCH_FORMAT_V5 => encode_format(b, BATCH_FORMAT_V5),
        _ => encode_format(b, BATCH_FORMAT),
    }
}

fn encode_format(b: &Batch, format: u8) -> Vec<u8> {
    let body = encode_body(b, format);
    let compressed = zstd::bulk::compress(&body, ZSTD_LEVEL)
        .expect("zstd compression of an in-memory buffer only fails when out of memory");
    let mut out = Vec::with_capacity(32 + b.probe_id.len() + compressed.len());
    out.extend_from_slice(&MAGIC);
    out.put_u8(format);
    out.put_u64(b.seq);
    out.put_u64(b.epoch);
    out.put_u64(b.created_ns);
    out.put_str(&b.probe_id);
    out.put_u8(CODEC_ZSTD);
    out.put_len(body.len());
    out.extend_from_slice(&compressed);
    out
}

fn addr16(ip: IpAddr) -> (bool, [u8; 16]) {
    match ip {
        IpAddr::V4(v4) => (true, v4.to_ipv6_mapped().octets()),
        IpAddr::V6(v6) => (false, v6.octets()),
    }
}

fn encode_body(b: &Batch, format: u8) -> Vec<u8> {
    let recs = &b.records;
    let mut lines: Vec<&str> = Vec::new();
    let mut line_ix: HashMap<&str, u32> = HashMap::new();
    let idx: Vec<u32> = recs
        .iter()
        .map(|r| {
            *line_ix.entry(r.line.as_str()).or_insert_with(|| {
                lines.push(r.line.as_str());
                (lines.len() - 1) as u32
            })
        })
        .collect();
    let mut v = Vec::with_capacity(16 + lines.len() * 16 + recs.len() * RECORD_BYTES);
    v.put_len(lines.len());
    for l in &lines {
        v.put_str(l);
    }
    v.put_len(recs.len());
    for r in recs {
        let mut f = 0;
        f |= if addr16(r.src).0 { F_SRC_V4 } else { 0 };
        f |= if addr16(r.dst).0 { F_DST_V4 } else { 0 };
        f |= if r.vlan.is_some() { F_VLAN } else { 0 };
        f |= if r.icmp_type.is_some() {
            F_ICMP_TYPE
        } else {
            0
        };
        f |= if r.icmp_code.is_some() {
            F_ICMP_CODE
        } else {
            0
        };
        f |= if r.direction == Direction::Egress {
            F_EGRESS
        } else {
            0
        };
        v.put_u8(f);
    }
    recs.iter()
        .for_each(|r| v.extend_from_slice(&addr16(r.src).1));
    recs.iter()
        .for_each(|r| v.extend_from_slice(&addr16(r.dst).1));
    recs.iter().for_each(|r| v.put_u8(r.proto));
    recs.iter().for_each(|r| v.put_u16(r.sport));
    recs.iter().for_each(|r| v.put_u16(r.dport));
    recs.iter().for_each(|r| v.put_u16(r.vlan.unwrap_or(0)));
    recs.iter().for_each(|r| v.put_u16(r.tcp_flags));
    recs.iter().for_each(|r| v.put_u8(r.icmp_type.unwrap_or(0)));
    recs.iter().for_each(|r| v.put_u8(r.icmp_code.unwrap_or(0)));
    recs.iter().for_each(|r| v.put_u64(r.packets));
    recs.iter().for_each(|r| v.put_u64(r.bytes));
    recs.iter().for_each(|r| v.put_u64(r.first));
    recs.iter()
        .for_each(|r| v.put_u64(r.last.wrapping_sub(r.first)));
    recs.iter().for_each(|r| v.put_u32(r.ifindex));
    idx.iter().for_each(|i| v.put_u32(*i));
    match &b.health {
        None => v.put_u8(0),
        Some(h) => {
            v.put_u8(1);
            v.put_u64(h.ts_ns);
            v.put_u64(h.spool_bytes);
            v.put_u64(h.spool_batches);
            v.put_len(h.counters.len());
            for (name, value) in &h.counters {
                v.put_str(name);
                v.put_u64(*value);
            }
            v.put_len(h.lines.len());
            for l in &h.lines {
                v.put_str(l);
            }
        }
    }
    if format < BATCH_FORMAT_V3 {
        return v;
    }
    let mut rules: Vec<&str> = Vec::new();
    let rule_ix: Vec<u32> = recs
        .iter()
        .map(|r| match &r.enforce_rule {
            None => 0,
            Some(id) => match rules.iter().position(|x| *x == id.as_str()) {
                Some(i) => i as u32 + 1,
                None => {
                    rules.push(id);
                    rules.len() as u32
                }
            },
        })
        .collect();
    v.put_len(rules.len());
    for r in &rules {
        v.put_str(r);
    }
    recs.iter().for_each(|r| v.put_u8(r.verdict.as_u8()));
    rule_ix.iter().for_each(|i| v.put_u32(*i));
    if format < BATCH_FORMAT_V4 {
        return v;
    }
    recs.iter().for_each(|r| v.put_u8(r.source.as_u8()));
    recs.iter().for_each(|r| v.put_u32(r.sampling.max(1)));
    if format < BATCH_FORMAT_V5 {
        return v;
    }
    recs.iter()
        .for_each(|r| v.put_u8(u8::from(r.dns.is_some()) | (u8::from(r.sni.is_some()) << 1)));
    for d in recs.iter().filter_map(|r| r.dns.as_ref()) {
        v.put_str(&d.qname);
        v.put_u16(d.qtype);
        v.put_u8(d.rcode.unwrap_or(0xff));
    }
    for s in recs.iter().filter_map(|r| r.sni.as_ref()) {
        v.put_str(s);
    }
    if format < BATCH_FORMAT {
        return v;
    }
    let outer = |t: &TunnelMeta| t.outer_src.zip(t.outer_dst);
    recs.iter().for_each(|r| {
        v.put_u8(r.tunnel.as_ref().map_or(0, |t| {
            t.kind as u8 | if outer(t).is_some() { T_OUTER } else { 0 }
        }))
    });
    for t in recs.iter().filter_map(|r| r.tunnel.as_ref()) {
        v.put_u32(t.id);
        if let Some((s, d)) = outer(t) {
            let (s, d) = (addr16(s), addr16(d));
            v.put_u8(u8::from(s.0) | (u8::from(d.0) << 1));
            v.extend_from_slice(&s.1);
            v.extend_from_slice(&d.1);
        }
    }
    v
}

/// Tunnel column: the outer endpoints follow.
const T_OUTER: u8 = 0x80;

/// Reads the header; returns it and the compressed body that follows.
fn read_header(bytes: &[u8]) -> Result<(BatchHeader, u8, &[u8]), WireError> {
    let mut r = Reader::new(bytes);
    let magic = r.bytes(3, "batch magic")?;
    if magic != MAGIC {
        return Err(WireError::BadMagic([magic[0], magic[1], magic[2]]));
    }
    let format = r.u8("batch format")?;
    if !matches!(
        format,
        BATCH_FORMAT
            | BATCH_FORMAT_V5
            | BATCH_FORMAT_V4
            | BATCH_FORMAT_V3
            | BATCH_FORMAT_V2
            | BATCH_FORMAT_V1
    ) {
        return Err(WireError::UnsupportedBatchFormat(format));
    }
    let seq = r.u64("batch seq")?;
    let epoch = match format {
        BATCH_FORMAT_V1 => 0,
        _ => r.u64("batch epoch")?,
    };
    let created_ns = r.u64("batch created_ns")?;
    let probe_id = r.str("batch probe_id")?;
    if let Some(why) = crate::probe_id_problem(&probe_id) {
        // The connection already named its probe; this one goes into logs and replies.
        return Err(WireError::Invalid {
            what: "batch probe_id",
            detail: why,
        });
    }
    let codec = r.u8("batch codec")?;
    let body_len = r.u32("batch body_len")? as usize;
    let h = BatchHeader {
        format,
        seq,
        epoch,
        created_ns,
        probe_id,
        body_len,
    };
    Ok((h, codec, r.rest()))
}

/// Reads an encoded batch's header without decompressing the body.
pub fn peek_batch_header(bytes: &[u8]) -> Result<BatchHeader, WireError> {
    read_header(bytes).map(|(h, _, _)| h)
}

/// Rewrites the epoch and sequence number of an encoded batch in place (the header is
/// uncompressed, so nothing else changes). Format 1 has no epoch: such a batch is
/// refused (re-encode it with [`encode_batch`]).
pub fn set_batch_seq(bytes: &mut [u8], epoch: u64, seq: u64) -> Result<(), WireError> {
    let h = peek_batch_header(bytes)?;
    if h.format == BATCH_FORMAT_V1 {
        return Err(WireError::UnsupportedBatchFormat(h.format));
    }
    bytes[SEQ_OFFSET..SEQ_OFFSET + 8].copy_from_slice(&seq.to_be_bytes());
    bytes[EPOCH_OFFSET..EPOCH_OFFSET + 8].copy_from_slice(&epoch.to_be_bytes());
    Ok(())
}

fn decompress(compressed: &[u8], declared: usize) -> Result<Vec<u8>, WireError> {
    if declared > MAX_BATCH_BODY {
        return Err(WireError::BodyTooLarge {
            declared,
            max: MAX_BATCH_BODY,
        });
    }
    let frame = zstd::zstd_safe::find_frame_compressed_size(compressed)
        .map_err(|code| WireError::Decompress(zstd::zstd_safe::get_error_name(code).into()))?;
    if frame != compressed.len() {
        return Err(WireError::TrailingBytes {
            what: "zstd frame",
            extra: compressed.len() - frame,
        });
    }
    if declared <= compressed.len().saturating_mul(BULK_RATIO_MAX) {
        // One call writing straight into the body (no stream buffer to copy out of).
        let mut body = Vec::with_capacity(declared);
        let done = zstd::bulk::Decompressor::new()
            .and_then(|mut d| d.decompress_to_buffer(compressed, &mut body));
        if matches!(done, Ok(n) if n == declared) {
            return Ok(body);
        }
        // A body that is not what it declares: the stream below names how.
    }
    decompress_stream(compressed, declared)
}

/// Decodes and validates an encoded batch. Every length, count, flag, index and string
/// is checked; garbage gives an error naming the field, never a panic.
pub fn decode_batch(bytes: &[u8]) -> Result<Batch, WireError> {
    let (h, codec, compressed) = read_header(bytes)?;
    if codec != CODEC_ZSTD {
        return Err(WireError::UnsupportedCodec(codec));
    }
    let body = decompress(compressed, h.body_len)?;
    let mut r = Reader::new(&body);

    // A table names only what the records use, so it holds at most one entry per
    // record: with no bound before the records' count, 8 M empty names (4 bytes each,
    // ~1 KB compressed) decoded into ~400 MB.
    let n_lines = r.count("line-name table", 4)?;
    if n_lines > MAX_BATCH_RECORDS {
        return Err(WireError::TooManyRecords {
            count: n_lines,
            max: MAX_BATCH_RECORDS,
        });
    }
    let mut lines = Vec::with_capacity(n_lines);
    for _ in 0..n_lines {
        lines.push(Name::from(r.str("line name")?));
    }
    let n = r.count("records", RECORD_BYTES)?;
    if n > MAX_BATCH_RECORDS {
        return Err(WireError::TooManyRecords {
            count: n,
            max: MAX_BATCH_RECORDS,
        });
    }
    if n_lines > n.max(1) {
        return Err(WireError::Invalid {
            what: "line-name table",
            detail: format!("{n_lines} names for {n} records"),
        });
    }
    let flags = r.bytes(n, "flags column")?;
    let src = r.bytes(n * 16, "src column")?;
    let dst = r.bytes(n * 16, "dst column")?;
    let proto = r.bytes(n, "proto column")?;
    let sport = r.bytes(n * 2, "sport column")?;
    let dport = r.bytes(n * 2, "dport column")?;
    let vlan = r.bytes(n * 2, "vlan column")?;
    let tcp_flags = r.bytes(n * 2, "tcp_flags column")?;
    let icmp_type = r.bytes(n, "icmp_type column")?;
    let icmp_code = r.bytes(n, "icmp_code column")?;
    let packets = r.bytes(n * 8, "packets column")?;
    let nbytes = r.bytes(n * 8, "bytes column")?;
    let first = r.bytes(n * 8, "first column")?;
    let dur = r.bytes(n * 8, "last column")?;
    let ifindex = r.bytes(n * 4, "ifindex column")?;
    let line = r.bytes(n * 4, "line column")?;

    let u16_at = |c: &[u8], i: usize| u16::from_be_bytes([c[2 * i], c[2 * i + 1]]);
    let u32_at =
        |c: &[u8], i: usize| u32::from_be_bytes(c[4 * i..4 * i + 4].try_into().expect("4 bytes"));
    let u64_at =
        |c: &[u8], i: usize| u64::from_be_bytes(c[8 * i..8 * i + 8].try_into().expect("8 bytes"));
    let invalid = |what: &'static str, i: usize, detail: String| WireError::Invalid {
        what,
        detail: format!("record {i}: {detail}"),
    };
    let mapped = |a: [u8; 16], v4: bool, what: &'static str, i: usize| {
        if !v4 {
            return Ok(IpAddr::V6(Ipv6Addr::from(a)));
        }
        if a[..10] != [0; 10] || a[10..12] != [0xff, 0xff] {
            return Err(invalid(
                what,
                i,
                format!("flagged IPv4 but {} is not IPv4-mapped", Ipv6Addr::from(a)),
            ));
        }
        Ok(IpAddr::V4(Ipv4Addr::new(a[12], a[13], a[14], a[15])))
    };
    let addr = |col: &[u8], i: usize, v4: bool, what: &'static str| {
        mapped(
            col[16 * i..16 * i + 16].try_into().expect("16 bytes"),
            v4,
            what,
            i,
        )
    };

    let mut records = Vec::with_capacity(n);
    for i in 0..n {
        let f = flags[i];
        if f & !F_KNOWN != 0 {
            return Err(invalid("record flags", i, format!("unknown bits {f:#04x}")));
        }
        let opt16 = |present: bool, v: u16, what: &'static str| match (present, v) {
            (true, v) => Ok(Some(v)),
            (false, 0) => Ok(None),
            (false, v) => Err(invalid(what, i, format!("{v} given while absent"))),
        };
        let opt8 =
            |present: bool, v: u8, what| opt16(present, v as u16, what).map(|o| o.map(|v| v as u8));
        let li = u32_at(line, i) as usize;
        let line_name = lines.get(li).ok_or_else(|| {
            invalid(
                "record line",
                i,
                format!("index {li} beyond the {} line names", lines.len()),
            )
        })?;
        let first_ns = u64_at(first, i);
        records.push(FlowRecord {
            src: addr(src, i, f & F_SRC_V4 != 0, "record src")?,
            dst: addr(dst, i, f & F_DST_V4 != 0, "record dst")?,
            sport: u16_at(sport, i),
            dport: u16_at(dport, i),
            proto: proto[i],
            vlan: opt16(f & F_VLAN != 0, u16_at(vlan, i), "record vlan")?,
            packets: u64_at(packets, i),
            bytes: u64_at(nbytes, i),
            first: first_ns,
            last: first_ns.wrapping_add(u64_at(dur, i)),
            tcp_flags: u16_at(tcp_flags, i),
            icmp_type: opt8(f & F_ICMP_TYPE != 0, icmp_type[i], "record icmp_type")?,
            icmp_code: opt8(f & F_ICMP_CODE != 0, icmp_code[i], "record icmp_code")?,
            line: line_name.clone(),
            ifindex: u32_at(ifindex, i),
            direction: if f & F_EGRESS != 0 {
                Direction::Egress
            } else {
                Direction::Ingress
            },
            verdict: Verdict::Pass,
            enforce_rule: None,
            source: FlowSource::Probe,
            sampling: 1,
            dns: None,
            sni: None,
            tunnel: None,
        });
    }

    let health = if r.bool("health present")? {
        let ts_ns = r.u64("health ts_ns")?;
        let spool_bytes = r.u64("health spool_bytes")?;
        let spool_batches = r.u64("health spool_batches")?;
        let nc = r.count("health counters", 12)?;
        if nc > MAX_HEALTH_ITEMS {
            return Err(WireError::Invalid {
                what: "health counters",
                detail: format!("{nc} counters, at most {MAX_HEALTH_ITEMS}"),
            });
        }
        let mut counters = Vec::with_capacity(nc);
        for _ in 0..nc {
            let name = r.str("health counter name")?;
            counters.push((name, r.u64("health counter value")?));
        }
        let nl = r.count("health lines", 4)?;
        if nl > MAX_HEALTH_ITEMS {
            return Err(WireError::Invalid {
                what: "health lines",
                detail: format!("{nl} lines, at most {MAX_HEALTH_ITEMS}"),
            });
        }
        let mut hl = Vec::with_capacity(nl);
        for _ in 0..nl {
            hl.push(r.str("health line")?);
        }
        Some(ProbeHealth {
            ts_ns,
            counters,
            spool_bytes,
            spool_batches,
            lines: hl,
        })
    } else {
        None
    };
    if h.format >= BATCH_FORMAT_V3 {
        let nr = r.count("enforcement rule table", 4)?;
        if nr > n {
            return Err(WireError::Invalid {
                what: "enforcement rule table",
                detail: format!("{nr} rules for {n} records"),
            });
        }
        let mut rules = Vec::with_capacity(nr);
        for _ in 0..nr {
            rules.push(Name::from(r.str("enforcement rule id")?));
        }
        let verdicts = r.bytes(n, "verdict column")?;
        let rule_col = r.bytes(n * 4, "rule column")?;
        for (i, rec) in records.iter_mut().enumerate() {
            let v = verdicts[i];
            if v > 2 {
                return Err(invalid("record verdict", i, format!("unknown verdict {v}")));
            }
            rec.verdict = Verdict::from_u8(v);
            let ri = u32_at(rule_col, i) as usize;
            rec.enforce_rule = match ri {
                0 => None,
                ri => Some(
                    rules
                        .get(ri - 1)
                        .ok_or_else(|| {
                            invalid(
                                "record rule",
                                i,
                                format!("index {ri} beyond the {nr} rule ids"),
                            )
                        })?
                        .clone(),
                ),
            };
            if rec.verdict.is_pass() != rec.enforce_rule.is_none() {
                return Err(invalid(
                    "record rule",
                    i,
                    "a verdict other than pass needs a rule, and only such a verdict has one"
                        .into(),
                ));
            }
        }
    }
    if h.format >= BATCH_FORMAT_V4 {
        let sources = r.bytes(n, "source column")?;
        let sampling = r.bytes(n * 4, "sampling column")?;
        for (i, rec) in records.iter_mut().enumerate() {
            rec.source = FlowSource::from_u8(sources[i]).ok_or_else(|| {
                invalid("record source", i, format!("unknown source {}", sources[i]))
            })?;
            rec.sampling = match u32_at(sampling, i) {
                0 => return Err(invalid("record sampling", i, "0 (1 in 0 packets)".into())),
                s => s,
            };
        }
    }
    if h.format >= BATCH_FORMAT_V5 {
        let app = r.bytes(n, "app column")?.to_vec();
        for (i, a) in app.iter().enumerate() {
            if *a > 3 {
                return Err(invalid("record app", i, format!("unknown bits {a:#04x}")));
            }
        }
        for (i, rec) in records.iter_mut().enumerate() {
            if app[i] & 1 != 0 {
                let qname = r.str("dns qname")?;
                if qname.len() > APP_NAME_MAX {
                    return Err(invalid("dns qname", i, format!("{} bytes", qname.len())));
                }
                let qtype = r.u16("dns qtype")?;
                let rcode = match r.u8("dns rcode")? {
                    0xff => None,
                    c if c <= 15 => Some(c),
                    c => return Err(invalid("dns rcode", i, format!("{c} (not 0..=15)"))),
                };
                rec.dns = Some(Box::new(crate::record::DnsMeta {
                    qname,
                    qtype,
                    rcode,
                }));
            }
        }
        for (i, rec) in records.iter_mut().enumerate() {
            if app[i] & 2 != 0 {
                let sni = r.str("tls sni")?;
                if sni.len() > APP_NAME_MAX {
                    return Err(invalid("tls sni", i, format!("{} bytes", sni.len())));
                }
                rec.sni = Some(sni.into());
            }
        }
    }
    if h.format >= BATCH_FORMAT {
        let kinds = r.bytes(n, "tunnel column")?.to_vec();
        for (i, rec) in records.iter_mut().enumerate() {
            if kinds[i] == 0 {
                continue;
            }
            let kind = Tunnel::from_u8(kinds[i] & !T_OUTER).ok_or_else(|| {
                invalid(
                    "record tunnel",
                    i,
                    format!("unknown kind {:#04x}", kinds[i]),
                )
            })?;
            let id = r.u32("tunnel id")?;
            let (mut outer_src, mut outer_dst) = (None, None);
            if kinds[i] & T_OUTER != 0 {
                let f = r.u8("tunnel outer flags")?;
                if f > 3 {
                    return Err(invalid("tunnel outer flags", i, format!("{f:#04x}")));
                }
                let s: [u8; 16] = r.bytes(16, "tunnel outer src")?.try_into().expect("16");
                outer_src = Some(mapped(s, f & 1 != 0, "tunnel outer src", i)?);
                let d: [u8; 16] = r.bytes(16, "tunnel outer dst")?.try_into().expect("16");
                outer_dst = Some(mapped(d, f & 2 != 0, "tunnel outer dst", i)?);
            }
            rec.tunnel = Some(Box::new(TunnelMeta {
                kind,
                id,
                outer_src,
                outer_dst,
            }));
        }
    }
    r.finish("batch body")?;
    Ok(Batch {
        probe_id: h.probe_id,
        epoch: h.epoch,
        seq: h.seq,
        created_ns: h.created_ns,
        records,
        health,
    })
}
