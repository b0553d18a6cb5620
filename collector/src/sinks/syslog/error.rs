//! Errors of the syslog sink.

use std::time::Duration;

/// What can go wrong in the syslog sink.
#[derive(Debug, thiserror::Error)]
pub enum SyslogError {
    /// A configuration field is invalid.
    #[error("syslog.{field}: {reason}")]
    Config {
        /// Field name inside `[syslog]`.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The configured address did not resolve to any socket address.
    #[error("syslog.address {address:?}: cannot resolve: {source}")]
    Resolve {
        /// The configured address.
        address: String,
        /// Resolver error.
        #[source]
        source: std::io::Error,
    },
    /// Opening the socket or connecting to the receiver failed.
    #[error("syslog receiver {address} ({protocol}): cannot connect: {source}")]
    Connect {
        /// The configured address.
        address: String,
        /// `udp` or `tcp`.
        protocol: &'static str,
        /// Socket error.
        #[source]
        source: std::io::Error,
    },
    /// Sending a message failed; the message was not delivered.
    #[error("syslog receiver {address} ({protocol}): send failed: {source}")]
    Send {
        /// The configured address.
        address: String,
        /// `udp` or `tcp`.
        protocol: &'static str,
        /// Socket error.
        #[source]
        source: std::io::Error,
    },
    /// The TCP connection is down and the next reconnection attempt is not due yet; the
    /// message was not delivered.
    #[error("syslog receiver {address} (tcp): disconnected, next reconnect in {retry_in:?}")]
    Backoff {
        /// The configured address.
        address: String,
        /// Time until the sink tries to reconnect.
        retry_in: Duration,
    },
    /// Header and structured data alone exceed the UDP size limit, so the message cannot
    /// be shortened by truncating its MSG part.
    #[error(
        "syslog message header and structured data are {len} bytes, over the {max}-byte UDP limit"
    )]
    TooLarge {
        /// Length of header plus structured data.
        len: usize,
        /// UDP message limit.
        max: usize,
    },
}
