//! Errors that stop the transport from starting or serving.

use std::{net::SocketAddr, path::PathBuf};

/// The transport cannot start.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// A certificate or key file cannot be read or holds nothing usable.
    #[error("{what} {path}: {reason}")]
    Pem {
        /// Which file ("CA certificate", "collector certificate", "collector key").
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// rustls refused the certificates or key (mismatched key, bad CA, ...).
    #[error("TLS configuration: {0}")]
    Tls(String),
    /// The listen address cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}
