//! Shared by the alert sink tests: sample alerts and violations, and a real HTTP webhook
//! receiver on 127.0.0.1 that records every request.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::{Router, body::Bytes, extract::State, http::HeaderMap, http::StatusCode, routing::post};
use tidegate_collector::sinks::alerts::Notification;
use tidegate_threat::detect::alert::{Alert, AlertKind, Endpoint};
use tidegate_threat::policy::ViolationState;
use tidegate_threat::policy::{Violation, ViolationKind};
use tidegate_threat::{Finding, Severity};
use tidegate_wire::record::FlowRecord;
use tokio::sync::oneshot;

/// The shared secret of the tests' receivers.
pub const SECRET: &str = "webhook-test-secret";

fn flow(i: u32) -> FlowRecord {
    FlowRecord {
        src: IpAddr::from([10, 0, 0, (i % 250) as u8 + 1]),
        dst: IpAddr::from([192, 0, 2, 7]),
        sport: 40_000 + i as u16,
        dport: 443,
        proto: 6,
        packets: 3,
        bytes: 180,
        first: 1_700_000_000_000_000_000 + u64::from(i) * 1_000_000,
        last: 1_700_000_000_500_000_000 + u64::from(i) * 1_000_000,
        tcp_flags: 0x02,
        line: "line-a".into(),
        ..Default::default()
    }
}

/// `n` notifications, alternating alerts and policy violations, all with distinct ids.
pub fn samples(n: u32) -> Vec<Notification> {
    (0..n)
        .map(|i| {
            let f = flow(i);
            if i % 2 == 0 {
                let alert = Alert {
                    id: format!("{:016x}", 0xa1e7_0000_u64 + u64::from(i)),
                    kind: AlertKind::PortScan,
                    severity: Severity::High,
                    first_ns: f.first,
                    last_ns: f.last,
                    src: Some(Endpoint::Addr(f.src)),
                    dst: Some(Endpoint::Addr(f.dst)),
                    port: None,
                    line: f.line.to_string(),
                    key: format!("{}>{}", f.src, f.dst),
                    measured: 120.0 + f64::from(i),
                    threshold: 100.0,
                    unit: "ports".into(),
                    description: format!("{} probed 120 ports of {}", f.src, f.dst),
                    evidence: vec![f],
                    volume: None,
                };
                Notification::from_finding(Finding::Alert(&alert)).unwrap()
            } else {
                let v = Violation {
                    rule_id: format!("r{i}"),
                    rule_name: "no transfers to the test net".into(),
                    rule_location: "policy.toml:12".into(),
                    rule_text: "[[rule]]\nid = \"r\"".into(),
                    kind: ViolationKind::Deny,
                    severity: Severity::Critical,
                    line: f.line.to_string(),
                    src: f.src,
                    dst: f.dst,
                    first_ns: f.first,
                    last_ns: f.last,
                    description: "denied by rule r".into(),
                    evidence: vec![f],
                    action: None,
                };
                Notification::from_finding(Finding::Violation(&ViolationState::opening(v))).unwrap()
            }
        })
        .collect()
}

/// How a test receiver answers.
#[derive(Clone, Debug, Default)]
pub struct Behaviour {
    /// Answer 500 to the first request of each id.
    pub fail_first: bool,
    /// Ids answered 400.
    pub refuse: HashSet<String>,
    /// Delay before answering each request.
    pub delay: Duration,
}

/// One request as the receiver saw it.
#[derive(Clone, Debug)]
pub struct Delivery {
    /// `X-Tidegate-Id`.
    pub id: String,
    /// `X-Tidegate-Signature`.
    pub signature: String,
    /// `X-Tidegate-Timestamp`.
    pub timestamp: String,
    /// `Content-Type`.
    pub content_type: String,
    /// The body.
    pub body: Vec<u8>,
    /// What the receiver answered.
    pub status: u16,
}

/// Everything a receiver saw.
#[derive(Debug, Default)]
pub struct Log {
    /// Every request, in arrival order.
    pub deliveries: Vec<Delivery>,
    /// Ids accepted for the first time (a receiver deduplicating on `X-Tidegate-Id`).
    pub accepted: Vec<String>,
    /// Requests answered 2xx for an id already accepted.
    pub duplicates: Vec<String>,
}

struct Shared {
    behaviour: Behaviour,
    log: Arc<Mutex<Log>>,
    failed_once: Mutex<HashSet<String>>,
}

/// A webhook receiver listening on 127.0.0.1.
pub struct Receiver {
    /// What it saw (kept across stop/start when passed to [`Receiver::start`]).
    pub log: Arc<Mutex<Log>>,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

pub use tidegate_testkit::free_addr;

fn header(h: &HeaderMap, name: &str) -> String {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

async fn hook(State(s): State<Arc<Shared>>, h: HeaderMap, body: Bytes) -> StatusCode {
    if !s.behaviour.delay.is_zero() {
        tokio::time::sleep(s.behaviour.delay).await;
    }
    let id = header(&h, "x-tidegate-id");
    let status = if s.behaviour.refuse.contains(&id) {
        StatusCode::BAD_REQUEST
    } else if s.behaviour.fail_first && s.failed_once.lock().unwrap().insert(id.clone()) {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    };
    let mut log = s.log.lock().unwrap();
    if status == StatusCode::OK {
        if log.accepted.contains(&id) {
            log.duplicates.push(id.clone());
        } else {
            log.accepted.push(id.clone());
        }
    }
    log.deliveries.push(Delivery {
        id,
        signature: header(&h, "x-tidegate-signature"),
        timestamp: header(&h, "x-tidegate-timestamp"),
        content_type: header(&h, "content-type"),
        body: body.to_vec(),
        status: status.as_u16(),
    });
    status
}

impl Receiver {
    /// Starts a receiver on `addr` answering POST /hook.
    pub async fn start(addr: SocketAddr, behaviour: Behaviour, log: Arc<Mutex<Log>>) -> Self {
        let shared = Arc::new(Shared {
            behaviour,
            log: log.clone(),
            failed_once: Mutex::new(HashSet::new()),
        });
        let app = Router::new().route("/hook", post(hook)).with_state(shared);
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let (stop, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        });
        Receiver { log, stop, task }
    }

    /// Ids accepted so far.
    pub fn accepted(&self) -> Vec<String> {
        self.log.lock().unwrap().accepted.clone()
    }

    /// Stops listening.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let abort = self.task.abort_handle();
        if tokio::time::timeout(Duration::from_secs(2), self.task)
            .await
            .is_err()
        {
            abort.abort();
        }
    }
}

/// Polls `cond` every 10 ms until it holds; panics with `what` after `limit`.
pub async fn wait_until(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
