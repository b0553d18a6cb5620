//! The collector's web UI and JSON API (`[api]` in the configuration).
//!
//! One axum server, on loopback by default: the embedded single-page UI ([`assets`]) and
//! `/api/v1/*`, which reads ClickHouse with bound parameters only ([`sql`]). Every API
//! route except login requires a session cookie or a bearer token ([`auth`]). The API is
//! described in `dashboards/openapi.yaml`.

pub mod alerts;
pub mod assets;
pub mod audit;
pub mod auth;
pub mod collector;
pub mod config;
pub mod enforce;
pub mod error;
pub mod evidence;
pub mod export;
pub mod filter;
pub mod flows;
pub mod geo;
pub mod hosts;
pub mod incidents;
pub mod live;
pub mod login_limit;
pub mod meta;
pub mod overview;
pub mod params;
pub mod probes;
pub mod saved_filters;
pub mod scope;
pub mod sql;
pub mod triage;
pub mod violations;

use std::sync::Arc;

use axum::{
    Router,
    http::{HeaderValue, header},
    middleware,
    routing::{delete, get, post, put},
};

pub use config::ApiConfig;

use crate::sinks::clickhouse::ClickHouseConfig;

/// What every handler gets.
#[derive(Clone)]
pub struct AppState {
    /// ClickHouse client on the tidegate database, unrestricted: handlers use
    /// [`AppState::db`] (a test checks that no other module touches this).
    unscoped: clickhouse::Client,
    /// The tidegate database (named in the line filters' subqueries, which a cluster's
    /// shards run without a default database).
    database: String,
    /// Users, tokens and sessions.
    pub auth: Arc<auth::Auth>,
    /// Where the map puts endpoints without a country.
    pub home_country: Option<String>,
    /// The evidence log, when the collector keeps one.
    pub evidence: Option<Arc<tidegate_evidence::EvidenceLog>>,
    /// Enforcement control, when the collector has a policy.
    pub enforce: Option<Arc<crate::enforce::EnforceHub>>,
    /// Served over HTTPS: session cookies are `Secure` and HSTS is sent.
    pub https: bool,
    /// The collector's metrics, for the collector health page.
    pub metrics: Option<Arc<std::sync::Mutex<prometheus_client::registry::Registry>>>,
    /// When the API started (the collector's uptime, near enough).
    pub started_ns: u64,
    /// The aggregation shards' live view, when this process aggregates.
    pub live: Option<Arc<live::Live>>,
    /// The probes each line restriction sees, recently read ([`scope::visible_probes`]).
    pub(crate) probe_scopes: Arc<scope::ProbeScopes>,
}

impl AppState {
    /// State for the API from its configuration and the collector's ClickHouse settings.
    pub fn new(api: &ApiConfig, ch: &ClickHouseConfig) -> Self {
        AppState {
            unscoped: ch.client(),
            database: ch.database.clone(),
            auth: Arc::new(auth::Auth::new(api)),
            home_country: api.home_country.clone(),
            evidence: None,
            enforce: None,
            https: api.tls.is_some(),
            metrics: None,
            started_ns: tidegate_base::clock::wall_ns(),
            live: None,
            probe_scopes: Arc::default(),
        }
    }
}

impl AppState {
    /// Records an action in the audit log (see [`audit`]).
    pub async fn audit(
        &self,
        user: &str,
        action: &'static str,
        client: Option<std::net::IpAddr>,
        target: &str,
        detail: &str,
    ) -> error::ApiResult<()> {
        audit::record(&self.unscoped, user, action, client, target, detail).await
    }

    /// The ClickHouse client for `who`'s requests: reads only its lines' rows.
    pub fn db(&self, who: &auth::Principal) -> clickhouse::Client {
        scope::client_for(&self.unscoped, &self.database, who)
    }
}

