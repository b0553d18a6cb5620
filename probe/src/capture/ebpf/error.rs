//! Errors of the eBPF backend.

use std::io;

/// What can go wrong loading, attaching or draining the kernel programs.
#[derive(Debug, thiserror::Error)]
pub enum EbpfError {
    /// The process lacks CAP_BPF/CAP_NET_ADMIN (or is not root).
    #[error(
        "missing privileges to load eBPF programs ({0}); run as root or grant CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON"
    )]
    Privileges(String),
    /// The kernel refused the object (verifier, BTF, map creation).
    #[error("the kernel rejected tidegate's eBPF programs: {0}")]
    Load(String),
    /// No interface with this name exists (in this network namespace).
    #[error("unknown interface {0:?}")]
    UnknownInterface(String),
    /// Attaching a program to an interface failed.
    #[error("cannot attach {program} to {iface}: {reason}")]
    Attach {
        /// Program name.
        program: &'static str,
        /// Interface name.
        iface: String,
        /// Kernel's answer.
        reason: String,
    },
    /// The operating system's random generator failed (the flow table's hash secret).
    #[error("cannot draw the flow table's hash secret from the system's random generator: {0}")]
    Random(String),
    /// A map operation failed.
    #[error("eBPF map {map}: {source}")]
    Map {
        /// Map name.
        map: &'static str,
        /// Underlying error.
        #[source]
        source: io::Error,
    },
}

impl EbpfError {
    /// Classifies a load-time error: EPERM/EACCES mean missing privileges.
    pub(crate) fn from_load(e: impl std::fmt::Display + std::fmt::Debug) -> Self {
        let text = format!("{e:#}");
        let dbg = format!("{e:?}");
        if dbg.contains("PermissionDenied")
            || dbg.contains("code: 1,")
            || text.contains("Operation not permitted")
        {
            EbpfError::Privileges(text)
        } else {
            EbpfError::Load(text)
        }
    }
}
