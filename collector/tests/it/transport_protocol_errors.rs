//! Misbehaving probes — corrupt batches, a wrong protocol version, oversized frames,
//! unknown frame types, batches of another probe, sequence numbers going backwards —
//! get their connection closed with a reason (sent to them, logged with the peer address,
//! counted), while a well-behaved probe keeps delivering batches on its own connection.

use std::time::Duration;

use tidegate_testkit::{
    certs::Certs,
    eventually,
    logs::{capture_logs, log_line},
    transport::*,
};
use tidegate_wire::{
    Hello, Message, MessageType, PROTOCOL_VERSION, encode_batch, write_frame_async,
};
use tokio::io::AsyncWriteExt;

const MAX_FRAME: usize = 1 << 20;

/// Expects an `Error` (or `Reject` when `reject`) whose reason contains `want`, then the
/// end of the connection.
async fn expect_closed_with(c: &mut Client, reject: bool, want: &str) {
    let reason = match recv(c).await.unwrap() {
        Message::Error { reason } if !reject => reason,
        Message::Reject { reason } if reject => reason,
        m => panic!(
            "expected {} containing {want:?}, got {m:?}",
            if reject { "Reject" } else { "Error" }
        ),
    };
    assert!(reason.contains(want), "{reason:?} lacks {want:?}");
    assert!(
        recv(c).await.is_err(),
        "connection still open after {reason:?}"
    );
}

