//! The probe's TLS client configuration: trust the collector's CA, present the probe's
//! certificate.

use std::{path::Path, sync::Arc};

use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject};

use super::CollectorError;

fn pem_err(what: &'static str, path: &Path, reason: impl ToString) -> CollectorError {
    CollectorError::Pem {
        what,
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

fn load_certs(
    what: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, CollectorError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_err(what, path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_err(what, path, e))?;
    if certs.is_empty() {
        return Err(pem_err(what, path, "no CERTIFICATE block found"));
    }
    Ok(certs)
}

/// Builds the client configuration from PEM files.
pub(crate) fn client_config(
    ca: &Path,
    cert: &Path,
    key: &Path,
) -> Result<Arc<ClientConfig>, CollectorError> {
    let mut roots = RootCertStore::empty();
    for c in load_certs("CA certificate", ca)? {
        roots.add(c).map_err(|e| pem_err("CA certificate", ca, e))?;
    }
    let chain = load_certs("probe certificate", cert)?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| pem_err("probe key", key, e))?;
    let cfg =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| CollectorError::Tls(e.to_string()))?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(|e| CollectorError::Tls(format!("probe certificate and key: {e}")))?;
    Ok(Arc::new(cfg))
}

/// Splits `HOST:PORT` (`[v6]:PORT` for IPv6 literals) and checks both parts; the
/// error says what is wrong with the address.
pub fn split_host_port(addr: &str) -> Result<(&str, u16), String> {
    let bad = |reason: &str| format!("{addr:?}: {reason} (expected HOST:PORT)");
    let (host, port) = addr.rsplit_once(':').ok_or_else(|| bad("no port"))?;
    let host = match host.strip_prefix('[') {
        Some(h) => h.strip_suffix(']').ok_or_else(|| bad("unclosed ["))?,
        None if host.contains(':') => return Err(bad("IPv6 addresses need brackets")),
        None => host,
    };
    if host.is_empty() {
        return Err(bad("empty host"));
    }
    let port: u16 = port.parse().map_err(|_| bad("port is not a number"))?;
    if port == 0 {
        return Err(bad("port 0"));
    }
    Ok((host, port))
}

/// The name the collector's certificate must carry: `server_name` if given, else the
/// host part of the address (DNS name or IP address).
pub(crate) fn server_name(
    addr: &str,
    server_name: Option<&str>,
) -> Result<ServerName<'static>, CollectorError> {
    let name = match server_name {
        Some(n) => n,
        None => {
            split_host_port(addr)
                .map_err(|reason| CollectorError::Option {
                    what: "collector address",
                    reason,
                })?
                .0
        }
    };
    ServerName::try_from(name.to_owned()).map_err(|e| CollectorError::Option {
        what: "collector server name",
        reason: format!("{name:?}: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_names() {
        assert_eq!(
            split_host_port("c.example:7443").unwrap(),
            ("c.example", 7443)
        );
        assert_eq!(split_host_port("[::1]:7443").unwrap(), ("::1", 7443));
        assert_eq!(split_host_port("127.0.0.1:1").unwrap(), ("127.0.0.1", 1));
        for bad in ["c.example", "::1:7443", ":7443", "h:0", "h:x", "[::1:7443"] {
            let e = split_host_port(bad).unwrap_err();
            assert!(e.contains("expected HOST:PORT"), "{bad}: {e}");
        }
        assert!(matches!(
            server_name("127.0.0.1:9", None).unwrap(),
            ServerName::IpAddress(_)
        ));
        assert!(matches!(
            server_name("10.0.0.1:9", Some("collector.example")).unwrap(),
            ServerName::DnsName(_)
        ));
    }
}
