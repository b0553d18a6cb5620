//! The sender thread: keeps one TLS connection to a collector, sends spooled batches
//! in sequence order with up to `window` unacknowledged, deletes each batch when its Ack
//! arrives, and reconnects, resending everything unacknowledged: to the next collector of
//! its list at once after a failure, with backoff once the whole list has failed, and back
//! to the first after `failback`.
//!
//! Why a batch is neither lost nor duplicated across collectors: each connection sends
//! the spool from its oldest unacknowledged batch in sequence order, so whatever a
//! collector stored of this sequence is every number from that connection's first batch
//! up to its highest; the `HelloAck` highest number therefore only ever names batches the
//! collector holds, and the probe deletes no others. A batch one collector stored but
//! could not acknowledge is sent to the next one too; both store it under the same
//! ClickHouse token (`dedup = "batch"`), which keeps one copy.

use std::{
    collections::VecDeque,
    sync::Arc,
    thread::JoinHandle,
    time::{Duration, Instant},
};

use rustls_pki_types::ServerName;
use tidegate_wire::{
    CAP_ENFORCE, EnforcePlan, EnforceStatus, Hello, HelloAck, Message, MessageType,
    PROTOCOL_VERSION, WireError, read_message_async, write_frame_async, write_message_async,
};
use tokio::{
    io::{AsyncWriteExt, ReadHalf},
    net::TcpStream,
    sync::{Notify, mpsc, watch},
    time::timeout,
};
use tokio_rustls::{TlsConnector, client::TlsStream};
use tracing::{debug, info, warn};

use crate::capture::ebpf::SharedEnforcer;

use super::{
    ExportMetrics, SendError,
    backoff::Backoff,
    spool::{Reconciled, Spool},
};

type Tls = TlsStream<TcpStream>;

/// What the sender needs.
pub(crate) struct SenderCtx {
    /// The collectors, first choice first: address and the name in its certificate.
    pub(crate) targets: Vec<(String, ServerName<'static>)>,
    /// Back to the first collector after this long on another.
    pub(crate) failback: Duration,
    pub(crate) connector: TlsConnector,
    pub(crate) probe_id: String,
    pub(crate) spool: Arc<Spool>,
    pub(crate) window: usize,
    pub(crate) connect_timeout: Duration,
    pub(crate) ack_timeout: Duration,
    pub(crate) backoff_min: Duration,
    pub(crate) backoff_max: Duration,
    pub(crate) max_frame: usize,
    pub(crate) metrics: ExportMetrics,
    /// Notified when a batch is spooled.
    pub(crate) wake: Arc<Notify>,
    /// Set to stop (the exporter's finish deadline).
    pub(crate) stop: watch::Receiver<bool>,
    /// Enforcement tables (the probe enforces policies the collector pushes).
    pub(crate) enforcer: Option<SharedEnforcer>,
    /// Status heartbeat interval while enforcing.
    pub(crate) heartbeat: Duration,
    /// Clear the enforcement policy (fail-open) once the collector has been unreachable
    /// this long; `None`: keep enforcing the last policy.
    pub(crate) enforce_max_offline: Option<Duration>,
}

/// Starts the sender thread.
pub(crate) fn spawn(ctx: SenderCtx) -> std::io::Result<JoinHandle<()>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("collector-tx".into())
        .spawn(move || rt.block_on(run(ctx)))
}

/// How a connection ended without an error.
enum Quiet {
    /// Told to stop.
    Stopped,
    /// The collector closed an idle connection (nothing was in flight).
    Idle,
    /// Time to go back to the first collector (everything sent was acknowledged).
    Failback,
}

/// One connection's result, and whether it got anything acknowledged.
struct SessionEnd {
    result: Result<Quiet, SendError>,
    acked: u64,
}