#[test]
fn bad_frames_close_only_their_own_connection() {
    capture_logs();
    let tmp = tempfile::tempdir().unwrap();
    let certs = Certs::generate(tmp.path(), &["edge-good", "edge-bad"]);
    let sink = MemSink::new();
    let mut cfg = certs.transport_config(0);
    cfg.max_frame_bytes = MAX_FRAME;
    let server = TestServer::start(&cfg, sink.clone());
    let (addr, ca) = (server.addr, certs.ca().cert);
    let rt = tokio::runtime::Runtime::new().unwrap();

    let good_batches = 150u64;
    rt.block_on(async {
        // The good probe streams batches for the whole test.
        let mut good = tls_connect(addr, &ca, Some(&certs.probe("edge-good")))
            .await
            .unwrap();
        assert!(matches!(
            say_hello(&mut good, "edge-good").await.unwrap(),
            Message::HelloAck(_)
        ));
        let good_task = tokio::spawn(async move {
            for seq in 1..=good_batches {
                send(
                    &mut good,
                    &Message::Batch(encode_batch(&batch("edge-good", seq, 20))),
                )
                .await
                .unwrap();
                match recv(&mut good).await.unwrap() {
                    Message::Ack(a) => assert_eq!((a.seq, a.duplicate), (seq, false)),
                    m => panic!("good probe got {m:?} for batch {seq}"),
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        let bad = certs.probe("edge-bad");
        let session = || async {
            let mut c = tls_connect(addr, &ca, Some(&bad)).await.unwrap();
            assert!(matches!(
                say_hello(&mut c, "edge-bad").await.unwrap(),
                Message::HelloAck(_)
            ));
            c
        };

        // Corrupt batch payload.
        let mut c = session().await;
        send(
            &mut c,
            &Message::Batch(b"TGB\x01 definitely not a batch".to_vec()),
        )
        .await
        .unwrap();
        expect_closed_with(&mut c, false, "corrupt batch").await;

        // A valid batch whose compressed body was damaged in transit.
        let mut c = session().await;
        let mut bytes = encode_batch(&batch("edge-bad", 1, 50));
        let n = bytes.len();
        bytes[n - 10] ^= 0x55;
        send(&mut c, &Message::Batch(bytes)).await.unwrap();
        expect_closed_with(&mut c, false, "corrupt batch").await;

        // Oversized frame: refused from its header alone.
        let mut c = session().await;
        c.write_all(&((MAX_FRAME as u32) + 1).to_be_bytes())
            .await
            .unwrap();
        c.write_all(&[MessageType::Batch as u8]).await.unwrap();
        c.flush().await.unwrap();
        expect_closed_with(&mut c, false, "exceeds the limit").await;

        // Unknown frame type.
        let mut c = session().await;
        write_frame_async(&mut c, MessageType::Batch, b"")
            .await
            .unwrap();
        c.write_all(&[0, 0, 0, 1, 99]).await.unwrap();
        c.flush().await.unwrap();
        // The empty Batch frame comes first and is itself corrupt: either reason closes.
        let reason = match recv(&mut c).await.unwrap() {
            Message::Error { reason } => reason,
            m => panic!("{m:?}"),
        };
        assert!(reason.contains("corrupt batch"), "{reason}");
        let mut c = session().await;
        c.write_all(&[0, 0, 0, 1, 99]).await.unwrap();
        c.flush().await.unwrap();
        expect_closed_with(&mut c, false, "unknown message type 99").await;

        // A batch of another probe on this connection.
        let mut c = session().await;
        send(
            &mut c,
            &Message::Batch(encode_batch(&batch("edge-good", 10_000, 1))),
        )
        .await
        .unwrap();
        expect_closed_with(&mut c, false, "on the connection of probe \"edge-bad\"").await;

        // A batch of another sequence (epoch) than the one the Hello announced.
        let mut c = session().await;
        let mut other = batch("edge-bad", 10_001, 1);
        other.epoch += 1;
        send(&mut c, &Message::Batch(encode_batch(&other)))
            .await
            .unwrap();
        expect_closed_with(&mut c, false, "on a connection that announced epoch").await;

        // Sequence numbers going backwards.
        let mut c = session().await;
        for seq in [5, 4] {
            send(
                &mut c,
                &Message::Batch(encode_batch(&batch("edge-bad", seq, 1))),
            )
            .await
            .unwrap();
        }
        assert!(matches!(recv(&mut c).await.unwrap(), Message::Ack(a) if a.seq == 5));
        expect_closed_with(&mut c, false, "batch seq 4 after seq 5").await;

        // Wrong protocol version: Reject.
        let mut c = tls_connect(addr, &ca, Some(&bad)).await.unwrap();
        send(
            &mut c,
            &Message::Hello(Hello {
                version: PROTOCOL_VERSION + 1,
                probe_id: "edge-bad".into(),
                epoch: 1,
                software: "from the future".into(),
                capabilities: 0,
            }),
        )
        .await
        .unwrap();
        let want = format!("protocol version {} is not supported", PROTOCOL_VERSION + 1);
        expect_closed_with(&mut c, true, &want).await;

        // Something other than Hello first.
        let mut c = tls_connect(addr, &ca, Some(&bad)).await.unwrap();
        send(
            &mut c,
            &Message::Error {
                reason: "hi".into(),
            },
        )
        .await
        .unwrap();
        expect_closed_with(&mut c, false, "expected Hello").await;

        good_task.await.unwrap();
    });

    // The good probe lost nothing; the bad one only got its valid batch 5 stored.
    assert_eq!(sink.batches("edge-good").len() as u64, good_batches);
    assert_eq!(
        sink.batches("edge-bad").keys().copied().collect::<Vec<_>>(),
        vec![5]
    );
    let m = &server.metrics;
    eventually("protocol error metrics", Duration::from_secs(10), || {
        m.protocol_error_count("corrupt_batch") == 3
            && m.protocol_error_count("frame_too_large") == 1
            && m.protocol_error_count("unknown_message_type") == 1
            && m.protocol_error_count("batch_probe_mismatch") == 1
            && m.protocol_error_count("seq_order") == 1
            && m.rejected_count("version_mismatch") == 1
            && m.rejected_count("unexpected_message") == 1
    });
    for (reason, text) in [
        ("corrupt_batch", "corrupt batch"),
        ("frame_too_large", "exceeds the limit"),
        ("seq_order", "batch seq 4 after seq 5"),
    ] {
        let line = log_line(&["protocol error", reason, text])
            .unwrap_or_else(|| panic!("no log line for {reason}"));
        assert!(
            line.contains("peer=127.0.0.1:") && line.contains("probe=edge-bad"),
            "{line}"
        );
    }
    assert!(log_line(&["probe refused", "version_mismatch", "peer=127.0.0.1:"]).is_some());
    server.stop();
}

#[test]
fn an_oversized_status_frame_and_a_probes_extra_connections_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let certs = Certs::generate(tmp.path(), &["edge-a", "edge-b"]);
    let sink = MemSink::new();
    let server = TestServer::start(&certs.transport_config(0), sink.clone());
    let (addr, ca) = (server.addr, certs.ca().cert);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let hello = |epoch: u64| {
            Message::Hello(Hello {
                version: PROTOCOL_VERSION,
                probe_id: "edge-a".into(),
                epoch,
                software: "transport test".into(),
                capabilities: 0,
            })
        };
        // Anything but a batch is small: a 200 KiB status is refused from its header.
        let mut c = tls_connect(addr, &ca, Some(&certs.probe("edge-a")))
            .await
            .unwrap();
        send(&mut c, &hello(1)).await.unwrap();
        assert!(matches!(recv(&mut c).await.unwrap(), Message::HelloAck(_)));
        let mut frame = ((200u32 << 10) + 1).to_be_bytes().to_vec();
        frame.push(MessageType::EnforceStatus as u8);
        c.write_all(&frame).await.unwrap();
        c.flush().await.unwrap();
        expect_closed_with(&mut c, false, "at most 65536").await;

        // One probe's certificate holds 16 connections (one sequence each), no more;
        // another probe still gets in.
        let mut held = Vec::new();
        for epoch in 10..26u64 {
            let mut c = tls_connect(addr, &ca, Some(&certs.probe("edge-a")))
                .await
                .unwrap();
            send(&mut c, &hello(epoch)).await.unwrap();
            assert!(
                matches!(recv(&mut c).await.unwrap(), Message::HelloAck(_)),
                "epoch {epoch}"
            );
            held.push(c);
        }
        let mut extra = tls_connect(addr, &ca, Some(&certs.probe("edge-a")))
            .await
            .unwrap();
        send(&mut extra, &hello(99)).await.unwrap();
        expect_closed_with(&mut extra, true, "holds 16 connections already").await;
        let mut other = tls_connect(addr, &ca, Some(&certs.probe("edge-b")))
            .await
            .unwrap();
        assert!(matches!(
            say_hello(&mut other, "edge-b").await.unwrap(),
            Message::HelloAck(_)
        ));
        // A connection that ends gives its slot back.
        drop(held.pop());
        eventually_async(|| async {
            let mut c = tls_connect(addr, &ca, Some(&certs.probe("edge-a")))
                .await
                .unwrap();
            send(&mut c, &hello(25)).await.unwrap();
            matches!(recv(&mut c).await, Ok(Message::HelloAck(_)))
        })
        .await;
    });
    let m = &server.metrics;
    assert_eq!(m.protocol_error_count("frame_too_large"), 1);
    assert!(m.rejected_count("too_many_probe_connections") >= 1);
    server.stop();
}

/// Polls `f` until it holds (10 s at most).
async fn eventually_async<F, Fut>(f: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !f().await {
        assert!(std::time::Instant::now() < deadline, "never held");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn a_probe_reconnects_at_once_while_its_old_connection_waits_on_a_full_spool() {
    let tmp = tempfile::tempdir().unwrap();
    let certs = Certs::generate(tmp.path(), &["edge-a"]);
    let sink = MemSink::new();
    let server = TestServer::start(&certs.transport_config(0), sink.clone());
    let (addr, ca) = (server.addr, certs.ca().cert);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        // Nothing becomes durable: the old connection's window fills and its reader waits.
        sink.set_gate(false);
        let mut old = tls_connect(addr, &ca, Some(&certs.probe("edge-a")))
            .await
            .unwrap();
        assert!(matches!(
            say_hello(&mut old, "edge-a").await.unwrap(),
            Message::HelloAck(_)
        ));
        let window = tidegate_collector::transport::WINDOW as u64;
        // Sends batches 1..=n and lets the collector take them in.
        async fn send_batches(c: &mut Client, n: u64) {
            for seq in 1..=n {
                let frame = encode_batch(&batch("edge-a", seq, 3));
                write_frame_async(c, MessageType::Batch, &frame)
                    .await
                    .unwrap();
            }
            c.flush().await.unwrap();
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        send_batches(&mut old, window + 8).await;
        // The probe comes back on a new connection: it is answered, not left waiting
        // for the old one's spool writes.
        let mut new = tls_connect(addr, &ca, Some(&certs.probe("edge-a")))
            .await
            .unwrap();
        let answered = tokio::time::timeout(Duration::from_secs(5), say_hello(&mut new, "edge-a"))
            .await
            .expect("hello answered while the spool is full");
        assert!(matches!(answered.unwrap(), Message::HelloAck(_)));
        // The usual case: the probe drops a connection whose acks are late, then comes
        // back. One batch in the writer, a full window queued: the reader reads on, sees
        // the end, and cannot queue it.
        send_batches(&mut new, window + 1).await;
        drop(new);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut third = tls_connect(addr, &ca, Some(&certs.probe("edge-a")))
            .await
            .unwrap();
        let answered =
            tokio::time::timeout(Duration::from_secs(5), say_hello(&mut third, "edge-a"))
                .await
                .expect("hello answered after the old connection was dropped");
        assert!(matches!(answered.unwrap(), Message::HelloAck(_)));
        sink.set_gate(true);
    });
    server.stop();
}
