//! Errors of the enrichment databases.

use std::path::PathBuf;

/// Why the enrichment databases could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum EnrichError {
    /// A MaxMind DB file is missing, unreadable or corrupt.
    #[error("{}: cannot open MaxMind DB: {source}", path.display())]
    Mmdb {
        /// The database file.
        path: PathBuf,
        /// The reader's error.
        source: maxminddb::MaxMindDbError,
    },
    /// A MaxMind DB whose `database_type` carries neither countries nor ASNs.
    #[error(
        "{}: unsupported MaxMind database type {database_type:?} (expected a City, Country, Enterprise, ASN or ISP database)",
        path.display()
    )]
    UnsupportedDatabase {
        /// The database file.
        path: PathBuf,
        /// Its `database_type` metadata.
        database_type: String,
    },
    /// An operator range file could not be read.
    #[error("{}: cannot read range file: {source}", path.display())]
    CsvIo {
        /// The range file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A malformed line in an operator range file.
    #[error("{}:{line}: {message}", path.display())]
    Csv {
        /// The range file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
}
