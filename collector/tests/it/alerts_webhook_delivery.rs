//! A webhook receiver that is down, fails, or is swapped under a restarting collector gets
//! every alert and violation exactly once, signed.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::alerts::{Behaviour, Log, Receiver, SECRET, free_addr, samples, wait_until};
use tidegate_collector::sinks::alerts::{
    AlertSinkError, Notification, WebhookConfig, WebhookSink, verify_signature,
};

fn config(addr: SocketAddr, outbox: &Path) -> WebhookConfig {
    WebhookConfig {
        ca_file: None,
        url: format!("http://{addr}/hook"),
        secret: SECRET.into(),
        timeout: Duration::from_secs(2),
        backoff_min: Duration::from_millis(20),
        backoff_max: Duration::from_millis(200),
        outbox_dir: outbox.to_path_buf(),
    }
}

/// Every request carried JSON, a valid signature of its body, a timestamp, and the body
/// of the notification its id names.
fn check_requests(log: &Log, sent: &[Notification]) {
    let by_id: HashMap<&str, &Notification> = sent.iter().map(|n| (n.id.as_str(), n)).collect();
    for d in &log.deliveries {
        assert_eq!(d.content_type, "application/json");
        assert!(
            verify_signature(SECRET.as_bytes(), &d.body, &d.signature),
            "bad signature on {}",
            d.id
        );
        assert!(!verify_signature(b"another secret", &d.body, &d.signature));
        assert!(d.timestamp.parse::<u64>().unwrap() > 1_600_000_000);
        let got: Notification = serde_json::from_slice(&d.body).unwrap();
        assert_eq!(&&got, by_id.get(d.id.as_str()).expect("known id"));
    }
}

fn ids(ns: &[Notification]) -> Vec<String> {
    ns.iter().map(|n| n.id.clone()).collect()
}

/// A test's outbox directory, the address its receiver listens on, and the notifications
/// it sends.
struct Case {
    dir: tempfile::TempDir,
    addr: SocketAddr,
    sent: Vec<Notification>,
}

impl Case {
    /// `n` sample notifications.
    fn new(n: u32) -> Case {
        Case {
            dir: tempfile::tempdir().unwrap(),
            addr: free_addr(),
            sent: samples(n),
        }
    }

    /// A sink delivering to the receiver's address, with the outbox in the directory.
    fn sink(&self) -> WebhookSink {
        WebhookSink::start(config(self.addr, self.dir.path())).unwrap()
    }

    /// Starts the receiver, answering as `behaviour` says.
    async fn receiver(&self, behaviour: Behaviour) -> Receiver {
        Receiver::start(self.addr, behaviour, Arc::new(Mutex::new(Log::default()))).await
    }
}

/// Stops the sink, then the receiver.
async fn stop(sink: WebhookSink, rx: Receiver) {
    sink.shutdown().await;
    rx.stop().await;
}

/// Waits until the receiver has accepted `n` notifications.
async fn accepted(rx: &Receiver, n: usize) {
    wait_until(Duration::from_secs(30), &format!("{n} accepted"), || {
        rx.accepted().len() == n
    })
    .await;
}

