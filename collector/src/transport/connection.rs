//! One probe connection: handshake (TLS, `Hello`, identity check, session takeover),
//! then a reader that decodes and validates batches and a writer that persists them in
//! order and acknowledges each once durable.

use std::{net::SocketAddr, sync::Arc, time::Instant};

use prometheus_client::metrics::gauge::Gauge;
use tidegate_wire::{
    Ack, Batch, CAP_ENFORCE, HelloAck, MAX_BATCH_HEADER, Message, MessageType, PROTOCOL_VERSION,
    WireError, decode_batch, probe_id_problem, read_frame_head_async, read_frame_rest_async,
    read_frame_start_async, read_message_async, write_message_async,
};
use tokio::{
    io::{AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf},
    net::TcpStream,
    sync::{mpsc, watch},
    time::timeout,
};
use tokio_rustls::{TlsAcceptor, server::TlsStream};
use tracing::{debug, info, warn};

use super::{
    BatchSink, Persisted, TransportConfig, TransportMetrics, WINDOW,
    sessions::{SessionGuard, Sessions},
    tls::{handshake_failure_reason, peer_identities},
};

/// Largest `Hello` frame accepted (ids and software names are short).
const MAX_HELLO_FRAME: usize = 64 << 10;
/// Largest step from the last sequence number the collector holds for a probe's
/// sequence (or saw on this connection) to the next batch's: a probe numbers its batches
/// one by one, so a bigger jump is a forged or corrupt number — accepting it would make
/// every later batch of that sequence look like a duplicate.
const MAX_SEQ_JUMP: u64 = 1 << 32;
/// Largest first sequence number of a sequence the collector has never seen (a probe's
/// spool continues its numbering into a new epoch, but never near the end of `u64`).
const MAX_NEW_SEQ: u64 = 1 << 48;
/// Memory all connections together may hold in batches being decoded, queued or
/// persisted, in KiB (512 MiB). A batch's share is its frame plus three times its
/// declared body (the body and the decoded records); a connection waits for room before
/// decoding — back-pressure on the sender — so a flood of large batches cannot exhaust
/// memory. The largest batch (32 MiB body) always fits.
pub(crate) const MEMORY_BUDGET_KIB: u32 = 512 << 10;
/// What one probe's batches in flight may hold of [`MEMORY_BUDGET_KIB`] (over all its
/// connections): a quarter, more than the largest batch needs.
pub(crate) const PROBE_SHARE_KIB: u32 = MEMORY_BUDGET_KIB / 4;
/// Time allowed to deliver a final `Reject`/`Error` frame before closing.
const GOODBYE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// What every connection shares.
pub(crate) struct Ctx<S> {
    pub(crate) acceptor: TlsAcceptor,
    pub(crate) memory: Arc<tokio::sync::Semaphore>,
    pub(crate) handshakes: Arc<super::limits::Handshakes>,
    pub(crate) cfg: TransportConfig,
    pub(crate) sink: Arc<S>,
    pub(crate) metrics: TransportMetrics,
    pub(crate) sessions: Sessions,
}

type Tls = TlsStream<TcpStream>;

/// Keeps the connections gauge right however the connection ends.
struct Open(Gauge);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Serves one accepted TCP connection to its end.
pub(crate) async fn handle<S: BatchSink>(
    ctx: Arc<Ctx<S>>,
    tcp: TcpStream,
    peer: SocketAddr,
    permit: super::limits::HandshakePermit,
    stop: watch::Receiver<bool>,
) {
    ctx.metrics.connections.inc();
    let _open = Open(ctx.metrics.connections.clone());
    let hs = timeout(ctx.cfg.handshake_timeout, handshake(&ctx, tcp, peer)).await;
    // Authenticated (or refused): the handshake slot goes back.
    drop(permit);
    let (tls, authed, guard) = match hs {
        Ok(Some(s)) => s,
        Ok(None) => return,
        Err(_) => {
            warn!(%peer, reason = "handshake_timeout", timeout = ?ctx.cfg.handshake_timeout,
                "probe refused: no completed handshake in time");
            ctx.metrics.rejected("handshake_timeout");
            return;
        }
    };
    session(&ctx, tls, peer, authed, guard, stop).await;
}

