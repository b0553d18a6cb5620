//! A regulator's receiver speaks HTTPS with a certificate from its own CA: configured with
//! that CA (`ca_file`), the webhook sink delivers every notification, signed, over TLS;
//! trusting only the system store, it refuses the unknown certificate and keeps the
//! notifications in its outbox.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::alerts::{SECRET, samples, wait_until};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, body::Incoming, service::service_fn};
use hyper_util::rt::TokioIo;
use tidegate_collector::certs::{GenCertsOptions, ca_paths, collector_paths, generate};
use tidegate_collector::sinks::alerts::{WebhookConfig, WebhookSink, verify_signature};

type Seen = Arc<Mutex<Vec<(String, String, Vec<u8>)>>>;

/// An HTTPS receiver on 127.0.0.1 with the certificate `gen-certs` made for "localhost".
async fn https_receiver(certs: &Path, seen: Seen) -> u16 {
    let c = collector_paths(certs);
    let cfg = tidegate_base::tls::server_config(&c.cert, &c.key, "receiver").unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(cfg);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, seen) = (acceptor.clone(), seen.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = service_fn(move |req: Request<Incoming>| {
                    let seen = seen.clone();
                    async move {
                        let h = |n: &str| {
                            req.headers()
                                .get(n)
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or_default()
                                .to_string()
                        };
                        let (id, sig) = (h("x-tidegate-id"), h("x-tidegate-signature"));
                        let body = req.into_body().collect().await?.to_bytes().to_vec();
                        seen.lock().unwrap().push((id, sig, body));
                        Ok::<_, hyper::Error>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    port
}

fn config(port: u16, ca_file: Option<std::path::PathBuf>, outbox: &Path) -> WebhookConfig {
    WebhookConfig {
        url: format!("https://localhost:{port}/hook"),
        ca_file,
        secret: SECRET.into(),
        timeout: Duration::from_secs(2),
        backoff_min: Duration::from_millis(20),
        backoff_max: Duration::from_millis(200),
        outbox_dir: outbox.to_path_buf(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_reach_an_https_receiver_signed_when_its_ca_is_configured() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    generate(&GenCertsOptions {
        out: certs.clone(),
        probes: vec![],
        collector_names: vec!["localhost".into()],
        collector_ips: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
        force: false,
    })
    .unwrap();
    let seen: Seen = Arc::default();
    let port = https_receiver(&certs, seen.clone()).await;
    let notes = samples(6);

    // Trusting only the system store: the receiver's certificate is refused, nothing is
    // delivered, everything stays queued.
    let untrusting = WebhookSink::start(config(port, None, &dir.path().join("outbox-a"))).unwrap();
    for n in &notes {
        untrusting.enqueue(n).unwrap();
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        seen.lock().unwrap().is_empty(),
        "delivered to an untrusted receiver"
    );
    assert_eq!(untrusting.outbox().len().unwrap(), notes.len());
    untrusting.shutdown().await;

    // With the receiver's CA: every notification, once, with a valid signature.
    let sink = WebhookSink::start(config(
        port,
        Some(ca_paths(&certs).cert),
        &dir.path().join("outbox-b"),
    ))
    .unwrap();
    for n in &notes {
        sink.enqueue(n).unwrap();
    }
    wait_until(
        Duration::from_secs(20),
        "every notification over HTTPS",
        || seen.lock().unwrap().len() >= notes.len(),
    )
    .await;
    sink.shutdown().await;
    let seen = seen.lock().unwrap();
    let ids: Vec<&str> = seen.iter().map(|(id, _, _)| id.as_str()).collect();
    let want: Vec<&str> = notes.iter().map(|n| n.id.as_str()).collect();
    assert_eq!(ids, want, "in order, each once");
    for (id, sig, body) in seen.iter() {
        assert!(
            verify_signature(SECRET.as_bytes(), body, sig),
            "signature of {id}"
        );
    }
}