/// The whole application: UI, login, protected API routes.
pub fn router(state: AppState) -> Router {
    let protected = Router::new()
        .route("/meta", get(meta::meta))
        .route("/overview", get(overview::overview))
        .route("/geo", get(geo::geo))
        .route("/alerts", get(alerts::list))
        .route("/alerts/timeline", get(alerts::timeline))
        .route("/alerts/{id}", get(alerts::detail))
        .route(
            "/alerts/{id}/triage",
            get(triage::history).post(triage::act),
        )
        .route("/violations", get(violations::list))
        .route("/violations/rules", get(violations::rules))
        .route("/violations/{id}", get(violations::detail))
        .route("/flows", get(flows::search))
        .route("/top-talkers", get(flows::top_talkers))
        .route("/filters", get(saved_filters::list))
        .route(
            "/filters/{name}",
            put(saved_filters::save).delete(saved_filters::remove),
        )
        .route("/hosts/{ip}", get(hosts::host))
        .route("/probes", get(probes::probes))
        .route("/probes/history", get(probes::history))
        .route("/evidence/bundle/{id}", get(evidence::bundle))
        .route("/evidence/checkpoints", get(evidence::checkpoints))
        .route("/evidence/status/{id}", get(evidence::status))
        .route("/evidence/consistency", get(evidence::consistency))
        .route("/enforce/status", get(enforce::status))
        .route("/enforce/rules", get(enforce::rules))
        .route("/enforce/blocks", post(enforce::block))
        .route("/enforce/blocks/{id}", delete(enforce::unblock))
        .route("/audit", get(audit::list))
        .route("/collector", get(collector::health))
        .route("/live", get(live::live))
        .route("/incidents", get(incidents::list))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth::require));
    let api = Router::new()
        .route("/login", post(auth::login))
        .route("/logout", post(auth::logout))
        .route("/session", get(auth::session))
        .merge(protected)
        .fallback(|| async { error::ApiError::NotFound("API endpoint".into()) })
        .layer(middleware::from_fn(same_origin));
    Router::new()
        .nest("/api/v1", api)
        .fallback(assets::serve)
        .layer(middleware::map_response_with_state(
            state.clone(),
            security_headers,
        ))
        .with_state(state)
}

/// Requests that change something (every method but GET, HEAD and OPTIONS) must come
/// from the console's own pages, and carry JSON. `SameSite=Strict` keeps the session
/// cookie from other sites, not from another port or subdomain of the same site (a
/// co-hosted dashboard): such a page could post a `text/plain` form whose body is JSON.
/// Browsers say where a request comes from (`Sec-Fetch-Site`, `Origin`); scripts holding
/// a bearer token send neither and are not affected.
async fn same_origin(
    req: axum::extract::Request,
    next: middleware::Next,
) -> axum::response::Response {
    use axum::http::Method;
    use axum::response::IntoResponse;
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return next.run(req).await;
    }
    let h = req.headers();
    let forbid = |why: &str| error::ApiError::Forbidden(why.to_string()).into_response();
    if let Some(site) = h.get("sec-fetch-site") {
        // The browser's own judgement, against the page's origin (right behind a
        // reverse proxy that rewrites Host too).
        if !matches!(site.as_bytes(), b"same-origin" | b"none") {
            return forbid("cross-origin request refused (Sec-Fetch-Site)");
        }
    } else if let Some(origin) = h.get(header::ORIGIN) {
        // Browsers without Sec-Fetch-*: the Origin must be this server (a default port
        // may be written on one side and not the other).
        let origin = origin.to_str().unwrap_or("");
        let host = h.get(header::HOST).and_then(|v| v.to_str().ok());
        let same = match (origin.split_once("://"), host) {
            (Some((scheme, from)), Some(host)) => {
                let bare = |a: &str| -> String {
                    let port = if scheme.eq_ignore_ascii_case("https") {
                        ":443"
                    } else {
                        ":80"
                    };
                    a.strip_suffix(port).unwrap_or(a).to_ascii_lowercase()
                };
                bare(from) == bare(host)
            }
            _ => false,
        };
        if !same {
            return forbid("cross-origin request refused (Origin)");
        }
    }
    let has_body = h
        .get(header::CONTENT_LENGTH)
        .is_some_and(|l| l.as_bytes() != b"0")
        || h.contains_key(header::TRANSFER_ENCODING);
    let json = h
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
        });
    if has_body && !json {
        return error::ApiError::BadBody("the body must be application/json".into())
            .into_response();
    }
    next.run(req).await
}

