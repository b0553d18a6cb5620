//! Webhook alert sink: signed HTTP POSTs from a durable outbox, retried with backoff.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Request, StatusCode, Uri, header};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use super::{AlertSinkError, Notification, Outbox, OutboxEntry, WebhookMetrics, sign};

/// Header carrying the notification id (receivers deduplicate on it).
pub const ID_HEADER: &str = "x-tidegate-id";
/// Header carrying `sha256=<hex HMAC-SHA256(secret, body)>`.
pub const SIGNATURE_HEADER: &str = "x-tidegate-signature";
/// Header carrying the Unix time (seconds) of the attempt.
pub const TIMESTAMP_HEADER: &str = "x-tidegate-timestamp";

/// How often a sink waiting for the outbox lock (held by a previous sink still finishing
/// its in-flight request) tries again.
const LOCK_POLL: Duration = Duration::from_millis(20);
/// Most bytes of a receiver's answer kept for the logs.
const ANSWER_MAX: usize = 1024;

/// Where and how to deliver notifications.
#[derive(Clone, Debug)]
pub struct WebhookConfig {
    /// Receiver URL (`https://host:port/path`, or `http://` for a receiver on a trusted
    /// network or behind a local TLS proxy).
    pub url: String,
    /// CA certificates (PEM) that may sign an `https` receiver's certificate; `None`: the
    /// system's trust store (`/etc/ssl/certs/ca-certificates.crt`).
    pub ca_file: Option<PathBuf>,
    /// HMAC-SHA256 key of the `X-Tidegate-Signature` header; must not be empty.
    pub secret: String,
    /// Deadline of one attempt (connect, send, read the answer).
    pub timeout: Duration,
    /// First retry delay.
    pub backoff_min: Duration,
    /// Largest retry delay.
    pub backoff_max: Duration,
    /// Outbox directory (created if missing); shared by restarts of the sink.
    pub outbox_dir: PathBuf,
}

impl WebhookConfig {
    /// Checks every field; returns the parsed URL.
    fn validate(&self) -> Result<Uri, AlertSinkError> {
        let bad = |field, reason: String| AlertSinkError::Config { field, reason };
        let uri: Uri = self
            .url
            .parse()
            .map_err(|e| bad("url", format!("{:?} is not a URL: {e}", self.url)))?;
        match uri.scheme_str() {
            Some("http") | Some("https") => {}
            _ => {
                return Err(bad(
                    "url",
                    format!("{:?} must start with https:// or http://", self.url),
                ));
            }
        }
        if uri.host().is_none_or(str::is_empty) {
            return Err(bad("url", format!("{:?} has no host", self.url)));
        }
        if self.secret.is_empty() {
            return Err(bad(
                "secret",
                "must not be empty (it signs every notification)".into(),
            ));
        }
        if self.timeout.is_zero() {
            return Err(bad("timeout", "must be greater than zero".into()));
        }
        if self.backoff_min.is_zero() {
            return Err(bad("backoff_min", "must be greater than zero".into()));
        }
        if self.backoff_min > self.backoff_max {
            return Err(bad(
                "backoff_max",
                format!(
                    "{:?} is smaller than backoff_min {:?}",
                    self.backoff_max, self.backoff_min
                ),
            ));
        }
        Ok(uri)
    }
}

/// Delivers notifications to a webhook receiver. [`WebhookSink::enqueue`] makes a
/// notification durable in the outbox; a background task POSTs queued notifications one
/// at a time in arrival order, deleting each once the receiver answers 2xx.
///
/// Dropping the sink stops the task after its in-flight request; a new sink on the same
/// outbox directory waits for it (outbox lock), then resumes where it stopped.
#[derive(Debug)]
pub struct WebhookSink {
    outbox: Arc<Outbox>,
    wake: Arc<Notify>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
    metrics: WebhookMetrics,
}

