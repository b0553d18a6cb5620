//! Where things are: the repository, its scripts, the shared corpus, built binaries.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("testkit/ is inside the repository")
        .to_path_buf()
}

/// `scripts/<name>` of the repository.
pub fn script(name: &str) -> PathBuf {
    repo().join("scripts").join(name)
}

/// The shared corpus (`$TIDEGATE_CORPUS`, else `../shared/corpus` beside the repository).
/// Panics loudly when it is missing: CI has it, and a silently skipped corpus test proves
/// nothing.
pub fn corpus_dir() -> PathBuf {
    let dir = std::env::var_os("TIDEGATE_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("../shared/corpus"));
    assert!(
        dir.join("pcap").is_dir() && dir.join("truth").is_dir(),
        "corpus not found at {} (expected pcap/ and truth/ there; see the corpus README) — \
         the corpus tests cannot run without it",
        dir.display()
    );
    dir.canonicalize()
        .expect("canonicalize the corpus directory")
}

/// One corpus capture by file name (panics when absent).
pub fn corpus_pcap(name: &str) -> PathBuf {
    let p = corpus_dir().join("pcap").join(name);
    assert!(p.is_file(), "corpus capture {} is missing", p.display());
    p
}

/// The corpus captures of every tunnel kind the parser opens: GRE (PPTP's, carrying PPP),
/// VXLAN, GTP-U (IPv6 inside), 4in6 and 6in4.
pub const TUNNEL_CAPTURES: [&str; 5] = [
    "ndpi-gre.pcapng",
    "ndpi-vxlan.pcap",
    "ndpi-ipv6_in_gtp.pcap",
    "ndpi-4in6tunnel.pcap",
    "ndpi-6in4tunnel.pcap",
];

/// Every corpus capture (`.pcap`, `.pcapng`), sorted by name.
pub fn corpus_pcaps() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(corpus_dir().join("pcap"))
        .expect("read the corpus")
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "pcap" || e == "pcapng"))
        .collect();
    v.sort();
    v
}

/// The GeoLite2 database `scripts/geoip.sh` installs (idempotent; prints its path).
pub fn geolite() -> PathBuf {
    let out = Command::new(script("geoip.sh"))
        .output()
        .expect("run scripts/geoip.sh");
    assert!(
        out.status.success(),
        "scripts/geoip.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    assert!(
        path.is_file(),
        "scripts/geoip.sh printed {path:?}, which is not a file"
    );
    path
}

/// `$TIDEGATE_STATE/<name>` (or `<repo>/target/<name>`): where screenshots and reports of
/// a test go. Created if missing.
pub fn artifacts(name: &str) -> PathBuf {
    let base = std::env::var_os("TIDEGATE_STATE")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target"));
    let d = base.join(name);
    std::fs::create_dir_all(&d).expect("create the artifacts directory");
    d
}

/// A binary of this workspace, from the same build as the running test or benchmark
/// (`target/<profile>/<name>`). Panics with the command to build it when it is missing.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current executable");
    let mut dir = exe.parent().expect("executable directory").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let p = dir.join(name);
    assert!(
        p.is_file(),
        "{} is missing: build it first (cargo build -p {})",
        p.display(),
        name
    );
    p
}
