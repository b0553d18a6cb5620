//! Probe → collector transport: the server side of the wire protocol
//! ([`tidegate_wire`]) over mutually-authenticated TLS.
//!
//! - Every probe presents a client certificate issued by the configured CA; the probe id
//!   it claims in `Hello` must be the certificate's common name or one of its DNS SANs.
//!   Anything else is refused, logged with the peer address and counted by reason.
//! - Batches are decoded and validated, handed to a [`BatchSink`] in the order they
//!   arrived, and acknowledged only once the sink reports them durable. Up to
//!   [`WINDOW`] batches per connection may be in flight.
//! - One connection per probe at a time: a reconnecting probe supersedes its old
//!   connection (which finishes the batch it is persisting), so a probe's batches are
//!   persisted strictly in order.
//! - Corrupt frames, wrong versions and oversized frames close that connection with an
//!   `Error`/`Reject` and a logged reason; other connections carry on.
//! - Admission is bounded: at most `max_connections` open connections, of which
//!   `max_handshakes` (and `max_handshakes_per_address` per IP) still unauthenticated;
//!   probe ids are checked against one charset ([`tidegate_wire::probe_id_problem`]), the
//!   optional `allowed_probes` list and the CA's CRLs.
//!
//! Use [`Server::bind`] + [`Server::run`] (tests bind port 0 and read
//! [`Server::local_addr`]), or [`serve`] for both at once.

mod config;
mod connection;
mod error;
mod limits;
mod metrics;
mod server;
mod sessions;
mod sink;
mod tls;

pub use config::{RawTransport, TransportConfig};
pub use error::TransportError;
pub use metrics::TransportMetrics;
pub use server::{Server, serve};
pub use sink::{BatchSink, PersistError, Persisted};
pub use tls::{peer_identities, server_tls_config};

/// Batches a connection reads ahead while earlier ones are being persisted.
pub const WINDOW: usize = 8;
