//! TLS for both ends, from PEM files: the collector's mTLS server (probes must present a
//! certificate from the configured CA), the probe's mTLS client, and a plain client that
//! trusts a CA file or the system store (the webhook). rustls with the ring provider.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::{ClientConfig, RootCertStore, ServerConfig, server::WebPkiClientVerifier};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject};

/// System trust store used when no CA file is configured.
pub const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file is missing, unreadable or holds nothing usable.
    #[error("{what} {path}: {reason}")]
    Pem {
        /// What the file should hold ("CA certificate", "probe key", ...).
        what: String,
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The parts do not make a configuration (e.g. a key that does not match its
    /// certificate).
    #[error("TLS: {0}")]
    Config(String),
}

fn pem_err(what: &str, path: &Path, reason: impl ToString) -> TlsError {
    TlsError::Pem {
        what: what.to_string(),
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

fn check_file(what: &str, path: &Path) -> Result<(), TlsError> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => Err(pem_err(what, path, "is a directory, not a PEM file")),
        Ok(_) => Ok(()),
        Err(e) => Err(pem_err(what, path, e)),
    }
}

/// Every certificate of a PEM file (at least one).
pub fn load_certs(what: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    check_file(what, path)?;
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_err(what, path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_err(what, path, e))?;
    if certs.is_empty() {
        return Err(pem_err(what, path, "no CERTIFICATE block found"));
    }
    Ok(certs)
}

/// The private key of a PEM file.
pub fn load_key(what: &str, path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    check_file(what, path)?;
    PrivateKeyDer::from_pem_file(path).map_err(|e| pem_err(what, path, e))
}

/// A root store holding every certificate of a CA file.
pub fn load_roots(what: &str, path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for c in load_certs(what, path)? {
        roots.add(c).map_err(|e| pem_err(what, path, e))?;
    }
    Ok(roots)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// PEM files of one end of a mutually authenticated connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MtlsFiles {
    /// CA certificate(s) the peer's certificate must chain to.
    pub ca: PathBuf,
    /// This end's certificate chain.
    pub cert: PathBuf,
    /// This end's private key.
    pub key: PathBuf,
    /// PEM files of certificate revocation lists issued by the CA (server side): a peer
    /// whose certificate one of them revokes is refused.
    pub crls: Vec<PathBuf>,
}

/// Every CRL of the PEM files `paths` (each must hold at least one).
pub fn load_crls(
    paths: &[PathBuf],
) -> Result<Vec<rustls_pki_types::CertificateRevocationListDer<'static>>, TlsError> {
    use rustls_pki_types::CertificateRevocationListDer;
    let mut all = Vec::new();
    for p in paths {
        check_file("CRL", p)?;
        let crls = CertificateRevocationListDer::pem_file_iter(p)
            .map_err(|e| pem_err("CRL", p, e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| pem_err("CRL", p, e))?;
        if crls.is_empty() {
            return Err(pem_err("CRL", p, "no X509 CRL block found"));
        }
        all.extend(crls);
    }
    Ok(all)
}

impl MtlsFiles {
    /// The trusted CA, this end's chain and its key; `role` names this end in errors.
    #[allow(clippy::type_complexity)]
    fn load(
        &self,
        role: &str,
    ) -> Result<
        (
            RootCertStore,
            Vec<CertificateDer<'static>>,
            PrivateKeyDer<'static>,
        ),
        TlsError,
    > {
        Ok((
            load_roots("CA certificate", &self.ca)?,
            load_certs(&format!("{role} certificate"), &self.cert)?,
            load_key(&format!("{role} key"), &self.key)?,
        ))
    }

    /// The server side: its own chain and key, and a verifier that requires a client
    /// certificate chaining to a CA in `ca`. `role` names this end in errors.
    pub fn server_config(&self, role: &str) -> Result<Arc<ServerConfig>, TlsError> {
        let (roots, chain, key) = self.load(role)?;
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
            .with_crls(load_crls(&self.crls)?)
            .build()
            .map_err(|e| TlsError::Config(format!("client verifier: {e}")))?;
        let cfg = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .map_err(|e| TlsError::Config(format!("{role} certificate and key: {e}")))?;
        Ok(Arc::new(cfg))
    }

    /// The client side: trust the server's CA, present this end's certificate.
    pub fn client_config(&self, role: &str) -> Result<Arc<ClientConfig>, TlsError> {
        let (roots, chain, key) = self.load(role)?;
        let cfg = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(|e| TlsError::Config(format!("{role} certificate and key: {e}")))?;
        Ok(Arc::new(cfg))
    }
}

/// A server that asks clients for no certificate (browsers, webhook receivers): its own
/// chain and key from PEM files; `role` names it in errors.
pub fn server_config(cert: &Path, key: &Path, role: &str) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = load_certs(&format!("{role} certificate"), cert)?;
    let key = load_key(&format!("{role} key"), key)?;
    let cfg = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Config(format!("{role} certificate and key: {e}")))?;
    Ok(Arc::new(cfg))
}

/// A client without a certificate of its own that trusts `ca_file`, or the system store
/// when none is given. With `required` (an `https` URL), an unreadable or empty trust
/// store is an error; otherwise (plain `http`) it only means TLS will not be used.
pub fn trusting_client_config(
    ca_file: Option<&Path>,
    required: bool,
) -> Result<ClientConfig, TlsError> {
    let path = ca_file.unwrap_or(Path::new(SYSTEM_CA_BUNDLE));
    let mut roots = RootCertStore::empty();
    if ca_file.is_some() {
        check_file("CA certificate", path)?;
    }
    match CertificateDer::pem_file_iter(path) {
        Ok(certs) => {
            for c in certs {
                let c = c.map_err(|e| pem_err("CA certificate", path, e))?;
                // The system bundle holds a few certificates rustls cannot use; skip them.
                if roots.add(c).is_err() && ca_file.is_some() {
                    return Err(pem_err(
                        "CA certificate",
                        path,
                        "a certificate is not usable",
                    ));
                }
            }
        }
        Err(e) if required || ca_file.is_some() => return Err(pem_err("CA certificate", path, e)),
        Err(_) => {}
    }
    if required && roots.is_empty() {
        return Err(pem_err("CA certificate", path, "no CA certificate"));
    }
    Ok(ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
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

/// The name the server's certificate must carry: `explicit` if given, else the host part
/// of `addr` (a DNS name or an IP address).
pub fn server_name(addr: &str, explicit: Option<&str>) -> Result<ServerName<'static>, String> {
    let name = match explicit {
        Some(n) => n,
        None => split_host_port(addr)?.0,
    };
    ServerName::try_from(name.to_owned()).map_err(|e| format!("{name:?}: {e}"))
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

    #[test]
    fn missing_empty_and_directory_files_are_named() {
        let d = tempfile::tempdir().unwrap();
        let e = load_certs("CA certificate", d.path())
            .unwrap_err()
            .to_string();
        assert!(e.contains("is a directory"), "{e}");
        let empty = d.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let e = load_certs("CA certificate", &empty)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no CERTIFICATE block"), "{e}");
        let e = load_key("probe key", &d.path().join("nope.key"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("probe key "), "{e}");
        let e = trusting_client_config(Some(d.path()), true)
            .unwrap_err()
            .to_string();
        assert!(e.contains("is a directory"), "{e}");
    }
}
