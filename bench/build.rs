//! Records the compiler version for the results files (`TIDEGATE_BENCH_RUSTC`).

use std::process::Command;

fn main() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let version = Command::new(&rustc)
        .arg("-V")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| format!("unknown ({rustc} -V failed)"));
    println!("cargo::rustc-env=TIDEGATE_BENCH_RUSTC={version}");
    println!("cargo::rerun-if-env-changed=RUSTC");
}
