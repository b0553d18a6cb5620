//! Quick-start certificates: a private CA, the collector's server certificate and one
//! client certificate per probe (CN = probe id), as PEM files. Keys are written with mode
//! 0600. Production deployments use their own PKI; the transport only needs a CA file and
//! certificates whose CN (or a DNS SAN) is the probe id.
//!
//! Files in the output directory:
//! - `ca.pem`, `ca.key` — the CA (reused when both already exist, so more probes can be
//!   added later);
//! - `collector.pem`, `collector.key` — SANs `localhost`, `127.0.0.1`, `::1` plus the
//!   given names and addresses;
//! - `probe-<id>.pem`, `probe-<id>.key` for each probe.
//!
//! Existing files are kept unless `force` is set.
//!
//! [`revoke`] adds probes' certificates to `crl.pem` (a CRL signed by the CA), which the
//! collector reads with `[transport] crl = ["crl.pem"]`: a revoked probe is refused at
//! the TLS handshake.

use std::{
    fs,
    io::Write,
    net::IpAddr,
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

/// A certificate generation problem.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// A file or directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A probe id cannot be used as a certificate name and file name.
    #[error(
        "probe id {0:?} is not usable: use 1 to 64 characters from A-Z a-z 0-9 . _ - (not starting with . or -)"
    )]
    BadProbeId(String),
    /// A collector DNS name is not valid.
    #[error("collector name {0:?} is not a valid DNS name")]
    BadName(String),
    /// Only one of `ca.pem` / `ca.key` exists.
    #[error("{dir}: found only one of ca.pem and ca.key; remove it or supply both")]
    HalfCa {
        /// The output directory.
        dir: PathBuf,
    },
    /// rcgen failed (bad existing CA files, signing error).
    #[error("{what}: {source}")]
    Rcgen {
        /// What was being done.
        what: String,
        /// rcgen's error.
        #[source]
        source: rcgen::Error,
    },
}

/// What to generate.
#[derive(Clone, Debug, Default)]
pub struct GenCertsOptions {
    /// Output directory (created if missing).
    pub out: PathBuf,
    /// Probe ids, one client certificate each.
    pub probes: Vec<String>,
    /// Extra DNS names for the collector certificate.
    pub collector_names: Vec<String>,
    /// Extra IP addresses for the collector certificate.
    pub collector_ips: Vec<IpAddr>,
    /// Overwrite existing files (including the CA).
    pub force: bool,
}

/// What [`generate`] did.
#[derive(Clone, Debug, Default)]
pub struct GeneratedCerts {
    /// Files written.
    pub written: Vec<PathBuf>,
    /// Files that existed and were kept.
    pub kept: Vec<PathBuf>,
}

/// Paths of one certificate + key pair.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertPaths {
    /// PEM certificate.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// The CA files in `dir`.
pub fn ca_paths(dir: &Path) -> CertPaths {
    CertPaths {
        cert: dir.join("ca.pem"),
        key: dir.join("ca.key"),
    }
}

/// The collector's files in `dir`.
pub fn collector_paths(dir: &Path) -> CertPaths {
    CertPaths {
        cert: dir.join("collector.pem"),
        key: dir.join("collector.key"),
    }
}

/// A probe's files in `dir`.
pub fn probe_paths(dir: &Path, probe_id: &str) -> CertPaths {
    CertPaths {
        cert: dir.join(format!("probe-{probe_id}.pem")),
        key: dir.join(format!("probe-{probe_id}.key")),
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CertError + '_ {
    move |source| CertError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn rc(what: impl Into<String>) -> impl FnOnce(rcgen::Error) -> CertError {
    let what = what.into();
    move |source| CertError::Rcgen { what, source }
}

fn valid_probe_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && !id.starts_with(['.', '-'])
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Writes `data` to `path` with `mode` (also when the file existed with another mode).
fn write_file(path: &Path, data: &str, mode: u32) -> Result<(), CertError> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(io_err(path))?;
    f.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(io_err(path))?;
    f.write_all(data.as_bytes()).map_err(io_err(path))?;
    f.sync_all().map_err(io_err(path))
}

fn validity(days: i64) -> (OffsetDateTime, OffsetDateTime) {
    let now = OffsetDateTime::now_utc();
    (now - Duration::days(1), now + Duration::days(days))
}

fn leaf_params(cn: &str, sans: Vec<SanType>, eku: ExtendedKeyUsagePurpose) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.subject_alt_names = sans;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![eku];
    p.use_authority_key_identifier_extension = true;
    (p.not_before, p.not_after) = validity(5 * 365);
    p
}

