//! mTLS: the server configuration (client certificates required, issued by the
//! configured CA) and the identities a probe's certificate vouches for.

use std::{io, path::Path, sync::Arc};

use rustls::{RootCertStore, ServerConfig, server::WebPkiClientVerifier};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};

use super::TransportError;

fn pem_err(what: &'static str, path: &Path, reason: impl ToString) -> TransportError {
    TransportError::Pem {
        what,
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// Reads every certificate of a PEM file (at least one).
fn load_certs(
    what: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TransportError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_err(what, path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_err(what, path, e))?;
    if certs.is_empty() {
        return Err(pem_err(what, path, "no CERTIFICATE block found"));
    }
    Ok(certs)
}

/// Builds the server's TLS configuration: its own chain and key, and a verifier that
/// requires a client certificate chaining to a CA in `ca`.
pub fn server_tls_config(
    ca: &Path,
    cert: &Path,
    key: &Path,
) -> Result<Arc<ServerConfig>, TransportError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for c in load_certs("CA certificate", ca)? {
        roots.add(c).map_err(|e| pem_err("CA certificate", ca, e))?;
    }
    let chain = load_certs("collector certificate", cert)?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| pem_err("collector key", key, e))?;
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| TransportError::Tls(format!("client verifier: {e}")))?;
    let cfg = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TransportError::Tls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| TransportError::Tls(format!("collector certificate and key: {e}")))?;
    Ok(Arc::new(cfg))
}

/// The names a (verified) end-entity certificate vouches for: its subject common
/// names and its DNS subject alternative names. Unparseable certificates vouch for
/// nothing.
pub fn peer_identities(cert_der: &[u8]) -> Vec<String> {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(cert_der) else {
        return Vec::new();
    };
    let mut ids: Vec<String> = cert
        .subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok().map(str::to_owned))
        .collect();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(d) = n {
                ids.push((*d).to_owned());
            }
        }
    }
    ids
}

/// A metrics/log label for a failed TLS handshake.
pub(crate) fn handshake_failure_reason(e: &io::Error) -> &'static str {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(rustls::Error::NoCertificatesPresented) => "no_client_cert",
        Some(rustls::Error::InvalidCertificate(_)) => "bad_client_cert",
        Some(_) => "tls_error",
        None if e.kind() == io::ErrorKind::UnexpectedEof => "tls_eof",
        None => "tls_io",
    }
}
