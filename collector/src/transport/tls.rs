//! mTLS: the server configuration (client certificates required, issued by the
//! configured CA) and the identities a probe's certificate vouches for.

use std::{
    io,
    path::{Path, PathBuf},
    sync::Arc,
};

use super::TransportError;

/// Builds the server's TLS configuration: its own chain and key, and a verifier that
/// requires a client certificate chaining to a CA in `ca` and not revoked by `crls`.
pub fn server_tls_config(
    ca: &Path,
    cert: &Path,
    key: &Path,
    crls: &[PathBuf],
) -> Result<Arc<rustls::ServerConfig>, TransportError> {
    let files = tidegate_base::tls::MtlsFiles {
        ca: ca.to_path_buf(),
        cert: cert.to_path_buf(),
        key: key.to_path_buf(),
        crls: crls.to_vec(),
    };
    Ok(files.server_config("collector")?)
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
        Some(rustls::Error::InvalidCertificate(rustls::CertificateError::Revoked)) => {
            "revoked_client_cert"
        }
        Some(rustls::Error::InvalidCertificate(_)) => "bad_client_cert",
        Some(_) => "tls_error",
        None if e.kind() == io::ErrorKind::UnexpectedEof => "tls_eof",
        None => "tls_io",
    }
}