/// Writes a certificate + key pair unless both exist (and `force` is off).
fn emit(
    paths: &CertPaths,
    force: bool,
    done: &mut GeneratedCerts,
    make: impl FnOnce() -> Result<(String, String), CertError>,
) -> Result<(), CertError> {
    if !force && paths.cert.exists() && paths.key.exists() {
        done.kept.push(paths.cert.clone());
        done.kept.push(paths.key.clone());
        return Ok(());
    }
    let (cert, key) = make()?;
    write_file(&paths.key, &key, 0o600)?;
    write_file(&paths.cert, &cert, 0o644)?;
    done.written.push(paths.cert.clone());
    done.written.push(paths.key.clone());
    Ok(())
}

/// Loads the CA in `dir`, or creates it.
fn ca(
    dir: &Path,
    force: bool,
    done: &mut GeneratedCerts,
) -> Result<Issuer<'static, KeyPair>, CertError> {
    let paths = ca_paths(dir);
    match (paths.cert.exists(), paths.key.exists()) {
        (true, true) if !force => {
            let cert = fs::read_to_string(&paths.cert).map_err(io_err(&paths.cert))?;
            let key = fs::read_to_string(&paths.key).map_err(io_err(&paths.key))?;
            let key = KeyPair::from_pem(&key).map_err(rc(format!("{}", paths.key.display())))?;
            let issuer = Issuer::from_ca_cert_pem(&cert, key)
                .map_err(rc(format!("{}", paths.cert.display())))?;
            done.kept.push(paths.cert);
            done.kept.push(paths.key);
            return Ok(issuer);
        }
        (true, false) | (false, true) if !force => {
            return Err(CertError::HalfCa {
                dir: dir.to_path_buf(),
            });
        }
        _ => {}
    }
    let mut p = CertificateParams::default();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, "tidegate CA");
    p.distinguished_name
        .push(DnType::OrganizationName, "tidegate quick start");
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    (p.not_before, p.not_after) = validity(10 * 365);
    let key = KeyPair::generate().map_err(rc("generating the CA key"))?;
    let cert = p.self_signed(&key).map_err(rc("signing the CA"))?;
    write_file(&paths.key, &key.serialize_pem(), 0o600)?;
    write_file(&paths.cert, &cert.pem(), 0o644)?;
    done.written.push(paths.cert);
    done.written.push(paths.key);
    Ok(Issuer::new(p, key))
}

/// The CRL file of a quick-start directory.
pub fn crl_path(dir: &Path) -> PathBuf {
    dir.join("crl.pem")
}

