//! Builds the kernel programs (`ebpf/`) for `bpfel-unknown-none` with Debian's rustc
//! (LLVM 22) and bpf-linker, and hands the object to the probe via `OUT_DIR`.
//!
//! The host toolchain (rustup stable) cannot build `core` for the BPF target; Debian's
//! `rustc-web` ships a prebuilt one. `scripts/setup.sh` installs everything needed.

use std::{
    env,
    path::{Path, PathBuf},
    process::{Command, exit},
};

const SETUP_HINT: &str = "run `scripts/setup.sh` as root (installs Debian's rustc-web with the BPF core library and bpf-linker) and build again";

fn fail(msg: &str) -> ! {
    println!("cargo::error=tidegate-probe: {msg}; {SETUP_HINT}.");
    eprintln!("error: tidegate-probe: {msg}; {SETUP_HINT}.");
    exit(1);
}

fn find_in_path(bin: &str, extra: &[PathBuf]) -> Option<PathBuf> {
    let path = env::var_os("PATH").unwrap_or_default();
    env::split_paths(&path)
        .chain(extra.iter().cloned())
        .map(|d| d.join(bin))
        .find(|p| p.is_file())
}

fn rerun_dir(dir: &Path) {
    println!("cargo::rerun-if-changed={}", dir.display());
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                rerun_dir(&p);
            } else {
                println!("cargo::rerun-if-changed={}", p.display());
            }
        }
    }
}

fn main() {
    let manifest =
        PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest
        .parent()
        .expect("probe/ sits in the workspace")
        .to_path_buf();
    let ebpf = root.join("ebpf");
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    for p in ["src", "Cargo.toml", "Cargo.lock", ".cargo"] {
        rerun_dir(&ebpf.join(p));
    }
    rerun_dir(&root.join("common").join("src"));
    rerun_dir(&root.join("common").join("Cargo.toml"));
    println!("cargo::rerun-if-env-changed=TIDEGATE_EBPF_TARGET_DIR");

    let rustc = PathBuf::from("/usr/bin/rustc");
    let cargo = PathBuf::from("/usr/bin/cargo");
    if !rustc.is_file() || !cargo.is_file() {
        fail(
            "the eBPF toolchain is missing (/usr/bin/rustc and /usr/bin/cargo from Debian's rustc-web/cargo-web)",
        );
    }
    let home = env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/root".into());
    let cargo_bin = home.join(".cargo").join("bin");
    let Some(linker) = find_in_path("bpf-linker", std::slice::from_ref(&cargo_bin)) else {
        fail("bpf-linker is not installed");
    };

    let target_dir = env::var_os("TIDEGATE_EBPF_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target").join("ebpf"));
    let mut cmd = Command::new(&cargo);
    cmd.current_dir(&ebpf)
        .args(["build", "--release", "--target", "bpfel-unknown-none"]);
    // The outer (rustup) cargo's settings must not leak into Debian's toolchain.
    for (k, _) in env::vars_os() {
        let k = k.to_string_lossy().into_owned();
        if k.starts_with("CARGO") || k.starts_with("RUST") {
            cmd.env_remove(&k);
        }
    }
    let linker_dir = linker.parent().expect("file has a parent").to_path_buf();
    let path = env::join_paths(
        std::iter::once(linker_dir)
            .chain(env::split_paths(&env::var_os("PATH").unwrap_or_default())),
    )
    .expect("PATH entries are valid");
    cmd.env("PATH", path)
        .env("RUSTC", &rustc)
        .env("RUSTC_BOOTSTRAP", "1")
        .env("CARGO_TARGET_DIR", &target_dir)
        .env(
            "CARGO_HOME",
            env::var_os("CARGO_HOME").unwrap_or_else(|| home.join(".cargo").into()),
        );
    let status = cmd
        .status()
        .unwrap_or_else(|e| fail(&format!("cannot run {}: {e}", cargo.display())));
    if !status.success() {
        fail(&format!(
            "building the eBPF programs in {} failed (see the compiler output above)",
            ebpf.display()
        ));
    }
    let obj = target_dir
        .join("bpfel-unknown-none")
        .join("release")
        .join("tidegate");
    std::fs::copy(&obj, out_dir.join("tidegate.bpf.o"))
        .unwrap_or_else(|e| fail(&format!("cannot copy {}: {e}", obj.display())));
}