async fn run(mut ctx: SenderCtx) {
    let seed = std::process::id() as u64 ^ crate::clock::realtime_ns();
    let mut backoff = Backoff::new(ctx.backoff_min, ctx.backoff_max, seed);
    let mut failures = 0u64;
    // Since when no session has been up (for the offline fail-open).
    let mut offline_since: Option<Instant> = None;
    // The collector in use (index in `targets`), and how many in a row failed.
    let mut cur = 0usize;
    let mut failed_in_round = 0usize;
    loop {
        if *ctx.stop.borrow() {
            return;
        }
        if let (Some(limit), Some(since), Some(enf)) =
            (ctx.enforce_max_offline, offline_since, &ctx.enforcer)
            && since.elapsed() >= limit
            && enf.lock().version() != 0
        {
            let e2 = enf.clone();
            let r = tokio::task::spawn_blocking(move || e2.lock().clear()).await;
            match r {
                Ok(Ok(())) => warn!(offline = ?since.elapsed(), limit = ?limit,
                    "collector unreachable for longer than enforce_max_offline_secs: enforcement \
                     cleared (fail-open), every packet passes until the collector pushes a policy again"),
                Ok(Err(e)) => warn!(error = %e, "cannot clear the enforcement policy"),
                Err(e) => warn!(error = %e, "clearing the enforcement policy panicked"),
            }
        }
        if ctx.spool.is_empty() && ctx.enforcer.is_none() {
            // Connect only when there is something to send (an enforcing probe stays
            // connected: policies arrive over the connection).
            tokio::select! {
                _ = ctx.wake.notified() => {}
                _ = ctx.stop.changed() => {}
            }
            continue;
        }
        let addr = ctx.targets[cur].0.clone();
        ctx.metrics.target.set(cur as i64);
        let attempt = match timeout(ctx.connect_timeout, connect(&ctx, cur)).await {
            Ok(r) => r,
            Err(_) => Err(SendError::ConnectTimeout(ctx.connect_timeout)),
        };
        let failed = match attempt {
            Ok((tls, ack)) => {
                ctx.metrics.connects.inc();
                if failures > 0 {
                    info!(addr = %addr, after_failures = failures, "reconnected to the collector");
                }
                failures = 0;
                match reconcile(&ctx, &ack) {
                    Err(e) => {
                        warn!(addr = %addr, error = %e, "cannot apply the collector's last acknowledged sequence number");
                        ctx.metrics.session_error(e.reason());
                        true
                    }
                    // The spool moved to a new epoch: say so in a new Hello, at once.
                    Ok(Next::Reconnect) => continue,
                    Ok(Next::Send) => {
                        let back = (cur != 0).then(|| Instant::now() + ctx.failback);
                        let end = session(&mut ctx, tls, back).await;
                        offline_since = Some(Instant::now());
                        if end.acked > 0 {
                            backoff.reset();
                            failed_in_round = 0;
                        }
                        match end.result {
                            Ok(Quiet::Stopped) => return,
                            Ok(Quiet::Idle) => {
                                debug!("collector closed the idle connection");
                                backoff.reset();
                                failed_in_round = 0;
                                continue;
                            }
                            Ok(Quiet::Failback) => {
                                info!(from = %addr, to = %ctx.targets[0].0, after = ?ctx.failback,
                                    "going back to the first collector of the list");
                                ctx.metrics.failovers.inc();
                                cur = 0;
                                failed_in_round = 0;
                                backoff.reset();
                                continue;
                            }
                            Err(e) => {
                                ctx.metrics.session_error(e.reason());
                                warn!(addr = %addr, error = %e, acked = end.acked,
                                "collector connection lost; unacknowledged batches will be resent");
                                true
                            }
                        }
                    }
                }
            }
            Err(e) => {
                failures += 1;
                offline_since.get_or_insert_with(Instant::now);
                ctx.metrics.connect_failures.inc();
                ctx.metrics.session_error(e.reason());
                let (bytes, batches) = ctx.spool.stats();
                // The first failure and then every 10th at warn; the rest at debug.
                if failures == 1 || failures.is_multiple_of(10) {
                    warn!(addr = %addr, error = %e, failures, spooled_batches = batches,
                        spooled_bytes = bytes, "cannot reach the collector; retrying with backoff");
                } else {
                    debug!(addr = %addr, error = %e, failures, "cannot reach the collector");
                }
                true
            }
        };
        if failed && ctx.targets.len() > 1 {
            // The next collector of the list, at once; back off only after a whole round.
            let next = (cur + 1) % ctx.targets.len();
            info!(from = %addr, to = %ctx.targets[next].0, "moving to the next collector of the list");
            ctx.metrics.failovers.inc();
            cur = next;
            failed_in_round += 1;
            if failed_in_round < ctx.targets.len() {
                continue;
            }
            failed_in_round = 0;
        }
        let delay = backoff.next_delay();
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = ctx.stop.changed() => {}
        }
    }
}