/// Adds the current certificates of `probes` in `dir` to `dir/crl.pem` (keeping what it
/// already revokes), signed by the CA in `dir` and valid for 30 days. Returns the CRL's
/// path and the serial numbers it revokes (hex).
pub fn revoke(dir: &Path, probes: &[String]) -> Result<(PathBuf, Vec<String>), CertError> {
    use rcgen::{CertificateRevocationListParams, KeyIdMethod, RevokedCertParams, SerialNumber};
    let paths = ca_paths(dir);
    if !(paths.cert.exists() && paths.key.exists()) {
        return Err(CertError::HalfCa {
            dir: dir.to_path_buf(),
        });
    }
    let mut done = GeneratedCerts::default();
    let issuer = ca(dir, false, &mut done)?;
    let crl = crl_path(dir);
    let now = OffsetDateTime::now_utc();
    let mut revoked: Vec<RevokedCertParams> = Vec::new();
    let mut number: u64 = 1;
    if crl.exists() {
        let pem = fs::read(&crl).map_err(io_err(&crl))?;
        let (_, block) = x509_parser::pem::parse_x509_pem(&pem).map_err(|e| CertError::Io {
            path: crl.clone(),
            source: std::io::Error::other(format!("not a PEM CRL: {e}")),
        })?;
        let (_, old) = x509_parser::parse_x509_crl(&block.contents).map_err(|e| CertError::Io {
            path: crl.clone(),
            source: std::io::Error::other(format!("not a CRL: {e}")),
        })?;
        if let Some(n) = old.crl_number() {
            number = u64::try_from(n).unwrap_or(u64::MAX - 1) + 1;
        }
        for r in old.iter_revoked_certificates() {
            revoked.push(RevokedCertParams {
                serial_number: SerialNumber::from_slice(r.raw_serial()),
                revocation_time: r.revocation_date.to_datetime(),
                reason_code: None,
                invalidity_date: None,
            });
        }
    }
    let mut serials = Vec::new();
    for id in probes {
        if !valid_probe_id(id) {
            return Err(CertError::BadProbeId(id.clone()));
        }
        let p = probe_paths(dir, id).cert;
        let pem = fs::read(&p).map_err(io_err(&p))?;
        let bad = |e: String| CertError::Io {
            path: p.clone(),
            source: std::io::Error::other(e),
        };
        let (_, block) = x509_parser::pem::parse_x509_pem(&pem).map_err(|e| bad(e.to_string()))?;
        let cert = block.parse_x509().map_err(|e| bad(e.to_string()))?;
        let raw = cert.raw_serial();
        serials.push(raw.iter().map(|b| format!("{b:02x}")).collect::<String>());
        if !revoked.iter().any(|r| r.serial_number.as_ref() == raw) {
            revoked.push(RevokedCertParams {
                serial_number: SerialNumber::from_slice(raw),
                revocation_time: now,
                reason_code: None,
                invalidity_date: None,
            });
        }
    }
    let params = CertificateRevocationListParams {
        this_update: now - Duration::minutes(5),
        next_update: now + Duration::days(30),
        crl_number: SerialNumber::from(number),
        issuing_distribution_point: None,
        revoked_certs: revoked,
        key_identifier_method: KeyIdMethod::Sha256,
    };
    let signed = params.signed_by(&issuer).map_err(rc("signing the CRL"))?;
    write_file(&crl, &signed.pem().map_err(rc("encoding the CRL"))?, 0o644)?;
    Ok((crl, serials))
}

