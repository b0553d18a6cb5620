//! What a probe can rely on: an Ack only once the sink made the batch durable, in order,
//! with several batches in flight; resent batches acknowledged as duplicates; a failed
//! persist closes the connection without an Ack; a reconnecting probe supersedes its old
//! connection; idle and silent connections are closed; a graceful stop acknowledges every
//! batch it stored.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use tidegate_collector::transport::{Server, TransportError, TransportMetrics};
use tidegate_testkit::{
    certs::Certs,
    eventually,
    logs::{capture_logs, log_line},
    transport::*,
};
use tidegate_wire::{DEFAULT_MAX_FRAME, Message, encode_batch, read_message_async};

struct Setup {
    _tmp: tempfile::TempDir,
    certs: Certs,
    sink: std::sync::Arc<MemSink>,
    server: TestServer,
    rt: tokio::runtime::Runtime,
}

fn setup(tune: impl FnOnce(&mut tidegate_collector::transport::TransportConfig)) -> Setup {
    capture_logs();
    let tmp = tempfile::tempdir().unwrap();
    let certs = Certs::generate(tmp.path(), &["edge-1"]);
    let sink = MemSink::new();
    let mut cfg = certs.transport_config(0);
    tune(&mut cfg);
    let server = TestServer::start(&cfg, sink.clone());
    Setup {
        _tmp: tmp,
        certs,
        sink,
        server,
        rt: tokio::runtime::Runtime::new().unwrap(),
    }
}

impl Setup {
    async fn probe(&self) -> (Client, Option<u64>) {
        let mut c = tls_connect(
            self.server.addr,
            &self.certs.ca().cert,
            Some(&self.certs.probe("edge-1")),
        )
        .await
        .unwrap();
        match say_hello(&mut c, "edge-1").await.unwrap() {
            Message::HelloAck(a) => (c, a.last_acked_seq),
            m => panic!("{m:?}"),
        }
    }
}

async fn send_batch(c: &mut Client, seq: u64) {
    send(c, &Message::Batch(encode_batch(&batch("edge-1", seq, 10))))
        .await
        .unwrap();
}

async fn ack(c: &mut Client) -> (u64, bool) {
    match recv(c).await.unwrap() {
        Message::Ack(a) => (a.seq, a.duplicate),
        m => panic!("expected Ack, got {m:?}"),
    }
}

/// Nothing arrives within `d` (reading is only cancelled while no byte came).
async fn silent_for(c: &mut Client, d: Duration) -> bool {
    tokio::time::timeout(d, read_message_async(c, DEFAULT_MAX_FRAME))
        .await
        .is_err()
}

#[test]
fn acks_wait_for_the_sink_and_keep_order_with_many_in_flight() {
    let s = setup(|_| {});
    s.sink.set_gate(false);
    s.rt.block_on(async {
        let (mut c, last) = s.probe().await;
        assert_eq!(last, None);
        for seq in 1..=20 {
            send_batch(&mut c, seq).await;
        }
        assert!(
            silent_for(&mut c, Duration::from_millis(400)).await,
            "Ack before the batch was durable"
        );
        assert!(s.sink.batches("edge-1").is_empty());
        s.sink.set_gate(true);
        for seq in 1..=20 {
            assert_eq!(ack(&mut c).await, (seq, false));
        }
    });
    assert_eq!(
        s.sink.batches("edge-1").keys().copied().collect::<Vec<_>>(),
        (1..=20).collect::<Vec<_>>()
    );
    assert_eq!(s.server.metrics.batches_received.get(), 20);
    assert_eq!(s.server.metrics.records_received.get(), 200);
}

#[test]
fn resent_batches_are_acknowledged_as_duplicates() {
    let s = setup(|_| {});
    s.rt.block_on(async {
        let (mut c, _) = s.probe().await;
        for seq in 1..=3 {
            send_batch(&mut c, seq).await;
            assert_eq!(ack(&mut c).await, (seq, false));
        }
        drop(c);
        // The probe lost the acks of 2 and 3 and resends them after reconnecting.
        let (mut c, last) = s.probe().await;
        assert_eq!(last, Some(3));
        for seq in [2, 3] {
            send_batch(&mut c, seq).await;
            assert_eq!(ack(&mut c).await, (seq, true));
        }
        send_batch(&mut c, 4).await;
        assert_eq!(ack(&mut c).await, (4, false));
    });
    assert_eq!(s.sink.batches("edge-1").len(), 4);
    assert_eq!(s.sink.duplicates(), 2);
    assert_eq!(s.server.metrics.batches_duplicate.get(), 2);
}

