//! Configuration and policy parsing on arbitrary text (operators' files, policies pushed
//! by a regulator): never a panic; every error names a line of the file.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let located = |e: String| assert!(e.starts_with("fuzz.toml"), "unlocated error: {e}");
    if let Err(e) = tidegate_probe::config::ProbeConfig::parse(text, Path::new("fuzz.toml")) {
        located(e.to_string());
    }
    if let Err(e) = tidegate_threat::detect::DetectConfig::from_toml(text, "fuzz.toml") {
        located(e.to_string());
    }
    if let Err(e) = tidegate_threat::policy::Policy::parse(text, Path::new("fuzz.toml")) {
        located(e.to_string());
    }
});
