//! The probe's TLS client: trust the collector's CA, present the probe's certificate
//! (built by the shared `tidegate_base::tls`), and the name the collector must prove.

use std::{path::Path, sync::Arc};

use rustls::ClientConfig;
use rustls_pki_types::ServerName;

use super::CollectorError;

pub use tidegate_base::tls::split_host_port;

/// Builds the client configuration from PEM files.
pub(crate) fn client_config(
    ca: &Path,
    cert: &Path,
    key: &Path,
) -> Result<Arc<ClientConfig>, CollectorError> {
    let files = tidegate_base::tls::MtlsFiles {
        ca: ca.to_path_buf(),
        cert: cert.to_path_buf(),
        key: key.to_path_buf(),
        crls: Vec::new(),
    };
    Ok(files.client_config("probe")?)
}

/// The name the collector's certificate must carry: `server_name` if given, else the
/// host part of the address (DNS name or IP address).
pub(crate) fn server_name(
    addr: &str,
    server_name: Option<&str>,
) -> Result<ServerName<'static>, CollectorError> {
    tidegate_base::tls::server_name(addr, server_name).map_err(|reason| CollectorError::Option {
        what: if server_name.is_some() {
            "collector server name"
        } else {
            "collector address"
        },
        reason,
    })
}