async fn security_headers(
    axum::extract::State(st): axum::extract::State<AppState>,
    mut r: axum::response::Response,
) -> axum::response::Response {
    let h = r.headers_mut();
    if st.https {
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; connect-src 'self'; frame-ancestors 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    r
}

/// Binds the listener and serves the UI and API until the task is dropped.
pub async fn serve(
    api: ApiConfig,
    ch: ClickHouseConfig,
    evidence: Option<Arc<tidegate_evidence::EvidenceLog>>,
    enforce: Option<Arc<crate::enforce::EnforceHub>>,
    policy_home: Option<String>,
    metrics: Option<Arc<std::sync::Mutex<prometheus_client::registry::Registry>>>,
    aggregator: Option<&Arc<crate::aggregate::Aggregator>>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(api.listen).await?;
    let addr = listener.local_addr()?;
    let tls = api.tls.clone().map(tokio_rustls::TlsAcceptor::from);
    if tls.is_some() {
        tracing::info!(%addr, "web UI and API on https://{addr}/");
    } else {
        tracing::info!(%addr, "web UI and API on http://{addr}/");
        if !addr.ip().is_loopback() {
            tracing::warn!(%addr, "the console is served without TLS beyond loopback: set api.tls_cert and api.tls_key");
        }
    }
    for u in api.users.iter().filter(|u| u.argon2.is_none()) {
        tracing::warn!(user = %u.name,
            "api.user password_sha256 is an unsalted digest: replace it with password_hash \
             (tidegate-collector hash-password)");
    }
    let mut state = AppState::new(&api, &ch);
    if state.home_country.is_none()
        && let Some(c) = policy_home
    {
        tracing::info!(country = %c, "the map's home country is the policy's domestic zone's (set api.home_country to choose another)");
        state.home_country = Some(c);
    }
    state.evidence = evidence;
    state.enforce = enforce;
    state.metrics = metrics;
    state.live = aggregator.map(|a| Arc::new(live::Live::new(a)));
    let app = router(state);
    Ok(tokio::spawn(serve_connections(listener, app, tls)))
}

/// Most open UI/API connections.
pub const MAX_CONNECTIONS: usize = 512;
/// Most open connections from one client address.
pub const MAX_CONNECTIONS_PER_ADDRESS: usize = 64;
/// Time a client has to send a request's headers (also an idle keep-alive connection's
/// next request); slower connections are closed.
pub const HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Time a client has, from its request's headers, to send the whole body; a slower one
/// gets 400 and its connection's slot back (a body trickled a byte at a time held a slot
/// for as long as the client liked, before any login).
pub const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A request body that must arrive whole within [`BODY_TIMEOUT`].
struct Deadline<B> {
    inner: B,
    sleep: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl<B> hyper::body::Body for Deadline<B>
where
    B: hyper::body::Body<Data = bytes::Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = bytes::Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<bytes::Bytes>, axum::BoxError>>> {
        use std::future::Future;
        use std::task::Poll;
        if let Poll::Ready(f) = std::pin::Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(f.map(|r| r.map_err(Into::into)));
        }
        if self.sleep.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(format!(
                "request body not received within {} s",
                BODY_TIMEOUT.as_secs()
            )
            .into())));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// Accepts connections within the caps and serves each with HTTP/1.1 (over TLS when