#[test]
fn a_failed_persist_closes_the_connection_without_an_ack() {
    let s = setup(|_| {});
    s.sink.fail_next("disk full");
    s.rt.block_on(async {
        let (mut c, _) = s.probe().await;
        send_batch(&mut c, 1).await;
        match recv(&mut c).await.unwrap() {
            Message::Error { reason } => {
                assert!(
                    reason.contains("batch 1 could not be made durable"),
                    "{reason}"
                );
                assert!(reason.contains("disk full"), "{reason}");
            }
            m => panic!("{m:?}"),
        }
        assert!(recv(&mut c).await.is_err());
        let (mut c, last) = s.probe().await;
        assert_eq!(last, None);
        send_batch(&mut c, 1).await;
        assert_eq!(ack(&mut c).await, (1, false));
    });
    assert_eq!(s.server.metrics.persist_errors.get(), 1);
    assert!(log_line(&["could not be made durable", "probe=edge-1"]).is_some());
}

#[test]
fn a_reconnecting_probe_supersedes_its_old_connection() {
    let s = setup(|_| {});
    s.rt.block_on(async {
        let (mut old, _) = s.probe().await;
        send_batch(&mut old, 1).await;
        assert_eq!(ack(&mut old).await, (1, false));
        let (mut new, last) = s.probe().await;
        assert_eq!(last, Some(1));
        match recv(&mut old).await.unwrap() {
            Message::Error { reason } => assert!(reason.contains("superseded"), "{reason}"),
            m => panic!("{m:?}"),
        }
        send_batch(&mut new, 2).await;
        assert_eq!(ack(&mut new).await, (2, false));
    });
}

#[test]
fn idle_and_silent_connections_are_closed() {
    let s = setup(|c| {
        c.idle_timeout = Duration::from_millis(300);
        c.handshake_timeout = Duration::from_millis(300);
    });
    s.rt.block_on(async {
        let (mut c, _) = s.probe().await;
        match recv(&mut c).await.unwrap() {
            Message::Error { reason } => assert!(reason.contains("idle"), "{reason}"),
            m => panic!("{m:?}"),
        }
        // A TCP connection that never starts TLS.
        let mut tcp = tokio::net::TcpStream::connect(s.server.addr).await.unwrap();
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(
            Duration::from_secs(5),
            tokio::io::AsyncReadExt::read(&mut tcp, &mut buf),
        )
        .await
        .expect("server closes a silent connection")
        .unwrap_or(0);
        assert_eq!(n, 0);
    });
    eventually("handshake timeout counted", Duration::from_secs(10), || {
        s.server.metrics.rejected_count("handshake_timeout") == 1
    });
}

#[test]
fn a_graceful_stop_acknowledges_exactly_what_it_stored() {
    let Setup {
        _tmp,
        certs,
        sink,
        server,
        rt,
    } = setup(|_| {});
    sink.set_delay(Duration::from_millis(100));
    let (addr, ca, cert) = (server.addr, certs.ca().cert, certs.probe("edge-1"));
    let (mut c, first) = rt.block_on(async {
        let mut c = tls_connect(addr, &ca, Some(&cert)).await.unwrap();
        assert!(matches!(
            say_hello(&mut c, "edge-1").await.unwrap(),
            Message::HelloAck(_)
        ));
        for seq in 1..=30 {
            send_batch(&mut c, seq).await;
        }
        let first = ack(&mut c).await;
        (c, first)
    });
    assert_eq!(first, (1, false));
    // Stop while batches are queued (stop() blocks until the server returns).
    let stopper = std::thread::spawn(move || server.stop());
    let (acked, goodbye) = rt.block_on(async {
        let mut acked = vec![1];
        loop {
            match recv(&mut c).await {
                Ok(Message::Ack(a)) => acked.push(a.seq),
                Ok(Message::Error { reason }) => break (acked, reason),
                other => panic!("{other:?}"),
            }
        }
    });
    stopper.join().unwrap();
    assert!(goodbye.contains("shutting down"), "{goodbye}");
    // Everything read before the stop was persisted and acknowledged; nothing stored
    // went unacknowledged; the rest stays with the probe.
    assert_eq!(acked, (1..=acked.len() as u64).collect::<Vec<_>>());
    let stored: Vec<u64> = sink.batches("edge-1").keys().copied().collect();
    assert_eq!(stored, acked);
    assert!(acked.len() < 30, "the stop did not interrupt the stream");
}

#[test]
fn binding_a_busy_port_names_the_address() {
    let tmp = tempfile::tempdir().unwrap();
    let certs = Certs::generate(tmp.path(), &[]);
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let e = rt
        .block_on(Server::bind(
            &certs.transport_config(port),
            TransportMetrics::new(),
        ))
        .unwrap_err();
    assert!(matches!(e, TransportError::Bind { .. }), "{e}");
    assert!(
        e.to_string()
            .starts_with(&format!("cannot listen on 127.0.0.1:{port}:")),
        "{e}"
    );
    let mut cfg = certs.transport_config(0);
    cfg.key = PathBuf::from("/nonexistent/collector.key");
    let e = rt
        .block_on(Server::bind(&cfg, TransportMetrics::new()))
        .unwrap_err();
    assert!(
        e.to_string()
            .starts_with("collector key /nonexistent/collector.key:"),
        "{e}"
    );
    let _: SocketAddr = busy.local_addr().unwrap();
}