/// Sends a last frame (bounded in time) and closes the TLS stream.
async fn goodbye<W: AsyncWrite + Unpin>(w: &mut W, msg: &Message) {
    let _ = timeout(GOODBYE_TIMEOUT, async {
        write_message_async(w, msg).await?;
        w.flush().await?;
        w.shutdown().await?;
        Ok::<_, WireError>(())
    })
    .await;
}

/// Refuses a connection during the handshake: logs, counts, tells the probe, closes.
async fn refuse(
    ctx: &Ctx<impl BatchSink>,
    tls: &mut Tls,
    peer: SocketAddr,
    reason: &'static str,
    detail: String,
    as_reject: bool,
) {
    warn!(%peer, reason, "probe refused: {detail}");
    ctx.metrics.rejected(reason);
    let msg = if as_reject {
        Message::Reject { reason: detail }
    } else {
        Message::Error { reason: detail }
    };
    goodbye(tls, &msg).await;
}

/// Who a handshake authenticated.
struct Authed {
    probe: String,
    /// Whether it enforces policies (gets `Policy` frames).
    enforces: bool,
    /// The last sequence number the collector holds for its sequence.
    stored: Option<u64>,
}

async fn handshake<S: BatchSink>(
    ctx: &Ctx<S>,
    tcp: TcpStream,
    peer: SocketAddr,
) -> Option<(Tls, Authed, SessionGuard)> {
    let mut tls = match ctx.acceptor.accept(tcp).await {
        Ok(t) => t,
        Err(e) => {
            let reason = handshake_failure_reason(&e);
            warn!(%peer, reason, error = %e, "probe refused: TLS handshake failed");
            ctx.metrics.rejected(reason);
            return None;
        }
    };
    let ids = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| peer_identities(c))
        .unwrap_or_default();
    let max = MAX_HELLO_FRAME.min(ctx.cfg.max_frame_bytes);
    let hello = match read_message_async(&mut tls, max).await {
        Ok(Message::Hello(h)) => h,
        Ok(other) => {
            let detail = format!(
                "expected Hello as the first frame, got {}",
                other.message_type().name()
            );
            refuse(ctx, &mut tls, peer, "unexpected_message", detail, false).await;
            return None;
        }
        Err(e @ WireError::UnsupportedVersion { .. }) => {
            refuse(ctx, &mut tls, peer, "version_mismatch", e.to_string(), true).await;
            return None;
        }
        Err(WireError::Closed) => {
            debug!(%peer, "connection closed before Hello");
            ctx.metrics.rejected("closed_before_hello");
            return None;
        }
        Err(e) => {
            let detail = format!("bad Hello: {e}");
            refuse(ctx, &mut tls, peer, e.reason(), detail, false).await;
            return None;
        }
    };
    if let Some(problem) = probe_id_problem(&hello.probe_id) {
        refuse(ctx, &mut tls, peer, "bad_probe_id", problem, true).await;
        return None;
    }
    if let Some(allowed) = &ctx.cfg.allowed_probes
        && !allowed.contains(&hello.probe_id)
    {
        let detail = format!(
            "probe id {:?} is not in transport.allowed_probes",
            hello.probe_id
        );
        refuse(ctx, &mut tls, peer, "probe_not_allowed", detail, true).await;
        return None;
    }
    if !ids.contains(&hello.probe_id) {
        let detail = format!(
            "probe id {:?} does not match the client certificate (which names {:?})",
            hello.probe_id, ids
        );
        refuse(ctx, &mut tls, peer, "probe_id_mismatch", detail, true).await;
        return None;
    }
    let Some(slot) = ctx.sessions.admit(&hello.probe_id) else {
        let detail = format!(
            "probe {:?} holds {} connections already",
            hello.probe_id,
            super::sessions::MAX_PER_PROBE
        );
        refuse(
            ctx,
            &mut tls,
            peer,
            "too_many_probe_connections",
            detail,
            true,
        )
        .await;
        return None;
    };
    let guard = ctx.sessions.acquire(slot, hello.epoch).await;
    let last = ctx.sink.last_seq(&hello.probe_id, hello.epoch);
    // Answer in the probe's version (a version-2 probe knows nothing of policies).
    let ack = Message::HelloAck(HelloAck {
        version: hello.version.min(PROTOCOL_VERSION),
        last_acked_seq: last,
    });
    let sent = async {
        write_message_async(&mut tls, &ack).await?;
        tls.flush().await?;
        Ok::<_, WireError>(())
    };
    if let Err(e) = sent.await {
        info!(%peer, probe = %hello.probe_id, error = %e, "connection lost during handshake");
        return None;
    }
    info!(%peer, probe = %hello.probe_id, epoch = hello.epoch, software = %hello.software.escape_debug(),
        last_acked_seq = ?last, "probe connected");
    ctx.sink.connected(&hello.probe_id, hello.epoch, peer);
    let enforces = hello.version >= 3 && hello.capabilities & CAP_ENFORCE != 0;
    let authed = Authed {
        probe: hello.probe_id,
        enforces,
        stored: last,
    };
    Some((tls, authed, guard))
}