/// Generates (or completes) a quick-start certificate directory.
pub fn generate(opts: &GenCertsOptions) -> Result<GeneratedCerts, CertError> {
    for id in &opts.probes {
        if !valid_probe_id(id) {
            return Err(CertError::BadProbeId(id.clone()));
        }
    }
    let mut sans = vec![
        SanType::DnsName(
            "localhost"
                .try_into()
                .map_err(|_| CertError::BadName("localhost".into()))?,
        ),
        SanType::IpAddress(IpAddr::from([127, 0, 0, 1])),
        SanType::IpAddress(IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1])),
    ];
    for n in &opts.collector_names {
        let dns = n
            .as_str()
            .try_into()
            .ok()
            .filter(|_| !n.is_empty() && n.parse::<IpAddr>().is_err())
            .ok_or_else(|| CertError::BadName(n.clone()))?;
        sans.push(SanType::DnsName(dns));
    }
    sans.extend(opts.collector_ips.iter().copied().map(SanType::IpAddress));

    fs::create_dir_all(&opts.out).map_err(io_err(&opts.out))?;
    // Readable by the services that use the files, writable by no one else, whatever
    // the umask (the keys in it are 0600 on their own).
    tidegate_base::durable::not_writable_by_others(&opts.out).map_err(io_err(&opts.out))?;
    let mut done = GeneratedCerts::default();
    let issuer = ca(&opts.out, opts.force, &mut done)?;

    let cn = opts
        .collector_names
        .first()
        .cloned()
        .unwrap_or_else(|| "tidegate-collector".into());
    emit(&collector_paths(&opts.out), opts.force, &mut done, || {
        let key = KeyPair::generate().map_err(rc("generating the collector key"))?;
        let cert = leaf_params(&cn, sans, ExtendedKeyUsagePurpose::ServerAuth)
            .signed_by(&key, &issuer)
            .map_err(rc("signing the collector certificate"))?;
        Ok((cert.pem(), key.serialize_pem()))
    })?;
    for id in &opts.probes {
        emit(&probe_paths(&opts.out, id), opts.force, &mut done, || {
            let key = KeyPair::generate().map_err(rc(format!("generating the key of {id}")))?;
            let cert = leaf_params(id, Vec::new(), ExtendedKeyUsagePurpose::ClientAuth)
                .signed_by(&key, &issuer)
                .map_err(rc(format!("signing the certificate of {id}")))?;
            Ok((cert.pem(), key.serialize_pem()))
        })?;
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::peer_identities;
    use rustls_pki_types::{CertificateDer, pem::PemObject};

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn generates_a_usable_directory_and_completes_it_later() {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = GenCertsOptions {
            out: dir.path().join("certs"),
            probes: vec!["edge-1".into()],
            collector_names: vec!["collector.example".into()],
            collector_ips: vec!["192.0.2.7".parse().unwrap()],
            force: false,
        };
        let done = generate(&opts).unwrap();
        assert_eq!(done.written.len(), 6, "{done:?}");
        for p in [
            ca_paths(&opts.out),
            collector_paths(&opts.out),
            probe_paths(&opts.out, "edge-1"),
        ] {
            assert_eq!(mode(&p.key), 0o600, "{}", p.key.display());
            assert_eq!(mode(&p.cert), 0o644, "{}", p.cert.display());
        }
        let probe = CertificateDer::from_pem_file(probe_paths(&opts.out, "edge-1").cert).unwrap();
        assert_eq!(peer_identities(&probe), vec!["edge-1".to_string()]);
        let coll = CertificateDer::from_pem_file(collector_paths(&opts.out).cert).unwrap();
        assert_eq!(
            peer_identities(&coll),
            vec!["collector.example", "localhost", "collector.example"]
        );
        // The TLS configuration accepts the generated files.
        let ca = ca_paths(&opts.out);
        let c = collector_paths(&opts.out);
        crate::transport::server_tls_config(&ca.cert, &c.cert, &c.key, &[]).unwrap();

        // A second run adds a probe and keeps the CA and everything else.
        let ca_before = fs::read(&ca.cert).unwrap();
        opts.probes.push("edge-2".into());
        let done = generate(&opts).unwrap();
        assert_eq!(
            done.written,
            vec![
                probe_paths(&opts.out, "edge-2").cert,
                probe_paths(&opts.out, "edge-2").key
            ]
        );
        assert_eq!(fs::read(&ca.cert).unwrap(), ca_before);
    }

    #[test]
    fn bad_names_are_refused_before_writing() {
        let dir = tempfile::tempdir().unwrap();
        for bad in ["", "../x", "a/b", "-x", &"x".repeat(65)] {
            let opts = GenCertsOptions {
                out: dir.path().join("c"),
                probes: vec![bad.into()],
                ..Default::default()
            };
            assert!(
                matches!(generate(&opts), Err(CertError::BadProbeId(_))),
                "{bad:?}"
            );
        }
        assert!(!dir.path().join("c").exists());
        fs::create_dir(dir.path().join("half")).unwrap();
        fs::write(dir.path().join("half/ca.pem"), "x").unwrap();
        let opts = GenCertsOptions {
            out: dir.path().join("half"),
            ..Default::default()
        };
        assert!(matches!(generate(&opts), Err(CertError::HalfCa { .. })));
    }
}
