//! Where flow records go: JSON lines on stdout ([`JsonLines`]) or the collector
//! ([`collector::CollectorExporter`]: batches over mutually-authenticated TLS with an
//! on-disk spool).

use std::io::{self, Write};

use crate::record::FlowRecord;

pub mod collector;

/// A destination for flow records.
pub trait Exporter {
    /// Ships one record.
    fn export(&mut self, rec: &FlowRecord) -> io::Result<()>;
    /// Flushes buffered records (end of a sweep, shutdown).
    fn flush(&mut self) -> io::Result<()>;
}

/// One JSON object per line.
pub struct JsonLines<W: Write> {
    out: io::BufWriter<W>,
    /// Records written so far.
    pub written: u64,
}

impl<W: Write> JsonLines<W> {
    /// Wraps a writer.
    pub fn new(w: W) -> Self {
        JsonLines {
            out: io::BufWriter::with_capacity(1 << 16, w),
            written: 0,
        }
    }
}

impl<W: Write> Exporter for JsonLines<W> {
    fn export(&mut self, rec: &FlowRecord) -> io::Result<()> {
        serde_json::to_writer(&mut self.out, rec)?;
        self.out.write_all(b"\n")?;
        self.written += 1;
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}
