//! Errors of the aggregation domain.

/// Why the aggregation could not start or answer.
#[derive(Debug, thiserror::Error)]
pub enum AggregateError {
    /// A configuration value is out of range.
    #[error("aggregate config: {field}: {reason}")]
    InvalidConfig {
        /// The offending field.
        field: &'static str,
        /// What is wrong with it and what is accepted.
        reason: String,
    },
    /// A shard worker thread could not be spawned.
    #[error("aggregate: cannot start shard {shard} thread: {source}")]
    Spawn {
        /// Index of the shard.
        shard: usize,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// [`try_submit`](super::Aggregator::try_submit) found a target shard's queue full; nothing
/// of the batch was submitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("aggregation shard {shard} queue is full; nothing of the batch was submitted")]
pub struct Full {
    /// The first shard whose queue was full.
    pub shard: usize,
}