/// Waits until the receiver has accepted `n` notifications and the outbox is empty.
async fn delivered(rx: &Receiver, sink: &WebhookSink, n: usize) {
    accepted(rx, n).await;
    wait_until(Duration::from_secs(5), "empty outbox", || {
        sink.outbox().is_empty().unwrap()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receiver_down_then_failing_once_then_up_gets_each_notification_once() {
    let case = Case::new(12);
    let sent = &case.sent;
    let sink = case.sink();
    for n in sent {
        assert!(sink.enqueue(n).unwrap());
    }
    assert!(!sink.enqueue(&sent[3]).unwrap(), "same id queued twice");

    // Receiver down: everything waits in the outbox, retried.
    wait_until(Duration::from_secs(10), "3 retries", || {
        sink.metrics().retries.get() >= 3
    })
    .await;
    assert_eq!(sink.outbox().len().unwrap(), 12);
    assert_eq!(sink.metrics().delivered.get(), 0);
    assert_eq!(sink.metrics().queued.get(), 12);

    // Receiver up, answering 500 to the first request of each id.
    let behaviour = Behaviour {
        fail_first: true,
        ..Behaviour::default()
    };
    let rx = case.receiver(behaviour).await;
    delivered(&rx, &sink, 12).await;
    tokio::time::sleep(Duration::from_millis(200)).await; // anything extra would show up

    {
        let l = rx.log.lock().unwrap();
        assert_eq!(l.accepted, ids(sent), "in arrival order, each once");
        assert!(l.duplicates.is_empty(), "{:?}", l.duplicates);
        assert_eq!(l.deliveries.len(), 24, "one 500 and one 200 per id");
        for n in sent {
            let statuses: Vec<u16> = l
                .deliveries
                .iter()
                .filter(|d| d.id == n.id)
                .map(|d| d.status)
                .collect();
            assert_eq!(statuses, [500, 200], "{}", n.id);
        }
        check_requests(&l, sent);
    }
    assert_eq!(sink.metrics().delivered.get(), 12);
    assert!(sink.metrics().retries.get() >= 3 + 12);
    assert_eq!(sink.metrics().queued.get(), 0);
    assert_eq!(sink.metrics().dead_letters.get(), 0);
    stop(sink, rx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collector_restarted_while_the_receiver_is_down_loses_nothing() {
    let case = Case::new(15);
    let sent = &case.sent;

    let first = case.sink();
    for n in &sent[..10] {
        assert!(first.enqueue(n).unwrap());
    }
    drop(first); // collector stops; the receiver never answered

    let second = case.sink();
    assert_eq!(
        second.outbox().len().unwrap(),
        10,
        "queue survived the restart"
    );
    for n in &sent[..10] {
        assert!(!second.enqueue(n).unwrap(), "already queued: {}", n.id);
    }
    for n in &sent[10..] {
        assert!(second.enqueue(n).unwrap());
    }

    let rx = case.receiver(Behaviour::default()).await;
    accepted(&rx, 15).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    {
        let l = rx.log.lock().unwrap();
        assert_eq!(l.accepted, ids(sent));
        assert_eq!(l.deliveries.len(), 15, "no request repeated");
        check_requests(&l, sent);
    }
    stop(second, rx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_dropped_mid_delivery_and_restarted_delivers_the_rest_once() {
    let case = Case::new(40);
    let sent = &case.sent;
    let behaviour = Behaviour {
        delay: Duration::from_millis(25),
        ..Behaviour::default()
    };
    let rx = case.receiver(behaviour).await;

    let first = case.sink();
    for n in sent {
        first.enqueue(n).unwrap();
    }
    wait_until(Duration::from_secs(30), "8 accepted", || {
        rx.accepted().len() >= 8
    })
    .await;
    drop(first); // very likely while a request is in flight (each takes 25 ms)

    let second = case.sink();
    // The same alerts raised again (e.g. a replay after the restart): nothing is re-sent.
    for n in sent {
        assert!(!second.enqueue(n).unwrap(), "{} is known", n.id);
    }
    accepted(&rx, 40).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    {
        let l = rx.log.lock().unwrap();
        assert_eq!(l.accepted, ids(sent), "each once, in order");
        assert!(l.duplicates.is_empty(), "{:?}", l.duplicates);
        assert_eq!(l.deliveries.len(), 40, "no request repeated");
        check_requests(&l, sent);
    }
    assert!(second.outbox().is_empty().unwrap());
    stop(second, rx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_notification_is_kept_as_a_dead_letter_and_the_rest_arrive() {
    let case = Case::new(6);
    let refused = &case.sent[2];
    let behaviour = Behaviour {
        refuse: [refused.id.clone()].into(),
        ..Behaviour::default()
    };
    let rx = case.receiver(behaviour).await;
    let sink = case.sink();
    for n in &case.sent {
        sink.enqueue(n).unwrap();
    }
    delivered(&rx, &sink, 5).await;
    let dead = sink.outbox().dead_letters().unwrap();
    assert_eq!(dead.len(), 1);
    let kept: Notification = serde_json::from_slice(&std::fs::read(&dead[0]).unwrap()).unwrap();
    assert_eq!(&kept, refused);
    let reason = std::fs::read_to_string(format!("{}.reason", dead[0].display())).unwrap();
    assert!(reason.contains("400"), "{reason}");
    assert_eq!(sink.metrics().dead_letters.get(), 1);
    assert_eq!(sink.metrics().delivered.get(), 5);
    {
        let l = rx.log.lock().unwrap();
        assert_eq!(
            l.deliveries.iter().filter(|d| d.id == refused.id).count(),
            1,
            "a 400 is not retried"
        );
    }
    stop(sink, rx).await;
}

#[tokio::test]
async fn bad_webhook_config_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let good = config("127.0.0.1:9".parse().unwrap(), dir.path());
    let cases = [
        (
            WebhookConfig {
                url: "http//missing-colon".into(),
                ..good.clone()
            },
            "webhook.url",
        ),
        (
            WebhookConfig {
                url: "https://hooks.example/alert".into(),
                ca_file: Some("/nonexistent/regulator-ca.pem".into()),
                ..good.clone()
            },
            "webhook.ca_file: /nonexistent/regulator-ca.pem",
        ),
        (
            WebhookConfig {
                secret: String::new(),
                ..good.clone()
            },
            "webhook.secret: must not be empty",
        ),
        (
            WebhookConfig {
                backoff_min: Duration::from_secs(10),
                ..good.clone()
            },
            "webhook.backoff_max",
        ),
        (
            WebhookConfig {
                timeout: Duration::ZERO,
                ..good.clone()
            },
            "webhook.timeout",
        ),
    ];
    for (c, want) in cases {
        let e = WebhookSink::start(c).unwrap_err();
        assert!(matches!(e, AlertSinkError::Config { .. }), "{e:?}");
        assert!(e.to_string().contains(want), "{e} lacks {want}");
    }
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"").unwrap();
    let e = WebhookSink::start(WebhookConfig {
        outbox_dir: file.join("outbox"),
        ..good
    })
    .unwrap_err();
    assert!(e.to_string().contains("a-file/outbox"), "{e}");
}

#[test]
fn starting_outside_a_runtime_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let e = WebhookSink::start(config("127.0.0.1:9".parse().unwrap(), dir.path())).unwrap_err();
    assert!(matches!(e, AlertSinkError::NoRuntime), "{e:?}");
}
