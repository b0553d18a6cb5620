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
