//! Access control: users log in with a password and get a session cookie; automation
//! sends `Authorization: Bearer <token>`. Secrets are compared by SHA-256 digest in
//! constant time; sessions live in memory (a restart logs everyone out).

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use axum::{
    Json,
    extract::{Request, State},
    http::{HeaderMap, HeaderValue, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use ring::rand::{SecureRandom, SystemRandom};
use serde::Deserialize;

use super::{
    AppState,
    config::{ApiConfig, Credential},
    error::{ApiError, ApiResult},
};

/// Name of the session cookie.
pub const COOKIE: &str = "tidegate_session";

/// Who made a request.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Principal {
    /// User or token name.
    pub name: String,
    /// `"user"` or `"token"`.
    pub kind: &'static str,
}

/// Users, tokens and live sessions.
pub struct Auth {
    users: Vec<Credential>,
    tokens: Vec<Credential>,
    ttl: Duration,
    sessions: Mutex<HashMap<String, (Principal, Instant)>>,
    rng: SystemRandom,
}

/// The hex SHA-256 of a password or token: what `[[api.user]] password_sha256` and
/// `[[api.token]] sha256` hold.
pub fn digest_hex(secret: &str) -> String {
    sha256(secret).iter().map(|b| format!("{b:02x}")).collect()
}

fn sha256(s: &str) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, s.as_bytes());
    d.as_ref().try_into().expect("32-byte digest")
}

fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Most sessions kept at once; the oldest are dropped beyond it.
const MAX_SESSIONS: usize = 10_000;

impl Auth {
    /// Access control from the `[api]` configuration.
    pub fn new(cfg: &ApiConfig) -> Self {
        Auth {
            users: cfg.users.clone(),
            tokens: cfg.tokens.clone(),
            ttl: cfg.session_ttl,
            sessions: Mutex::new(HashMap::new()),
            rng: SystemRandom::new(),
        }
    }

    /// Checks a user's password; on success opens a session and returns its id.
    pub fn login(&self, user: &str, password: &str) -> ApiResult<(String, Principal)> {
        let d = sha256(password);
        // Compare against every user so timing does not tell which names exist.
        let mut found = None;
        for u in &self.users {
            if same(&u.sha256, &d) && u.name == user {
                found = Some(u.name.clone());
            }
        }
        let name = found.ok_or(ApiError::BadLogin)?;
        let mut raw = [0u8; 32];
        self.rng
            .fill(&mut raw)
            .expect("the system random generator works");
        let id: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        let p = Principal { name, kind: "user" };
        let mut s = self.sessions.lock().expect("sessions lock");
        let now = Instant::now();
        s.retain(|_, (_, exp)| *exp > now);
        if s.len() >= MAX_SESSIONS
            && let Some(oldest) = s
                .iter()
                .min_by_key(|(_, (_, e))| *e)
                .map(|(k, _)| k.clone())
        {
            s.remove(&oldest);
        }
        s.insert(id.clone(), (p.clone(), now + self.ttl));
        Ok((id, p))
    }

    /// Ends a session.
    pub fn logout(&self, id: &str) {
        self.sessions.lock().expect("sessions lock").remove(id);
    }

    /// Who sent these headers, if anyone valid.
    pub fn principal(&self, headers: &HeaderMap) -> Option<Principal> {
        if let Some(token) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
        {
            let d = sha256(token.trim());
            let mut found = None;
            for t in &self.tokens {
                if same(&t.sha256, &d) {
                    found = Some(t.name.clone());
                }
            }
            return found.map(|name| Principal {
                name,
                kind: "token",
            });
        }
        let id = session_cookie(headers)?;
        let s = self.sessions.lock().expect("sessions lock");
        match s.get(id) {
            Some((p, exp)) if *exp > Instant::now() => Some(p.clone()),
            _ => None,
        }
    }
}

/// The session id in a `Cookie` header, if any.
pub fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix(COOKIE)?.strip_prefix('='))
}

/// Middleware: rejects requests without valid credentials with 401, otherwise adds the
/// [`Principal`] to the request's extensions.
pub async fn require(State(st): State<AppState>, mut req: Request, next: Next) -> Response {
    match st.auth.principal(req.headers()) {
        Some(p) => {
            req.extensions_mut().insert(p);
            next.run(req).await
        }
        None => ApiError::Unauthenticated.into_response(),
    }
}

/// Body of `POST /api/v1/login`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    /// User name.
    pub user: String,
    /// Password.
    pub password: String,
}

/// `POST /api/v1/login`: sets the session cookie.
pub async fn login(State(st): State<AppState>, body: axum::body::Bytes) -> ApiResult<Response> {
    let b: LoginBody =
        serde_json::from_slice(&body).map_err(|e| ApiError::BadBody(e.to_string()))?;
    let (id, p) = match st.auth.login(&b.user, &b.password) {
        Ok(v) => v,
        Err(e) => {
            // Slows password guessing down (per connection; a proxy in front should
            // rate-limit per client).
            tracing::warn!(user = %b.user, "UI login refused");
            tokio::time::sleep(std::time::Duration::from_millis(400)).await;
            return Err(e);
        }
    };
    tracing::info!(user = %p.name, "UI login");
    let cookie = format!(
        "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
        st.auth.ttl.as_secs()
    );
    let mut r = Json(p).into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&cookie).expect("cookie is ASCII"),
    );
    Ok(r)
}

/// `POST /api/v1/logout`: ends the session and clears the cookie.
pub async fn logout(State(st): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(id) = session_cookie(&headers) {
        st.auth.logout(id);
    }
    let mut r = Json(serde_json::json!({ "ok": true })).into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("tidegate_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    r
}

/// `GET /api/v1/session`: whether the request is authenticated, and as whom. Open to
/// everyone (the UI asks it before showing its login form), and answers 200 either way.
pub async fn session(State(st): State<AppState>, headers: HeaderMap) -> Json<serde_json::Value> {
    Json(match st.auth.principal(&headers) {
        Some(p) => serde_json::json!({"authenticated": true, "name": p.name, "kind": p.kind}),
        None => serde_json::json!({"authenticated": false}),
    })
}
