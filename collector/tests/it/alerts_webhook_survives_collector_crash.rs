//! A collector process killed (SIGKILL) while delivering alerts to a webhook, then started
//! again on the same outbox: the receiver ends up with every alert, in order, none lost;
//! deduplicating on X-Tidegate-Id it accepts each exactly once.

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::alerts::{Behaviour, Log, Receiver, SECRET, free_addr, samples, wait_until};
use tidegate_collector::sinks::alerts::{WebhookConfig, WebhookSink, verify_signature};

/// The full name of the child test in this binary (`--exact` needs the module path).
const CHILD: &str = "alerts_webhook_survives_collector_crash::child_collector_process";

/// Not a test on its own: the collector process that the test below starts and kills.
/// Queues the first `ALERTS_COUNT` samples into the webhook sink and runs until killed.
#[test]
#[ignore = "child process of collector_killed_mid_delivery_and_restarted_loses_nothing"]
fn child_collector_process() {
    let url = std::env::var("ALERTS_URL").expect("ALERTS_URL");
    let outbox = std::env::var("ALERTS_OUTBOX").expect("ALERTS_OUTBOX");
    let count: u32 = std::env::var("ALERTS_COUNT").unwrap().parse().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let sink = WebhookSink::start(WebhookConfig {
            ca_file: None,
            url,
            secret: SECRET.into(),
            timeout: Duration::from_secs(2),
            backoff_min: Duration::from_millis(20),
            backoff_max: Duration::from_millis(200),
            outbox_dir: outbox.into(),
        })
        .unwrap();
        for n in &samples(count) {
            sink.enqueue(n).unwrap();
        }
        println!("queued");
        std::future::pending::<()>().await;
    });
}

fn spawn_child(url: &str, outbox: &std::path::Path, count: u32) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            CHILD,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("ALERTS_URL", url)
        .env("ALERTS_OUTBOX", outbox)
        .env("ALERTS_COUNT", count.to_string())
        .stdout(Stdio::null())
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collector_killed_mid_delivery_and_restarted_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let url = format!("http://{addr}/hook");
    let log = Arc::new(Mutex::new(Log::default()));
    let behaviour = Behaviour {
        delay: Duration::from_millis(25),
        fail_first: true,
        ..Behaviour::default()
    };
    let rx = Receiver::start(addr, behaviour, log.clone()).await;

    let mut first = spawn_child(&url, dir.path(), 30);
    wait_until(Duration::from_secs(60), "10 accepted", || {
        rx.accepted().len() >= 10
    })
    .await;
    first.kill().unwrap(); // SIGKILL: no shutdown, no flush
    first.wait().unwrap();
    let before = rx.accepted().len();
    assert!(before < 30, "killed before the end ({before} accepted)");

    // Restarted, the collector raises the same 30 alerts again plus 10 new ones.
    let mut second = spawn_child(&url, dir.path(), 40);
    wait_until(Duration::from_secs(60), "40 accepted", || {
        rx.accepted().len() == 40
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    second.kill().unwrap();
    second.wait().unwrap();

    let sent = samples(40);
    {
        let l = log.lock().unwrap();
        let want: Vec<String> = sent.iter().map(|n| n.id.clone()).collect();
        assert_eq!(l.accepted, want, "every alert accepted once, in order");
        // Only the request in flight at the kill can arrive twice (receivers dedupe on the id).
        assert!(l.duplicates.len() <= 1, "{:?}", l.duplicates);
        for d in &l.deliveries {
            assert!(verify_signature(SECRET.as_bytes(), &d.body, &d.signature));
        }
    }
    rx.stop().await;
}