/// Why a session ended.
enum End {
    /// The probe closed the connection.
    Eof,
    /// A newer connection of the same probe took over.
    Superseded,
    /// The collector is shutting down.
    Shutdown,
    /// Nothing arrived for the idle timeout.
    Idle,
    /// The probe sent something invalid.
    Protocol {
        reason: &'static str,
        detail: String,
    },
    /// The probe sent an `Error` frame.
    PeerError(String),
    /// The connection failed.
    Io(String),
    /// The sink could not persist a batch.
    Persist { seq: u64, error: String },
}

impl End {
    /// A short name of how the session ended.
    fn reason(&self) -> &'static str {
        match self {
            End::Eof => "closed_by_probe",
            End::Superseded => "superseded",
            End::Shutdown => "collector_shutdown",
            End::Idle => "idle",
            End::Protocol { reason, .. } => reason,
            End::PeerError(_) => "probe_error",
            End::Io(_) => "connection_lost",
            End::Persist { .. } => "storage_unavailable",
        }
    }
}

enum Inbound {
    Batch {
        batch: Batch,
        /// Its bytes as the probe sent them (spooled as they are).
        encoded: Vec<u8>,
        received: Instant,
        /// Its share of the probe's and of the whole memory budget.
        _memory: (
            tokio::sync::OwnedSemaphorePermit,
            tokio::sync::OwnedSemaphorePermit,
        ),
    },
    Policy(Arc<crate::enforce::PolicyFrame>),
    End(End),
}

async fn session<S: BatchSink>(
    ctx: &Ctx<S>,
    tls: Tls,
    peer: SocketAddr,
    authed: Authed,
    mut guard: SessionGuard,
    mut stop: watch::Receiver<bool>,
) {
    let Authed {
        probe,
        enforces,
        stored,
    } = authed;
    let probe = probe.as_str();
    let (mut rd, mut wr) = tokio::io::split(tls);
    let (tx, mut rx) = mpsc::channel::<Inbound>(WINDOW);
    // Enforcement plans go to the writer as they are published (the current one first).
    let feed = if enforces {
        ctx.sink.policy_feed()
    } else {
        None
    };
    let policies = {
        let tx = tx.clone();
        async move {
            let Some(mut feed) = feed else {
                return std::future::pending::<End>().await;
            };
            loop {
                let frame = feed.borrow_and_update().clone();
                if let Some(f) = frame
                    && tx.send(Inbound::Policy(f)).await.is_err()
                {
                    return std::future::pending::<End>().await;
                }
                if feed.changed().await.is_err() {
                    return std::future::pending::<End>().await;
                }
            }
        }
    };
    let reader = async {
        let end = read_loop(
            ctx,
            &mut rd,
            &tx,
            (probe, enforces),
            stored,
            &mut guard,
            &mut stop,
        )
        .await;
        if matches!(end, End::Superseded) {
            // The probe is back on a newer connection, which waits for this one: the
            // batches queued here are not acknowledged, and the probe sends them there.
            return end;
        }
        // The writer finishes the session once it has worked through the queue, unless
        // the probe comes back first (it usually drops a connection whose acks are
        // late, then reconnects while this one's writer waits on a full spool).
        tokio::select! {
            biased;
            _ = guard.superseded.changed() => return End::Superseded,
            _ = tx.send(Inbound::End(end)) => {}
        }
        if guard.superseded.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
        End::Superseded
    };
    let writer = write_loop(ctx, &mut wr, &mut rx, peer, probe);
    let end = tokio::select! {
        end = writer => end,
        end = reader => end,
        end = policies => end,
    };
    if matches!(end, End::Superseded) {
        // The reader ended the session without the writer (see above): say why.
        let reason = "superseded by a newer connection of this probe".into();
        goodbye(&mut wr, &Message::Error { reason }).await;
    }
    log_end(ctx, peer, probe, &end);
    ctx.sink
        .disconnected(probe, guard.epoch, peer, end.reason());
    drop(guard);
}

