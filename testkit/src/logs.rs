//! Capture of this process's logs (the in-process collector and probe log through
//! `tracing`), for tests that check what an operator would read. One capture per
//! process: run such tests one per process (cargo-nextest does) or search for lines
//! only your test can produce.

use std::{
    io::Write,
    sync::{Arc, Mutex, OnceLock},
    time::{Duration, Instant},
};

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        std::io::stderr().write_all(b)?;
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

static LOGS: OnceLock<Capture> = OnceLock::new();

/// Installs the log capture (once per test binary; every thread logs into it).
pub fn capture_logs() {
    LOGS.get_or_init(|| {
        let c = Capture::default();
        let w = c.clone();
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
            .with_ansi(false)
            .with_writer(move || w.clone())
            .init();
        c
    });
}

/// Waits up to 5 s for a log line containing every one of `parts`; returns it.
pub fn log_line(parts: &[&str]) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(c) = LOGS.get() {
            let text = String::from_utf8_lossy(&c.0.lock().unwrap()).into_owned();
            if let Some(l) = text.lines().find(|l| parts.iter().all(|p| l.contains(p))) {
                return Some(l.to_string());
            }
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
