//! Logging for every tidegate binary: `tracing` to stderr (stdout may carry records),
//! `RUST_LOG` overriding the verbosity flag, colour only on a terminal.

use std::io::IsTerminal;

/// Installs the global subscriber. `verbose`: 0 info, 1 debug, 2+ trace.
pub fn init(verbose: u8) {
    let default = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // `try_init`: a second call (tests calling main twice) keeps the first subscriber.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}