fn log_end<S>(ctx: &Ctx<S>, peer: SocketAddr, probe: &str, end: &End) {
    match end {
        End::Eof => info!(%peer, %probe, "probe disconnected"),
        End::Superseded => {
            info!(%peer, %probe, "connection superseded by a newer one from the same probe")
        }
        End::Shutdown => info!(%peer, %probe, "connection closed: collector shutting down"),
        End::Idle => info!(%peer, %probe, timeout = ?ctx.cfg.idle_timeout,
            "connection closed: idle"),
        End::Protocol { reason, detail } => {
            ctx.metrics.protocol_error(reason);
            warn!(%peer, %probe, reason, "connection closed on a protocol error: {detail}");
        }
        End::PeerError(r) => warn!(%peer, %probe, "probe reported an error: {}",
            tidegate_base::limits::clip(r, 1024).escape_debug()),
        End::Io(e) => info!(%peer, %probe, error = %e, "connection lost"),
        End::Persist { seq, error } => warn!(%peer, %probe, seq, %error,
            "batch could not be made durable; connection closed so the probe resends it later"),
    }
}

/// Frames other than batches are small (acks, statuses, errors): at most this many bytes.
pub(crate) const MAX_CONTROL_FRAME: usize = 64 << 10;

/// Runs one read of the probe's stream within the idle timeout, unless a newer connection
/// of the probe or shutdown comes first; a failed read says how the connection ends. (A
/// read cut short loses the stream's framing: every `Err` ends the connection.)
async fn guarded<S, T>(
    ctx: &Ctx<S>,
    guard: &mut SessionGuard,
    stop: &mut watch::Receiver<bool>,
    read: impl std::future::Future<Output = Result<T, WireError>>,
) -> Result<T, End> {
    tokio::select! {
        biased;
        _ = guard.superseded.changed() => Err(End::Superseded),
        _ = stop.wait_for(|s| *s) => Err(End::Shutdown),
        r = timeout(ctx.cfg.idle_timeout, read) => match r {
            Err(_) => Err(End::Idle),
            Ok(r) => r.map_err(wire_end),
        },
    }
}

/// How a failed frame read ends the connection.
fn wire_end(e: WireError) -> End {
    match e {
        WireError::Closed => End::Eof,
        WireError::Io(e) => End::Io(e.to_string()),
        e => End::Protocol {
            reason: e.reason(),
            detail: e.to_string(),
        },
    }
}

