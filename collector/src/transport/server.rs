//! The listener: binds, accepts, runs one task per connection, and on shutdown stops
//! accepting, lets connections finish the batches they are persisting, and closes.

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use tokio::{net::TcpListener, sync::watch, task::JoinSet};
use tokio_rustls::TlsAcceptor;
use tracing::{info, warn};

use super::{
    BatchSink, TransportConfig, TransportError, TransportMetrics,
    connection::{Ctx, handle},
    limits::Handshakes,
    sessions::Sessions,
    tls::server_tls_config,
};

/// Time connections get to finish in-flight batches after shutdown is requested.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A bound transport listener, not serving yet.
pub struct Server {
    listener: TcpListener,
    acceptor: TlsAcceptor,
    cfg: TransportConfig,
    metrics: TransportMetrics,
    local: SocketAddr,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Loads the TLS material and binds `cfg.listen`.
    pub async fn bind(
        cfg: &TransportConfig,
        metrics: TransportMetrics,
    ) -> Result<Server, TransportError> {
        let tls = server_tls_config(&cfg.ca_cert, &cfg.cert, &cfg.key, &cfg.crls)?;
        let listener =
            TcpListener::bind(cfg.listen)
                .await
                .map_err(|source| TransportError::Bind {
                    addr: cfg.listen,
                    source,
                })?;
        let local = listener
            .local_addr()
            .map_err(|source| TransportError::Bind {
                addr: cfg.listen,
                source,
            })?;
        Ok(Server {
            listener,
            acceptor: TlsAcceptor::from(tls),
            cfg: cfg.clone(),
            metrics,
            local,
        })
    }

    /// The bound address (the real port when `listen` had port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Serves probes until `shutdown` completes, then stops accepting, gives open
    /// connections a few seconds to finish the batches they are persisting, and returns.
    pub async fn run<S: BatchSink>(
        self,
        sink: Arc<S>,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), TransportError> {
        let ctx = Arc::new(Ctx {
            acceptor: self.acceptor,
            memory: Arc::new(tokio::sync::Semaphore::new(
                super::connection::MEMORY_BUDGET_KIB as usize,
            )),
            handshakes: Handshakes::new(
                self.cfg.max_handshakes,
                self.cfg.max_handshakes_per_address,
            ),
            cfg: self.cfg,
            sink,
            metrics: self.metrics,
            sessions: Sessions::with_share(super::connection::PROBE_SHARE_KIB),
        });
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut conns = JoinSet::new();
        info!(listen = %self.local, "transport listening for probes");
        tokio::pin!(shutdown);
        let mut refusals = RefusalLog::default();
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                r = self.listener.accept() => match r {
                    Ok((tcp, peer)) => {
                        let admitted = if conns.len() >= ctx.cfg.max_connections {
                            Err("too_many_connections")
                        } else {
                            ctx.handshakes.admit(peer.ip()).map_err(super::limits::reason)
                        };
                        match admitted {
                            Ok(permit) => {
                                let _ = tcp.set_nodelay(true);
                                conns.spawn(handle(ctx.clone(), tcp, peer, permit, stop_rx.clone()));
                            }
                            Err(reason) => {
                                // Closed at once: no TLS work, no buffers.
                                drop(tcp);
                                ctx.metrics.rejected(reason);
                                refusals.note(peer, reason, conns.len());
                            }
                        }
                    }
                    Err(e) => {
                        // EMFILE and friends: transient; do not spin.
                        warn!(error = %e, "accepting a probe connection failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
            }
        }
        drop(self.listener);
        let _ = stop_tx.send(true);
        let open = conns.len();
        info!(open, "transport stopping");
        let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
            while conns.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            warn!(
                left = conns.len(),
                "connections still busy after the grace period; aborting them"
            );
            conns.shutdown().await;
        }
        info!("transport stopped");
        Ok(())
    }
}

/// Logs refused connections at most once per [`REFUSAL_LOG_EVERY`] (a flood would
/// otherwise flood the log too); every refusal is counted in `probes_rejected`.
struct RefusalLog(tidegate_base::limits::Throttle);

/// Least time between two warnings about refused connections.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

impl Default for RefusalLog {
    fn default() -> Self {
        RefusalLog(tidegate_base::limits::Throttle::new(REFUSAL_LOG_EVERY))
    }
}

impl RefusalLog {
    fn note(&mut self, peer: SocketAddr, reason: &'static str, open: usize) {
        if let Some(refused) = self.0.due() {
            warn!(%peer, reason, open, refused,
                "connections refused at accept (limits in [transport]); counted in probes_rejected");
        }
    }
}

/// [`Server::bind`] then [`Server::run`].
pub async fn serve<S: BatchSink>(
    cfg: &TransportConfig,
    sink: Arc<S>,
    metrics: TransportMetrics,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), TransportError> {
    Server::bind(cfg, metrics).await?.run(sink, shutdown).await
}
