//! Writing a benchmark's Markdown report: the smoke-run note, the file (its directory
//! created), and a copy on stdout.

use std::io::Write as _;
use std::path::Path;

/// The line a smoke run's report ends with.
pub const SMOKE_NOTE: &str = "\n(smoke run: figures are not meaningful)";

/// The start of a generated report: `# <title> (generated)`, the machine, and the
/// command line that ran the benchmark.
pub fn heading(title: &str) -> String {
    format!(
        "# {title} (generated)\n\n{}\nCommand: `{}`\n\n",
        crate::machine::Machine::describe().markdown(),
        std::env::args().collect::<Vec<_>>().join(" ")
    )
}

/// Ends `text` with [`SMOKE_NOTE`] for a smoke run, prints it, and writes it to `out`
/// (creating its directory) when given.
pub fn publish(mut text: String, smoke: bool, out: Option<&Path>) -> std::io::Result<()> {
    if smoke {
        text.push_str(SMOKE_NOTE);
        text.push('\n');
    }
    std::io::stdout().write_all(text.as_bytes())?;
    if let Some(out) = out {
        if let Some(d) = out.parent() {
            std::fs::create_dir_all(d)?;
        }
        std::fs::write(out, &text)?;
        eprintln!("wrote {}", out.display());
    }
    Ok(())
}

/// Runs an async benchmark on a two-worker runtime (the collector's own default on the
/// reference machine) and publishes the report it returns.
pub fn run_and_publish<F>(smoke: bool, out: &Path, bench: F) -> anyhow::Result<()>
where
    F: std::future::Future<Output = anyhow::Result<String>>,
{
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let s = rt.block_on(bench)?;
    publish(s, smoke, Some(out))?;
    Ok(())
}
