//! A probe must prove who it is: no client certificate, a certificate from another CA,
//! or a probe id that is not the certificate's — each is refused, logged with the peer
//! address and the reason, and counted, while a legitimate probe is served meanwhile.

use std::time::Duration;
use tidegate_wire::{Message, PROTOCOL_VERSION};

use tidegate_testkit::{
    certs::Certs,
    eventually,
    logs::{capture_logs, log_line},
    transport::*,
};

#[test]
fn probes_without_a_valid_identity_are_refused_and_counted() {
    capture_logs();
    let tmp = tempfile::tempdir().unwrap();
    let certs = Certs::generate(&tmp.path().join("ours"), &["edge-1", "edge-2"]);
    let theirs = Certs::generate(&tmp.path().join("theirs"), &["edge-1"]);
    let sink = MemSink::new();
    let server = TestServer::start(&certs.transport_config(0), sink.clone());
    let addr = server.addr;
    let ca = certs.ca().cert;
    let rt = tokio::runtime::Runtime::new().unwrap();

    rt.block_on(async {
        // A legitimate probe connects first and keeps its connection.
        let mut good = tls_connect(addr, &ca, Some(&certs.probe("edge-1")))
            .await
            .unwrap();
        match say_hello(&mut good, "edge-1").await.unwrap() {
            Message::HelloAck(a) => {
                assert_eq!(a.version, PROTOCOL_VERSION);
                assert_eq!(a.last_acked_seq, None);
            }
            m => panic!("good probe got {m:?}"),
        }

        // 1. No client certificate: the TLS handshake fails on the collector's side (in
        //    TLS 1.3 the client learns it on its first read).
        let refused = match tls_connect(addr, &ca, None).await {
            Err(_) => true,
            Ok(mut c) => say_hello(&mut c, "edge-1").await.is_err(),
        };
        assert!(refused, "a probe without a certificate got a HelloAck");

        // 2. A certificate issued by another CA, claiming a known probe id.
        let refused = match tls_connect(addr, &ca, Some(&theirs.probe("edge-1"))).await {
            Err(_) => true,
            Ok(mut c) => say_hello(&mut c, "edge-1").await.is_err(),
        };
        assert!(refused, "a certificate from another CA was accepted");

        // 3. A valid certificate of edge-2 claiming to be edge-1: Reject, with the reason.
        let mut liar = tls_connect(addr, &ca, Some(&certs.probe("edge-2")))
            .await
            .unwrap();
        match say_hello(&mut liar, "edge-1").await.unwrap() {
            Message::Reject { reason } => {
                assert!(reason.contains("\"edge-1\""), "{reason}");
                assert!(reason.contains("edge-2"), "{reason}");
            }
            m => panic!("mismatching probe got {m:?}"),
        }
        // ... and the collector closed that connection.
        assert!(recv(&mut liar).await.is_err());

        // The legitimate probe is unaffected: it can still deliver a batch.
        send(
            &mut good,
            &Message::Batch(tidegate_wire::encode_batch(&batch("edge-1", 1, 3))),
        )
        .await
        .unwrap();
        match recv(&mut good).await.unwrap() {
            Message::Ack(a) => assert_eq!((a.seq, a.duplicate), (1, false)),
            m => panic!("good probe got {m:?}"),
        }
    });

    eventually("rejection metrics", Duration::from_secs(10), || {
        server.metrics.rejected_count("no_client_cert") == 1
            && server.metrics.rejected_count("bad_client_cert") == 1
            && server.metrics.rejected_count("probe_id_mismatch") == 1
    });
    assert_eq!(sink.records("edge-1").len(), 3);
    assert!(sink.batches("edge-2").is_empty());
    for reason in ["no_client_cert", "bad_client_cert", "probe_id_mismatch"] {
        let line = log_line(&["probe refused", &format!("reason=\"{reason}\"")])
            .or_else(|| log_line(&["probe refused", &format!("reason={reason}")]))
            .unwrap_or_else(|| panic!("no log line for {reason}"));
        assert!(line.contains("peer=127.0.0.1:"), "{line}");
    }
    server.stop();
}
