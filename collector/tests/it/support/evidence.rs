//! The evidence log's signing key, made as an operator makes it.

use std::path::{Path, PathBuf};
use std::process::Command;

/// `tidegate-collector evidence keygen` into `dir`; returns the private key's path.
pub fn keygen(dir: &Path) -> PathBuf {
    let key = dir.join("evidence.key");
    let out = Command::new(env!("CARGO_BIN_EXE_tidegate-collector"))
        .args(["evidence", "keygen", "--out"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    key
}
