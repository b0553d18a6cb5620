//! Errors that stop the transport from starting or serving.

use std::net::SocketAddr;

/// The transport cannot start.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The certificates or key are unusable (unreadable, empty, mismatched, ...).
    #[error(transparent)]
    Tls(#[from] tidegate_base::tls::TlsError),
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