/// TCP connect, TLS handshake, `Hello` → `HelloAck`.
async fn connect(ctx: &SenderCtx, target: usize) -> Result<(Tls, HelloAck), SendError> {
    let (addr, name) = &ctx.targets[target];
    let tcp = TcpStream::connect(addr).await?;
    let _ = tcp.set_nodelay(true);
    let mut tls = ctx.connector.connect(name.clone(), tcp).await?;
    let hello = Message::Hello(Hello {
        version: PROTOCOL_VERSION,
        probe_id: ctx.probe_id.clone(),
        epoch: ctx.spool.epoch(),
        software: concat!("tidegate-probe ", env!("CARGO_PKG_VERSION")).into(),
        capabilities: if ctx.enforcer.is_some() {
            CAP_ENFORCE
        } else {
            0
        },
    });
    write_message_async(&mut tls, &hello).await?;
    tls.flush().await?;
    match read_message_async(&mut tls, ctx.max_frame).await? {
        Message::HelloAck(a) => Ok((tls, a)),
        Message::Reject { reason } => Err(SendError::Rejected(reason)),
        Message::Error { reason } => Err(SendError::Collector(reason)),
        other => Err(SendError::Protocol(format!(
            "expected HelloAck, got {}",
            other.message_type().name()
        ))),
    }
}

/// What to do after the handshake.
enum Next {
    /// Send the spool on this connection.
    Send,
    /// Hello again (the spool's sequence changed).
    Reconnect,
}

fn reconcile(ctx: &SenderCtx, ack: &HelloAck) -> Result<Next, SendError> {
    let Some(last) = ack.last_acked_seq else {
        return Ok(Next::Send);
    };
    match ctx.spool.reconcile(last)? {
        Reconciled::Nothing => Ok(Next::Send),
        Reconciled::Dropped(n) => {
            ctx.metrics.batches_acked.inc_by(n as u64);
            info!(
                batches = n,
                epoch = ctx.spool.epoch(),
                last_acked_seq = last,
                "the collector had stored these spooled batches of this sequence (their \
                 acknowledgements were lost); removed them"
            );
            Ok(Next::Send)
        }
        Reconciled::NewEpoch(n) => {
            warn!(
                batches = n,
                last_acked_seq = last,
                next_seq = ctx.spool.next_seq(),
                epoch = ctx.spool.epoch(),
                "the collector knows sequence numbers this spool never assigned (restored \
                 from a backup, or copied from another probe?); the spool starts a new \
                 sequence epoch and every spooled batch is sent again"
            );
            Ok(Next::Reconnect)
        }
    }
}