impl WebhookSink {
    /// Checks `config`, opens the outbox and starts the delivery task (inside the current
    /// Tokio runtime). Notifications left in the outbox by an earlier run are sent first.
    pub fn start(config: WebhookConfig) -> Result<Self, AlertSinkError> {
        let uri = config.validate()?;
        let rt = tokio::runtime::Handle::try_current().map_err(|_| AlertSinkError::NoRuntime)?;
        let outbox = Arc::new(Outbox::open(&config.outbox_dir)?);
        let metrics = WebhookMetrics::default();
        metrics.queued.set(outbox.len()? as i64);
        let wake = Arc::new(Notify::new());
        let (stop, stop_rx) = watch::channel(false);
        let worker = Worker {
            outbox: outbox.clone(),
            wake: wake.clone(),
            metrics: metrics.clone(),
            client: Client::builder(TokioExecutor::new()).build(connector(&config)?),
            uri,
            secret: config.secret.into_bytes(),
            timeout: config.timeout,
            backoff_min: config.backoff_min,
            backoff_max: config.backoff_max,
        };
        let task = rt.spawn(worker.run(stop_rx));
        Ok(WebhookSink {
            outbox,
            wake,
            stop,
            task: Some(task),
            metrics,
        })
    }

    /// Makes `n` durable in the outbox (written and fsync'd before this returns) and wakes
    /// the delivery task; returns false when its id was already queued (nothing written).
    /// Blocks on the disk write: from async code, expect a few milliseconds.
    pub fn enqueue(&self, n: &Notification) -> Result<bool, AlertSinkError> {
        let fresh = self.outbox.enqueue(n)?;
        if fresh {
            self.metrics.queued.inc();
            self.wake.notify_one();
        }
        Ok(fresh)
    }

    /// The sink's metrics (register them with [`WebhookMetrics::register`]).
    pub fn metrics(&self) -> &WebhookMetrics {
        &self.metrics
    }

