//! `tidegate-collector hash-password`: reads a password from standard input (one line;
//! nothing is echoed, nothing is written to the shell history) and prints its salted
//! Argon2id hash for `[[api.user]] password_hash`.

use std::io::BufRead;

/// Arguments of `hash-password`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Shortest password accepted.
const MIN_LEN: usize = 8;

/// Runs `hash-password`.
pub fn main(_: Args) -> anyhow::Result<()> {
    if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        eprintln!("password (then Enter):");
    }
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    let pw = line.trim_end_matches(['\n', '\r']);
    anyhow::ensure!(
        pw.chars().count() >= MIN_LEN,
        "the password must have at least {MIN_LEN} characters"
    );
    println!("{}", tidegate_collector::api::auth::hash_password(pw));
    Ok(())
}