/// Reads frames from the collector into a channel (reading is not cancel-safe, so it
/// gets its own task).
async fn read_loop(
    mut rd: ReadHalf<Tls>,
    tx: mpsc::Sender<Result<Message, WireError>>,
    max: usize,
) {
    loop {
        let r = read_message_async(&mut rd, max).await;
        let end = r.is_err();
        if tx.send(r).await.is_err() || end {
            return;
        }
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Sleeps until `t`; never ends without one.
async fn until(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}

/// One connection until it fails or stops; with `failback`, it stops sending at that time
/// and ends ([`Quiet::Failback`]) once what it sent is acknowledged.
async fn session(ctx: &mut SenderCtx, tls: Tls, failback: Option<Instant>) -> SessionEnd {
    let (rd, mut wr) = tokio::io::split(tls);
    let (tx, mut rx) = mpsc::channel(ctx.window + 4);
    let _reader = AbortOnDrop(tokio::spawn(read_loop(rd, tx, ctx.max_frame)));
    let mut in_flight: VecDeque<(u64, Instant)> = VecDeque::new();
    let mut last_sent: Option<u64> = None;
    let mut acked = 0u64;
    let end = |result, acked| SessionEnd { result, acked };
    let mut heartbeat = tokio::time::interval(ctx.heartbeat);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    heartbeat.tick().await;
    if let Some(e) = &ctx.enforcer {
        // Say at once what this probe enforces (the collector logs and pushes).
        let st = status(e, None, String::new());
        if let Err(e) = send_status(&mut wr, st, ctx.ack_timeout).await {
            return end(Err(e), acked);
        }
    }
    let mut draining = false;
    loop {
        if draining && in_flight.is_empty() {
            let _ = timeout(Duration::from_secs(1), wr.shutdown()).await;
            return end(Ok(Quiet::Failback), acked);
        }
        // Fill the window from the spool, oldest first.
        let mut wrote = false;
        while !draining && in_flight.len() < ctx.window {
            let Some(seq) = ctx.spool.first_after(last_sent) else {
                break;
            };
            last_sent = Some(seq);
            let bytes = match ctx.spool.read(seq) {
                Ok(Some(b)) => b,
                Ok(None) => continue,
                Err(e) => return end(Err(e.into()), acked),
            };
            let w = timeout(
                ctx.ack_timeout,
                write_frame_async(&mut wr, MessageType::Batch, &bytes),
            )
            .await;
            match w {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return end(Err(e.into()), acked),
                Err(_) => return end(Err(SendError::AckTimeout(ctx.ack_timeout)), acked),
            }
            ctx.metrics.batches_sent.inc();
            ctx.metrics.bytes_sent.inc_by(bytes.len() as u64);
            in_flight.push_back((seq, Instant::now()));
            wrote = true;
        }
        if wrote {
            match timeout(ctx.ack_timeout, wr.flush()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return end(Err(e.into()), acked),
                Err(_) => return end(Err(SendError::AckTimeout(ctx.ack_timeout)), acked),
            }
        }
        let oldest = in_flight.front().map(|(_, t)| *t);
        let ack_deadline = until(oldest.map(|t| t + ctx.ack_timeout));
        tokio::select! {
            m = rx.recv() => match m {
                Some(Ok(Message::Ack(a))) => {
                    let Some((seq, sent)) = in_flight.pop_front() else {
                        return end(Err(SendError::Protocol(format!("Ack {} with nothing in flight", a.seq))), acked);
                    };
                    if a.seq != seq {
                        return end(Err(SendError::Protocol(format!("Ack {} while {seq} is the oldest in flight", a.seq))), acked);
                    }
                    if let Err(e) = ctx.spool.remove(seq) {
                        return end(Err(e.into()), acked);
                    }
                    acked += 1;
                    ctx.metrics.batches_acked.inc();
                    if a.duplicate {
                        ctx.metrics.batches_duplicate.inc();
                    }
                    ctx.metrics.ack_latency.observe(sent.elapsed().as_secs_f64());
                    debug!(seq, duplicate = a.duplicate, "batch acknowledged");
                }
                Some(Ok(Message::Policy(bytes))) if ctx.enforcer.is_some() => {
                    let enf = ctx.enforcer.clone().expect("checked");
                    let st = apply_policy(enf, bytes).await;
                    if let Err(e) = send_status(&mut wr, st, ctx.ack_timeout).await {
                        return end(Err(e), acked);
                    }
                }
                Some(Ok(Message::Error { reason })) if in_flight.is_empty() => {
                    debug!(%reason, "collector closed the connection");
                    return end(Ok(Quiet::Idle), acked);
                }
                Some(Ok(Message::Error { reason })) => return end(Err(SendError::Collector(reason)), acked),
                Some(Ok(other)) => return end(Err(SendError::Protocol(format!(
                    "unexpected {} frame", other.message_type().name()))), acked),
                Some(Err(WireError::Closed)) | None if in_flight.is_empty() => return end(Ok(Quiet::Idle), acked),
                Some(Err(e)) => return end(Err(e.into()), acked),
                None => return end(Err(WireError::Closed.into()), acked),
            },
            _ = ctx.wake.notified() => {}
            _ = heartbeat.tick(), if ctx.enforcer.is_some() => {
                let st = status(ctx.enforcer.as_ref().expect("checked"), None, String::new());
                if let Err(e) = send_status(&mut wr, st, ctx.ack_timeout).await {
                    return end(Err(e), acked);
                }
            }
            _ = ctx.stop.changed() => break,
            _ = until(failback), if !draining => draining = true,
            _ = ack_deadline => return end(Err(SendError::AckTimeout(ctx.ack_timeout)), acked),
        }
        if in_flight.is_empty() && *ctx.stop.borrow() {
            break;
        }
    }
    // Stopping: close the TLS stream properly (close_notify) so the collector sees a
    // clean end; unacknowledged batches stay spooled.
    let _ = timeout(Duration::from_secs(1), wr.shutdown()).await;
    end(Ok(Quiet::Stopped), acked)
}

fn status(e: &SharedEnforcer, failed_version: Option<u64>, error: String) -> Message {
    Message::EnforceStatus(EnforceStatus {
        version: e.lock().version(),
        failed_version,
        error,
    })
}

async fn send_status(
    wr: &mut tokio::io::WriteHalf<Tls>,
    st: Message,
    limit: Duration,
) -> Result<(), SendError> {
    match timeout(limit, async {
        write_message_async(wr, &st).await?;
        wr.flush().await?;
        Ok::<_, WireError>(())
    })
    .await
    {
        Ok(r) => r.map_err(SendError::from),
        Err(_) => Err(SendError::AckTimeout(limit)),
    }
}

/// Decodes and installs a pushed plan (off the async thread: the swap waits for a grace
/// period); returns the status to answer with.
async fn apply_policy(enf: SharedEnforcer, bytes: Vec<u8>) -> Message {
    let plan = match EnforcePlan::decode(&bytes) {
        Ok(p) => p,
        Err(e) => {
            warn!(error = %e, "the collector sent an unreadable enforcement policy; the current one stays");
            return status(&enf, Some(0), format!("unreadable policy: {e}"));
        }
    };
    let version = plan.version;
    if enf.lock().version() == version && version != 0 {
        return status(&enf, None, String::new());
    }
    let e2 = enf.clone();
    let started = Instant::now();
    let r = tokio::task::spawn_blocking(move || {
        let mut g = e2.lock();
        if plan.version == 0 {
            g.clear().map(|_| None).map_err(|e| e.to_string())
        } else {
            g.install(&plan).map(Some)
        }
    })
    .await
    .unwrap_or_else(|e| Err(format!("installing panicked: {e}")));
    match r {
        Ok(Some(i)) => {
            info!(version, prefixes = i.prefixes, lines = ?i.lines,
                took_ms = started.elapsed().as_millis() as u64, "enforcement policy installed");
            status(&enf, None, String::new())
        }
        Ok(None) => {
            info!("enforcement policy removed: every packet passes");
            status(&enf, None, String::new())
        }
        Err(e) => {
            warn!(version, error = %e, "cannot install the enforcement policy; the current one stays");
            status(&enf, Some(version), e)
        }
    }
}
