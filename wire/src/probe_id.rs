//! What a probe id may be. Ids travel in certificates (CN/SAN), `Hello` frames, batch
//! headers and ClickHouse rows, and name the probe in logs and file names of its
//! operator's making (`gen-certs`): one narrow charset everywhere, checked on both ends,
//! so no peer-supplied id can become a path, a control sequence or a shell word.

/// Longest probe id.
pub const MAX_PROBE_ID: usize = 128;

/// Why `id` is not a valid probe id, or `None` when it is: 1 to [`MAX_PROBE_ID`] bytes of
/// ASCII letters, digits, `.`, `_`, `-` and `:` (NetFlow exporters are
/// `exporter:<name or address>`), starting with a letter or digit.
pub fn probe_id_problem(id: &str) -> Option<String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':');
    if id.is_empty() {
        Some("empty probe id".into())
    } else if id.len() > MAX_PROBE_ID {
        Some(format!("probe id longer than {MAX_PROBE_ID} bytes"))
    } else if let Some(c) = id.chars().find(|c| !allowed(*c)) {
        Some(format!(
            "probe id {:?} contains {c:?}: only ASCII letters, digits, '.', '_', '-' and ':' are allowed",
            id.escape_debug().to_string()
        ))
    } else if !id.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        Some(format!(
            "probe id {id:?} must start with a letter or a digit"
        ))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostnames_and_exporters_pass_and_paths_or_controls_do_not() {
        for ok in [
            "edge-1",
            "hk.edge_02",
            "exporter:2001:db8::1",
            "exporter:192.0.2.1",
            "A",
        ] {
            assert_eq!(probe_id_problem(ok), None, "{ok}");
        }
        for bad in [
            "",
            "../../etc/x",
            "a/b",
            ".hidden",
            "-rf",
            "a b",
            "tab\there",
            "中文",
            "a\u{1b}[31m",
            &"x".repeat(MAX_PROBE_ID + 1),
        ] {
            assert!(probe_id_problem(bad).is_some(), "{bad:?} accepted");
        }
    }
}
