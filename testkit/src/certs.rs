//! Certificates for a test: a CA, the collector's and one per probe (the collector's
//! `gen-certs` code).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use tidegate_collector::certs::{
    CertPaths, GenCertsOptions, ca_paths, collector_paths, generate, probe_paths,
};
use tidegate_collector::transport::TransportConfig;

/// A quick-start certificate directory.
#[derive(Clone, Debug)]
pub struct Certs {
    /// The directory.
    pub dir: PathBuf,
}

impl Certs {
    /// Generates a CA, a collector certificate and one per probe id into `dir`.
    pub fn generate(dir: &Path, probes: &[&str]) -> Certs {
        generate(&GenCertsOptions {
            out: dir.to_path_buf(),
            probes: probes.iter().map(|p| p.to_string()).collect(),
            ..Default::default()
        })
        .expect("generate certificates");
        Certs {
            dir: dir.to_path_buf(),
        }
    }

    /// CA files.
    pub fn ca(&self) -> CertPaths {
        ca_paths(&self.dir)
    }

    /// Collector files.
    pub fn collector(&self) -> CertPaths {
        collector_paths(&self.dir)
    }

    /// A probe's files.
    pub fn probe(&self, id: &str) -> CertPaths {
        probe_paths(&self.dir, id)
    }

    /// A client certificate signed by this directory's CA for any common name — also
    /// names `gen-certs` refuses (a hostile peer's certificate from a careless CA).
    /// Written as `hostile-<n>.pem/.key`.
    pub fn issue_any(&self, cn: &str, n: u32) -> CertPaths {
        use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair};
        let ca = self.ca();
        let ca_key = KeyPair::from_pem(&std::fs::read_to_string(&ca.key).unwrap()).unwrap();
        let issuer =
            Issuer::from_ca_cert_pem(&std::fs::read_to_string(&ca.cert).unwrap(), ca_key).unwrap();
        let mut p = CertificateParams::default();
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        p.use_authority_key_identifier_extension = true;
        let now = time::OffsetDateTime::now_utc();
        p.not_before = now - time::Duration::days(1);
        p.not_after = now + time::Duration::days(30);
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &issuer).unwrap();
        let paths = CertPaths {
            cert: self.dir.join(format!("hostile-{n}.pem")),
            key: self.dir.join(format!("hostile-{n}.key")),
        };
        std::fs::write(&paths.cert, cert.pem()).unwrap();
        std::fs::write(&paths.key, key.serialize_pem()).unwrap();
        paths
    }

    /// A transport configuration for 127.0.0.1:`port`.
    pub fn transport_config(&self, port: u16) -> TransportConfig {
        let c = self.collector();
        TransportConfig::new(
            SocketAddr::from(([127, 0, 0, 1], port)),
            self.ca().cert,
            c.cert,
            c.key,
        )
    }
}
