//! Policy errors: every problem in a policy file names the file and the line — the one
//! located configuration error of tidegate.

/// Why a policy could not be loaded (`file:line: message`).
pub type PolicyError = tidegate_base::ConfigError;
