//! Transport settings.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use tidegate_common::wire::DEFAULT_MAX_FRAME;

/// Settings of the probe-facing TLS listener.
#[derive(Clone, Debug)]
pub struct TransportConfig {
    /// Address to listen on (port 0 picks a free port).
    pub listen: SocketAddr,
    /// PEM file with the CA certificate(s) that issue probe certificates.
    pub ca_cert: PathBuf,
    /// PEM file with the collector's certificate chain.
    pub cert: PathBuf,
    /// PEM file with the collector's private key.
    pub key: PathBuf,
    /// Largest frame accepted from a probe (length field), bytes.
    pub max_frame_bytes: usize,
    /// Time allowed from TCP accept to `HelloAck` (TLS handshake, `Hello`, taking over
    /// the probe's previous connection).
    pub handshake_timeout: Duration,
    /// A connection that sends nothing for this long is closed.
    pub idle_timeout: Duration,
}

impl TransportConfig {
    /// Default frame limit ([`DEFAULT_MAX_FRAME`]), 10 s handshake, 120 s idle timeout.
    pub fn new(listen: SocketAddr, ca_cert: PathBuf, cert: PathBuf, key: PathBuf) -> Self {
        TransportConfig {
            listen,
            ca_cert,
            cert,
            key,
            max_frame_bytes: DEFAULT_MAX_FRAME,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
        }
    }
}