/// `tls` is given; the handshake has [`HEADER_TIMEOUT`] too), a header-read timeout and
/// the client's address (for login throttling and logs).
async fn serve_connections(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use std::net::SocketAddr;
    use tidegate_base::limits::{Slots, Throttle};
    let open = Slots::new(MAX_CONNECTIONS, MAX_CONNECTIONS_PER_ADDRESS);
    let mut refused = Throttle::new(std::time::Duration::from_secs(10));
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "accepting a UI connection failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let permit = match open.admit(peer.ip()) {
            Ok(p) => p,
            Err(why) => {
                drop(tcp);
                if let Some(n) = refused.due() {
                    tracing::warn!(client = %peer, ?why, refused = n,
                        "UI connections refused: too many open connections");
                }
                continue;
            }
        };
        let (app, tls) = (app.clone(), tls.clone());
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(
                move |mut req: hyper::Request<hyper::body::Incoming>| {
                    req.extensions_mut()
                        .insert(axum::extract::ConnectInfo::<SocketAddr>(peer));
                    let req = req.map(|inner| {
                        axum::body::Body::new(Deadline {
                            inner,
                            sleep: Box::pin(tokio::time::sleep(BODY_TIMEOUT)),
                        })
                    });
                    tower::ServiceExt::oneshot(app.clone(), req)
                },
            );
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT);
            let ended = match tls {
                None => http.serve_connection(TokioIo::new(tcp), svc).await,
                Some(acceptor) => {
                    match tokio::time::timeout(HEADER_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => http.serve_connection(TokioIo::new(stream), svc).await,
                        Ok(Err(e)) => {
                            tracing::debug!(client = %peer, error = %e, "UI TLS handshake failed");
                            Ok(())
                        }
                        Err(_) => {
                            tracing::debug!(client = %peer, "UI TLS handshake timed out");
                            Ok(())
                        }
                    }
                }
            };
            if let Err(e) = ended {
                tracing::debug!(client = %peer, error = %e, "UI connection ended");
            }
            drop(permit);
        });
    }
}

#[cfg(test)]
mod tests {
    /// Every route of [`super::router`] under `/api/v1`.
    const ROUTES: [&str; 32] = [
        "/login",
        "/logout",
        "/session",
        "/meta",
        "/overview",
        "/geo",
        "/alerts",
        "/alerts/timeline",
        "/alerts/{id}",
        "/alerts/{id}/triage",
        "/violations",
        "/violations/rules",
        "/violations/{id}",
        "/flows",
        "/top-talkers",
        "/filters",
        "/filters/{name}",
        "/probes",
        "/probes/history",
        "/evidence/bundle/{id}",
        "/evidence/checkpoints",
        "/evidence/consistency",
        "/evidence/status/{id}",
        "/enforce/status",
        "/enforce/rules",
        "/enforce/blocks",
        "/enforce/blocks/{id}",
        "/audit",
        "/hosts/{ip}",
        "/collector",
        "/live",
        "/incidents",
    ];

    #[test]
    fn handlers_read_clickhouse_only_through_the_principals_scope() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/api");
        for e in std::fs::read_dir(&dir).unwrap() {
            let path = e.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            if name == "mod.rs" {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(
                !text.contains(".unscoped"),
                "{name} uses the unrestricted ClickHouse client: use AppState::db(&who)"
            );
        }
    }

    #[test]
    fn the_openapi_file_documents_every_route() {
        let spec = include_str!("../../../dashboards/openapi.yaml");
        // Without whitespace: rustfmt may break a long `.route(` call over lines.
        let router: String = include_str!("mod.rs")
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        for r in ROUTES {
            assert!(
                spec.contains(&format!("\n  {r}:\n")),
                "dashboards/openapi.yaml does not document {r}"
            );
            assert!(
                router.contains(&format!(".route(\"{r}\"")),
                "{r} is not routed"
            );
        }
        let routed = router.matches(".route(\"/").count();
        assert_eq!(
            routed, 32,
            "a route was added: list it here and in openapi.yaml"
        );
    }
}