async fn read_loop<S: BatchSink>(
    ctx: &Ctx<S>,
    rd: &mut ReadHalf<Tls>,
    tx: &mpsc::Sender<Inbound>,
    (probe, enforces): (&str, bool),
    stored: Option<u64>,
    guard: &mut SessionGuard,
    stop: &mut watch::Receiver<bool>,
) -> End {
    let mut last_seq: Option<u64> = None;
    loop {
        // The header and the start of the payload (a batch's own header) first: the
        // payload is read only once its memory is granted, so connections waiting on the
        // budget hold a few hundred bytes each, not a frame each.
        let read = read_frame_start_async(rd, ctx.cfg.max_frame_bytes);
        let mut start = match guarded(ctx, guard, stop, read).await {
            Ok(f) => f,
            Err(end) => return end,
        };
        if start.ty != MessageType::Batch && start.len > MAX_CONTROL_FRAME {
            return End::Protocol {
                reason: "frame_too_large",
                detail: format!(
                    "{} frame of {} bytes (at most {MAX_CONTROL_FRAME} for anything but a batch)",
                    start.ty.name(),
                    start.len
                ),
            };
        }
        // Room for a batch in the memory budget: its bytes, and three times the body it
        // declares (the header is read without decompressing; a lying header is caught
        // by the decoder).
        let memory = if start.ty == MessageType::Batch {
            let read = read_frame_head_async(rd, &mut start, MAX_BATCH_HEADER);
            if let Err(end) = guarded(ctx, guard, stop, read).await {
                return end;
            }
            let declared = tidegate_wire::peek_batch_header(&start.head)
                .map(|h| h.body_len)
                .unwrap_or(0)
                .min(tidegate_wire::MAX_BATCH_BODY);
            let kib = ((start.len + 3 * declared) / 1024 + 1).min(PROBE_SHARE_KIB as usize);
            // The probe's share first, then the budget (always in this order, and the
            // budget's holders never wait on a share: no deadlock): one probe, however
            // fast or hostile, holds at most its share and leaves the rest to the others.
            let share = guard.probe.memory.clone();
            tokio::select! {
                biased;
                _ = guard.superseded.changed() => return End::Superseded,
                _ = stop.wait_for(|s| *s) => return End::Shutdown,
                p = async {
                    let mine = share.acquire_many_owned(kib as u32).await?;
                    let all = ctx.memory.clone().acquire_many_owned(kib as u32).await?;
                    Ok::<_, tokio::sync::AcquireError>((mine, all))
                } => match p {
                    Ok(p) => Some(p),
                    Err(_) => return End::Shutdown,
                },
            }
        } else {
            None
        };
        let frame = match guarded(ctx, guard, stop, read_frame_rest_async(rd, start)).await {
            Ok(f) => f,
            Err(end) => return end,
        };
        let received = Instant::now();
        ctx.metrics.frames_received.inc();
        ctx.metrics.bytes_received.inc_by(frame.wire_len() as u64);
        match frame.ty {
            MessageType::Batch => {}
            MessageType::EnforceStatus if !enforces => {
                return End::Protocol {
                    reason: "unexpected_message",
                    detail: "EnforceStatus from a probe that did not announce enforcement".into(),
                };
            }
            MessageType::EnforceStatus => {
                match frame.message() {
                    Ok(Message::EnforceStatus(st)) => ctx.sink.enforce_status(probe, &st),
                    Ok(_) | Err(_) => {
                        return End::Protocol {
                            reason: "corrupt_status",
                            detail: "unreadable EnforceStatus frame".into(),
                        };
                    }
                }
                continue;
            }
            MessageType::Error => {
                return match frame.message() {
                    Ok(Message::Error { reason }) => End::PeerError(reason),
                    _ => End::PeerError("(unreadable Error frame)".into()),
                };
            }
            other => {
                return End::Protocol {
                    reason: "unexpected_message",
                    detail: format!("unexpected {} frame after the handshake", other.name()),
                };
            }
        }
        let Some(memory) = memory else {
            return End::Shutdown;
        };
        // Decompressing and decoding a large batch takes milliseconds: off the async
        // threads, which serve every other connection.
        let payload = frame.payload;
        let (decoded, payload) = match tokio::task::spawn_blocking(move || {
            let b = decode_batch(&payload);
            (b, payload)
        })
        .await
        {
            Ok(r) => r,
            Err(e) => {
                return End::Protocol {
                    reason: "corrupt_batch",
                    detail: format!("decoding the batch failed: {e}"),
                };
            }
        };
        let batch = match decoded {
            Ok(b) => b,
            Err(e) => {
                return End::Protocol {
                    reason: "corrupt_batch",
                    detail: format!("corrupt batch: {e}"),
                };
            }
        };
        if batch.probe_id != probe {
            return End::Protocol {
                reason: "batch_probe_mismatch",
                detail: format!(
                    "batch of probe {:?} on the connection of probe {probe:?}",
                    batch.probe_id
                ),
            };
        }
        if batch.epoch != guard.epoch {
            return End::Protocol {
                reason: "batch_epoch_mismatch",
                detail: format!(
                    "batch of sequence epoch {} on a connection that announced epoch {}",
                    batch.epoch, guard.epoch
                ),
            };
        }
        if let Some(l) = last_seq.filter(|l| batch.seq <= *l) {
            return End::Protocol {
                reason: "seq_order",
                detail: format!("batch seq {} after seq {l}", batch.seq),
            };
        }
        let known = last_seq.max(stored);
        let limit = known.map_or(MAX_NEW_SEQ, |k| k.saturating_add(MAX_SEQ_JUMP));
        if batch.seq > limit {
            return End::Protocol {
                reason: "seq_jump",
                detail: format!(
                    "batch seq {} is beyond {limit} ({}): refused, it would make later batches \
                     of this sequence look like duplicates",
                    batch.seq,
                    match known {
                        Some(k) => format!("the last one held for this sequence is {k}"),
                        None => "a new sequence starts lower".into(),
                    }
                ),
            };
        }
        last_seq = Some(batch.seq);
        ctx.metrics.batches_received.inc();
        ctx.metrics
            .records_received
            .inc_by(batch.records.len() as u64);
        let item = Inbound::Batch {
            batch,
            encoded: payload,
            received,
            _memory: memory,
        };
        // The window is full while the spool is (backpressure): a newer connection of the
        // probe, or shutdown, still ends this one at once.
        tokio::select! {
            biased;
            _ = guard.superseded.changed() => return End::Superseded,
            _ = stop.wait_for(|s| *s) => return End::Shutdown,
            sent = tx.send(item) => if sent.is_err() {
                // The writer is gone; its end is what gets reported.
                return End::Io("writer stopped".into());
            },
        }
    }
}

