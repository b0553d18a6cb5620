//! What the probe and the collector share beyond the wire: one located configuration
//! error, one logging set-up, one TLS set-up for both ends, one `/metrics` server,
//! durable-file helpers with one directory lock, and one strict [`Cidr`] type.
#![deny(missing_docs)]

pub mod cidr;
pub mod cli;
pub mod clock;
pub mod config;
pub mod durable;
pub mod limits;
pub mod logging;
pub mod memory;
pub mod metrics;
pub mod tls;

pub use cidr::{Cidr, CidrError, unmap};
pub use config::{ConfigError, ConfigFile, FieldError};
pub use durable::{DirLock, LockError};