    /// The outbox (to inspect what is queued or dead-lettered).
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// Stops the delivery task and waits for it (an in-flight request is finished first).
    pub async fn shutdown(mut self) {
        self.stop.send_replace(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for WebhookSink {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

/// An HTTP(S) connector that trusts the configured CA file (or the system store).
fn connector(config: &WebhookConfig) -> Result<HttpsConnector<HttpConnector>, AlertSinkError> {
    let https = config.url.starts_with("https://");
    let tls = tidegate_base::tls::trusting_client_config(config.ca_file.as_deref(), https)
        .map_err(|e| AlertSinkError::Config {
            field: "ca_file",
            reason: match e {
                tidegate_base::tls::TlsError::Pem { path, reason, .. } => {
                    format!("{}: {reason}", path.display())
                }
                other => other.to_string(),
            },
        })?;
    Ok(hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .build())
}

/// What became of one queued notification.
enum Step {
    /// Delivered, dead-lettered or gone: go on with the next.
    Done,
    /// The sink is stopping.
    Stopped,
}

/// How one attempt ended.
enum Attempt {
    /// 2xx.
    Accepted,
    /// Worth retrying: connection error, timeout, 5xx, 429 (with its Retry-After).
    Retry(String, Option<Duration>),
    /// The receiver refuses it for good (other 4xx, 3xx).
    Refused(String),
}

/// The background delivery task's state.
struct Worker {
    outbox: Arc<Outbox>,
    wake: Arc<Notify>,
    metrics: WebhookMetrics,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    uri: Uri,
    secret: Vec<u8>,
    timeout: Duration,
    backoff_min: Duration,
    backoff_max: Duration,
}

impl Worker {
    async fn run(self, mut stop: watch::Receiver<bool>) {
        let _lock = loop {
            if *stop.borrow() {
                return;
            }
            match self.outbox.try_lock() {
                Ok(Some(lock)) => break lock,
                Ok(None) => {}
                Err(e) => tracing::error!(error = %e, "webhook outbox lock failed"),
            }
            if !pause(LOCK_POLL, &mut stop).await {
                return;
            }
        };
        loop {
            if *stop.borrow() {
                return;
            }
            let pending = match self.outbox.pending() {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(error = %e, "webhook outbox unreadable");
                    if !pause(self.backoff_max, &mut stop).await {
                        return;
                    }
                    continue;
                }
            };
            self.metrics.queued.set(pending.len() as i64);
            if pending.is_empty() {
                tokio::select! {
                    _ = self.wake.notified() => {}
                    r = stop.changed() => if r.is_err() || *stop.borrow() { return },
                }
                continue;
            }
            for e in &pending {
                if *stop.borrow() {
                    return;
                }
                if let Step::Stopped = self.deliver(e, &mut stop).await {
                    return;
                }
                self.metrics.queued.dec();
            }
        }
    }

    /// Sends one queued notification until it is accepted or refused.
    async fn deliver(&self, e: &OutboxEntry, stop: &mut watch::Receiver<bool>) -> Step {
        let body = match self.outbox.load(e) {
            Ok(Some((_, bytes))) => Bytes::from(bytes),
            Ok(None) => return Step::Done,
            Err(err @ AlertSinkError::Json { .. }) => {
                self.dead_letter(e, &format!("unreadable: {err}"));
                return Step::Done;
            }
            Err(err) => {
                tracing::error!(error = %err, "webhook outbox file unreadable; retrying");
                self.metrics.retries.inc();
                return if pause(self.backoff_max, stop).await {
                    Step::Done
                } else {
                    Step::Stopped
                };
            }
        };
        let signature = sign(&self.secret, &body);
        let mut attempt: u32 = 0;
        loop {
            match self.attempt(&e.id, &signature, body.clone()).await {
                Attempt::Accepted => {
                    self.metrics.delivered.inc();
                    if let Err(err) = self.outbox.mark_delivered(e) {
                        tracing::error!(error = %err, id = %e.id, "delivered, but the outbox file could not be deleted (it will be sent again; receivers dedupe on X-Tidegate-Id)");
                    }
                    return Step::Done;
                }
                Attempt::Refused(reason) => {
                    self.dead_letter(e, &reason);
                    return Step::Done;
                }
                Attempt::Retry(reason, retry_after) => {
                    self.metrics.retries.inc();
                    let delay = match retry_after {
                        Some(d) => d.clamp(self.backoff_min, self.backoff_max),
                        None => backoff(self.backoff_min, self.backoff_max, attempt),
                    };
                    if attempt.is_power_of_two() || attempt == 0 {
                        tracing::warn!(id = %e.id, attempt = attempt + 1, retry_in = ?delay, %reason, "webhook delivery failed; will retry");
                    }
                    attempt = attempt.saturating_add(1);
                    if !pause(delay, stop).await {
                        return Step::Stopped;
                    }
                }
            }
        }
    }

    fn dead_letter(&self, e: &OutboxEntry, reason: &str) {
        self.metrics.dead_letters.inc();
        match self.outbox.dead_letter(e, reason) {
            Ok(path) => {
                tracing::error!(id = %e.id, %reason, file = %path.display(), "webhook receiver refused a notification; kept as a dead letter")
            }
            Err(err) => {
                tracing::error!(id = %e.id, %reason, error = %err, "webhook receiver refused a notification, and moving it to the dead letters failed")
            }
        }
    }

    /// One POST of `body`.
    async fn attempt(&self, id: &str, signature: &str, body: Bytes) -> Attempt {
        let now = tidegate_base::clock::wall_secs();
        let req = match Request::post(self.uri.clone())
            .header(header::CONTENT_TYPE, "application/json")
            .header(ID_HEADER, id)
            .header(SIGNATURE_HEADER, signature)
            .header(TIMESTAMP_HEADER, now.to_string())
            .body(Full::new(body))
        {
            Ok(r) => r,
            Err(e) => return Attempt::Refused(format!("cannot build the request: {e}")),
        };
        let exchange = async {
            let resp = self.client.request(req).await?;
            let status = resp.status();
            let retry_after = resp
                .headers()
                .get(header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let answer = Limited::new(resp.into_body(), ANSWER_MAX)
                .collect()
                .await
                .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
                .unwrap_or_default();
            Ok::<_, hyper_util::client::legacy::Error>((status, retry_after, answer))
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Err(_) => Attempt::Retry(format!("no answer within {:?}", self.timeout), None),
            Ok(Err(e)) => Attempt::Retry(format!("{} unreachable: {e:?}", self.uri), None),
            Ok(Ok((status, retry_after, answer))) => classify(status, retry_after, &answer),
        }
    }
}

/// What an HTTP status means for the notification.
fn classify(status: StatusCode, retry_after: Option<Duration>, answer: &str) -> Attempt {
    let what = format!("HTTP {status}: {}", answer.trim());
    if status.is_success() {
        Attempt::Accepted
    } else if status == StatusCode::TOO_MANY_REQUESTS {
        Attempt::Retry(what, retry_after)
    } else if status.is_server_error() {
        Attempt::Retry(what, None)
    } else {
        Attempt::Refused(what)
    }
}

/// Delay before retry number `attempt` (0-based): `min * 2^attempt` capped at `max`, of
/// which a random half is jitter (so many collectors do not retry in lockstep).
fn backoff(min: Duration, max: Duration, attempt: u32) -> Duration {
    let base = min
        .checked_mul(1u32 << attempt.min(30))
        .unwrap_or(max)
        .min(max);
    let half = base / 2;
    let mut r = [0u8; 8];
    let fraction = match ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut r) {
        Ok(()) => u64::from_le_bytes(r) as f64 / u64::MAX as f64,
        Err(_) => 0.5,
    };
    half + half.mul_f64(fraction)
}

/// Sleeps `d` unless the sink stops first; false when it stopped.
async fn pause(d: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => !*stop.borrow(),
        r = stop.changed() => r.is_ok() && !*stop.borrow(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: &str, secret: &str) -> WebhookConfig {
        WebhookConfig {
            url: url.into(),
            ca_file: None,
            secret: secret.into(),
            timeout: Duration::from_secs(1),
            backoff_min: Duration::from_millis(10),
            backoff_max: Duration::from_secs(1),
            outbox_dir: PathBuf::from("/unused"),
        }
    }

    #[test]
    fn backoff_doubles_within_bounds_with_jitter() {
        let (min, max) = (Duration::from_millis(100), Duration::from_secs(2));
        for attempt in 0..40 {
            let d = backoff(min, max, attempt);
            let base = (min * 2u32.pow(attempt.min(20))).min(max);
            assert!(
                d >= base / 2 && d <= base,
                "attempt {attempt}: {d:?} vs {base:?}"
            );
        }
    }

    #[test]
    fn statuses_are_classified() {
        assert!(matches!(
            classify(StatusCode::OK, None, ""),
            Attempt::Accepted
        ));
        assert!(matches!(
            classify(StatusCode::NO_CONTENT, None, ""),
            Attempt::Accepted
        ));
        assert!(matches!(
            classify(
                StatusCode::TOO_MANY_REQUESTS,
                Some(Duration::from_secs(3)),
                ""
            ),
            Attempt::Retry(_, Some(_))
        ));
        assert!(matches!(
            classify(StatusCode::BAD_GATEWAY, None, ""),
            Attempt::Retry(..)
        ));
        assert!(
            matches!(classify(StatusCode::BAD_REQUEST, None, "no"), Attempt::Refused(r) if r.contains("400"))
        );
        assert!(matches!(
            classify(StatusCode::MOVED_PERMANENTLY, None, ""),
            Attempt::Refused(_)
        ));
    }

    #[test]
    fn config_errors_name_the_field() {
        let cases = [
            (config("not a url", "k"), "webhook.url"),
            (config("ftp://x/", "k"), "webhook.url"),
            (
                config("gopher://x/", "k"),
                "must start with https:// or http://",
            ),
            (config("/path-only", "k"), "webhook.url"),
            (config("http://x/", ""), "webhook.secret"),
        ];
        for (c, want) in cases {
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains(want), "{e} lacks {want}");
        }
        let mut c = config("http://127.0.0.1:1/hook", "k");
        assert!(c.validate().is_ok());
        c.backoff_max = Duration::from_millis(1);
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("webhook.backoff_max")
        );
    }
}