async fn write_loop<S: BatchSink>(
    ctx: &Ctx<S>,
    wr: &mut WriteHalf<Tls>,
    rx: &mut mpsc::Receiver<Inbound>,
    peer: SocketAddr,
    probe: &str,
) -> End {
    while let Some(item) = rx.recv().await {
        let (batch, encoded, received) = match item {
            Inbound::Batch {
                batch,
                encoded,
                received,
                ..
            } => (batch, encoded, received),
            Inbound::Policy(f) => {
                let msg = Message::Policy(f.bytes.clone());
                let sent = timeout(ctx.cfg.idle_timeout, async {
                    write_message_async(wr, &msg).await?;
                    wr.flush().await?;
                    Ok::<_, WireError>(())
                })
                .await;
                match sent {
                    Ok(Ok(())) => {
                        debug!(%peer, %probe, version = f.version, "enforcement policy sent");
                        continue;
                    }
                    Ok(Err(e)) => return End::Io(format!("sending policy {}: {e}", f.version)),
                    Err(_) => return End::Io(format!("sending policy {} timed out", f.version)),
                }
            }
            Inbound::End(end) => {
                let reason = match &end {
                    End::Superseded => {
                        Some("superseded by a newer connection of this probe".into())
                    }
                    End::Shutdown => Some("collector shutting down".into()),
                    End::Idle => Some(format!("idle for {:?}", ctx.cfg.idle_timeout)),
                    End::Protocol { detail, .. } => Some(detail.clone()),
                    End::Eof | End::PeerError(_) | End::Io(_) | End::Persist { .. } => None,
                };
                match reason {
                    Some(reason) => goodbye(wr, &Message::Error { reason }).await,
                    None => {
                        let _ = timeout(GOODBYE_TIMEOUT, wr.shutdown()).await;
                    }
                }
                return end;
            }
        };
        let (seq, records) = (batch.seq, batch.records.len());
        let duplicate = match ctx.sink.persist(batch, encoded).await {
            Ok(p) => p == Persisted::Duplicate,
            Err(e) => {
                ctx.metrics.persist_errors.inc();
                let reason = format!("batch {seq} could not be made durable: {e}");
                goodbye(wr, &Message::Error { reason }).await;
                return End::Persist {
                    seq,
                    error: e.to_string(),
                };
            }
        };
        let ack = Message::Ack(Ack { seq, duplicate });
        let sent = timeout(ctx.cfg.idle_timeout, async {
            write_message_async(wr, &ack).await?;
            wr.flush().await?;
            Ok::<_, WireError>(())
        })
        .await;
        match sent {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return End::Io(format!("sending Ack {seq}: {e}")),
            Err(_) => return End::Io(format!("sending Ack {seq} timed out")),
        }
        if duplicate {
            ctx.metrics.batches_duplicate.inc();
        }
        ctx.metrics
            .ack_latency
            .observe(received.elapsed().as_secs_f64());
        debug!(%peer, %probe, seq, records, duplicate, "batch acknowledged");
    }
    End::Io("reader stopped".into())
}
