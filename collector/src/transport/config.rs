//! Transport settings: the `[transport]` section, validated once for `run` and
//! `check-config` alike (addresses, limits, and the TLS files loaded for real).

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use serde::Deserialize;
use tidegate_base::{ConfigError, ConfigFile};
use tidegate_wire::DEFAULT_MAX_FRAME;
use toml::Spanned;

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
    /// PEM CRLs from the CA: probes whose certificates they revoke are refused.
    pub crls: Vec<PathBuf>,
    /// When set, only these probe ids may connect (besides holding a CA-signed
    /// certificate naming them).
    pub allowed_probes: Option<Vec<String>>,
    /// Most open probe connections (authenticated or not); more are closed at accept.
    pub max_connections: usize,
    /// Most connections still in their handshake (TLS, `Hello`) at once.
    pub max_handshakes: usize,
    /// Most connections in their handshake from one IP address at once (one IPv6 /64
    /// gets `base::limits::GROUP_SHARES` addresses' worth in all).
    pub max_handshakes_per_address: usize,
}

/// `[transport]` as written in the file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTransport {
    listen: Spanned<String>,
    ca_cert: Spanned<PathBuf>,
    cert: Spanned<PathBuf>,
    key: Spanned<PathBuf>,
    max_frame_bytes: Option<Spanned<usize>>,
    handshake_timeout_secs: Option<Spanned<u64>>,
    idle_timeout_secs: Option<Spanned<u64>>,
    crl: Option<Vec<Spanned<PathBuf>>>,
    allowed_probes: Option<Vec<Spanned<String>>>,
    max_connections: Option<Spanned<usize>>,
    max_handshakes: Option<Spanned<usize>>,
    max_handshakes_per_address: Option<Spanned<usize>>,
}

impl TransportConfig {
    /// Default frame limit ([`DEFAULT_MAX_FRAME`]), 10 s handshake, 120 s idle timeout,
    /// no CRL, any probe id, 1024 connections of which 256 in their handshake (16 per
    /// address).
    pub fn new(listen: SocketAddr, ca_cert: PathBuf, cert: PathBuf, key: PathBuf) -> Self {
        TransportConfig {
            listen,
            ca_cert,
            cert,
            key,
            max_frame_bytes: DEFAULT_MAX_FRAME,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            crls: Vec::new(),
            allowed_probes: None,
            max_connections: 1024,
            max_handshakes: 256,
            max_handshakes_per_address: 16,
        }
    }

    /// Validates `[transport]`: relative paths are resolved next to the file, and the
    /// certificates and key are loaded and must make a TLS server configuration, so a
    /// file `check-config` accepts is one `run` can serve with.
    pub fn from_section(raw: RawTransport, file: &ConfigFile) -> Result<Self, ConfigError> {
        let listen = file.value(&raw.listen, "transport.listen", "host:port")?;
        let mut paths = Vec::new();
        for (name, f) in [
            ("ca_cert", &raw.ca_cert),
            ("cert", &raw.cert),
            ("key", &raw.key),
        ] {
            let p = file.resolve(f.get_ref());
            let problem = match std::fs::metadata(&p) {
                Ok(m) if m.is_dir() => Some("is a directory, not a PEM file".to_string()),
                Ok(_) => std::fs::File::open(&p).err().map(|e| e.to_string()),
                Err(e) => Some(e.to_string()),
            };
            if let Some(problem) = problem {
                return Err(file.at(
                    f.span().start,
                    format!("transport.{name} {}: {problem}", p.display()),
                ));
            }
            paths.push(p);
        }
        let key = paths.pop().expect("three paths");
        let cert = paths.pop().expect("three paths");
        let ca = paths.pop().expect("three paths");
        let mut t = TransportConfig::new(listen, ca, cert, key);
        if let Some(v) = &raw.max_frame_bytes {
            t.max_frame_bytes =
                file.in_range(v, "transport.max_frame_bytes", 4096..=(256 << 20))?;
        }
        if let Some(v) = &raw.handshake_timeout_secs {
            let s = file.in_range(v, "transport.handshake_timeout_secs", 1..=3600)?;
            t.handshake_timeout = Duration::from_secs(s);
        }
        if let Some(v) = &raw.idle_timeout_secs {
            let s = file.in_range(v, "transport.idle_timeout_secs", 1..=86_400)?;
            t.idle_timeout = Duration::from_secs(s);
        }
        for c in raw.crl.iter().flatten() {
            let p = file.resolve(c.get_ref());
            if let Err(e) = tidegate_base::tls::load_crls(std::slice::from_ref(&p)) {
                return Err(file.at(c.span().start, format!("transport.crl: {e}")));
            }
            t.crls.push(p);
        }
        if let Some(ids) = &raw.allowed_probes {
            let mut list = Vec::new();
            for id in ids {
                if let Some(problem) = tidegate_wire::probe_id_problem(id.get_ref()) {
                    return Err(file.at(
                        id.span().start,
                        format!("transport.allowed_probes: {problem}"),
                    ));
                }
                list.push(id.get_ref().clone());
            }
            t.allowed_probes = Some(list);
        }
        if let Some(v) = &raw.max_connections {
            t.max_connections = file.in_range(v, "transport.max_connections", 1..=1_000_000)?;
        }
        if let Some(v) = &raw.max_handshakes {
            t.max_handshakes =
                file.in_range(v, "transport.max_handshakes", 1..=t.max_connections)?;
        }
        if let Some(v) = &raw.max_handshakes_per_address {
            t.max_handshakes_per_address = file.in_range(
                v,
                "transport.max_handshakes_per_address",
                1..=t.max_handshakes,
            )?;
        }
        t.max_handshakes = t.max_handshakes.min(t.max_connections);
        t.max_handshakes_per_address = t.max_handshakes_per_address.min(t.max_handshakes);
        if let Err(e) = super::server_tls_config(&t.ca_cert, &t.cert, &t.key, &t.crls) {
            use tidegate_base::tls::TlsError;
            let at = match &e {
                super::TransportError::Tls(TlsError::Pem { what, .. }) if what.contains("CA") => {
                    raw.ca_cert.span().start
                }
                super::TransportError::Tls(TlsError::Pem { what, .. }) if what.ends_with("key") => {
                    raw.key.span().start
                }
                _ => raw.cert.span().start,
            };
            return Err(file.at(at, format!("transport: {e}")));
        }
        Ok(t)
    }
}
