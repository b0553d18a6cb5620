//! Access control: users log in with a password and get a session cookie; automation
//! sends `Authorization: Bearer <token>`. Passwords are checked against salted Argon2id
//! hashes (off the async threads, at most [`VERIFY_CONCURRENCY`] at once), tokens by
//! SHA-256 digest in constant time; failed logins are throttled per client address
//! ([`super::login_limit`]) and logged with it. Sessions live in memory (a restart logs
//! everyone out).

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
    config::{ApiConfig, Credential, Role},
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
    /// What it may do.
    pub role: Role,
    /// The only lines whose data it sees (`None`: every line).
    pub lines: Option<Vec<String>>,
    /// Its console language, when configured.
    pub lang: Option<String>,
}

impl Principal {
    fn of(c: &Credential, kind: &'static str) -> Principal {
        Principal {
            name: c.name.clone(),
            kind,
            role: c.role,
            lines: c.lines.clone(),
            lang: c.lang.clone(),
        }
    }

    /// Refuses (403, naming `action` and the role it needs) unless the principal's role
    /// is at least `needed`.
    pub fn require(&self, needed: Role, action: &str) -> ApiResult<()> {
        if self.role >= needed {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "{action} needs the {} role; {} is a {}",
                needed.as_str(),
                self.name,
                self.role.as_str()
            )))
        }
    }

    /// Whether the principal sees every line.
    pub fn all_lines(&self) -> bool {
        self.lines.is_none()
    }

    /// Whether the principal sees `line` (data read outside ClickHouse, where the
    /// per-query row filter of [`super::scope`] does not apply).
    pub fn sees_line(&self, line: &str) -> bool {
        self.lines
            .as_ref()
            .is_none_or(|ls| ls.iter().any(|l| l == line))
    }
}

/// Users, tokens and live sessions.
pub struct Auth {
    users: Vec<Credential>,
    tokens: Vec<Credential>,
    ttl: Duration,
    sessions: Mutex<HashMap<String, (Principal, Instant)>>,
    rng: SystemRandom,
    /// Verified against for unknown user names, so their timing matches known ones.
    dummy: String,
    /// Failed logins per client address.
    pub limiter: super::login_limit::LoginLimiter,
    verifying: tokio::sync::Semaphore,
}

/// Password verifications running at once (each takes tens of ms of CPU and ~19 MiB).
pub const VERIFY_CONCURRENCY: usize = 2;

/// Argon2id with OWASP's recommended parameters (19 MiB, 2 passes, 1 lane).
pub fn hash_password(password: &str) -> String {
    hash_password_with(password, 19_456, 2, 1)
}

/// Argon2id with the given memory (KiB), passes and lanes, salted at random; a PHC
/// string for `[[api.user]] password_hash`.
pub fn hash_password_with(password: &str, m_kib: u32, t: u32, p: u32) -> String {
    use argon2::{PasswordHasher, password_hash::SaltString};
    let params = argon2::Params::new(m_kib, t, p, None).expect("valid Argon2 parameters");
    let mut raw = [0u8; 16];
    SystemRandom::new()
        .fill(&mut raw)
        .expect("the system random generator works");
    let salt = SaltString::encode_b64(&raw).expect("16-byte salt");
    argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
        .hash_password(password.as_bytes(), &salt)
        .expect("hashing cannot fail with valid parameters")
        .to_string()
}

fn verify_argon2(phc: &str, password: &str) -> bool {
    use argon2::PasswordVerifier;
    argon2::PasswordHash::new(phc).is_ok_and(|h| {
        argon2::Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
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
/// Sessions one user holds at most (its oldest ends when it opens one more).
pub const MAX_SESSIONS_PER_USER: usize = 32;

impl Auth {
    /// Access control from the `[api]` configuration.
    pub fn new(cfg: &ApiConfig) -> Self {
        Auth {
            users: cfg.users.clone(),
            tokens: cfg.tokens.clone(),
            ttl: cfg.session_ttl,
            sessions: Mutex::new(HashMap::new()),
            rng: SystemRandom::new(),
            dummy: dummy_hash(&cfg.users),
            limiter: Default::default(),
            verifying: tokio::sync::Semaphore::new(VERIFY_CONCURRENCY),
        }
    }

    /// Whether `password` is `user`'s (CPU-heavy: run it off the async threads).
    fn check_password(&self, user: &str, password: &str) -> Option<Principal> {
        match self.users.iter().find(|u| u.name == user) {
            Some(u) => {
                let ok = match (&u.argon2, &u.sha256) {
                    (Some(h), _) => verify_argon2(h, password),
                    (None, Some(d)) => same(d, &sha256(password)),
                    (None, None) => false,
                };
                ok.then(|| Principal::of(u, "user"))
            }
            None => {
                // The same work for a name that does not exist.
                let _ = verify_argon2(&self.dummy, password);
                None
            }
        }
    }

    /// Checks a user's password (at most [`VERIFY_CONCURRENCY`] at once, off the async
    /// threads); on success opens a session and returns its id.
    pub async fn login(
        self: &std::sync::Arc<Self>,
        user: &str,
        password: &str,
    ) -> ApiResult<(String, Principal)> {
        let found = {
            let _slot = self.verifying.acquire().await.expect("never closed");
            let (me, user, password) = (self.clone(), user.to_string(), password.to_string());
            tokio::task::spawn_blocking(move || me.check_password(&user, &password))
                .await
                .unwrap_or(None)
        };
        let p = found.ok_or(ApiError::BadLogin)?;
        let mut raw = [0u8; 32];
        self.rng
            .fill(&mut raw)
            .expect("the system random generator works");
        let id: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        let mut s = self.sessions.lock().expect("sessions lock");
        let now = Instant::now();
        s.retain(|_, (_, exp)| *exp > now);
        // A user past its share gives up its own oldest session: logging in again and
        // again must not log the others out.
        let mine = s.values().filter(|(q, _)| q.name == p.name).count();
        if mine >= MAX_SESSIONS_PER_USER
            && let Some(oldest) = s
                .iter()
                .filter(|(_, (q, _))| q.name == p.name)
                .min_by_key(|(_, (_, e))| *e)
                .map(|(k, _)| k.clone())
        {
            s.remove(&oldest);
        }
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
                if t.sha256.as_ref().is_some_and(|s| same(s, &d)) {
                    found = Some(Principal::of(t, "token"));
                }
            }
            return found;
        }
        let id = session_cookie(headers)?;
        let s = self.sessions.lock().expect("sessions lock");
        match s.get(id) {
            Some((p, exp)) if *exp > Instant::now() => Some(p.clone()),
            _ => None,
        }
    }
}

/// A hash of a random password with the parameters of the first Argon2id user (the
/// default ones when none).
fn dummy_hash(users: &[Credential]) -> String {
    let params = users
        .iter()
        .filter_map(|u| u.argon2.as_deref())
        .find_map(|h| {
            argon2::PasswordHash::new(h)
                .ok()
                .and_then(|h| argon2::Params::try_from(&h).ok())
        });
    let mut raw = [0u8; 16];
    let _ = SystemRandom::new().fill(&mut raw);
    let pw: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    match params {
        Some(p) => hash_password_with(&pw, p.m_cost(), p.t_cost(), p.p_cost()),
        None => hash_password_with(&pw, 8, 1, 1),
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

/// The client's address (from the connection), when the server recorded it.
pub struct ClientAddr(pub Option<std::net::IpAddr>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr(
            parts
                .extensions
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|c| c.0.ip()),
        ))
    }
}

/// `POST /api/v1/login`: sets the session cookie. Failed logins are logged with the
/// client's address and throttled per address.
pub async fn login(
    State(st): State<AppState>,
    ClientAddr(client): ClientAddr,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let b: LoginBody =
        serde_json::from_slice(&body).map_err(|e| ApiError::BadBody(e.to_string()))?;
    let ip = client.unwrap_or(std::net::IpAddr::from([0, 0, 0, 0]));
    let user = b.user.escape_debug().to_string();
    let attempt = match st.auth.limiter.attempt(ip, &b.user, Instant::now()) {
        Ok(a) => a,
        Err(wait) => {
            tracing::warn!(client = %ip, user = %user, retry_in_secs = wait.as_secs() + 1,
                "UI login refused: too many failures from this address or for this user");
            return Err(ApiError::TooManyLogins(wait.as_secs() + 1));
        }
    };
    let (id, p) = match st.auth.login(&b.user, &b.password).await {
        Ok(v) => v,
        Err(e) => {
            let (wait, failures) = st.auth.limiter.address_state(ip, Instant::now());
            tracing::warn!(client = %ip, user = %user, failures, wait_secs = wait.as_secs(),
                "UI login refused: wrong user name or password");
            // Best effort: the refusal is logged above even when ClickHouse is down.
            let tried: String = user.chars().take(64).collect();
            if let Err(a) = st
                .audit(
                    &tried,
                    "login_refused",
                    client,
                    "",
                    &format!("failures {failures}"),
                )
                .await
            {
                tracing::error!(error = %a, "audit record of a refused login not stored");
            }
            return Err(e);
        }
    };
    st.auth.limiter.succeeded(attempt, Instant::now());
    tracing::info!(client = %ip, user = %p.name, role = p.role.as_str(), "UI login");
    if let Err(a) = st
        .audit(&p.name, "login", client, "", p.role.as_str())
        .await
    {
        tracing::error!(error = %a, user = %p.name, "audit record of a login not stored");
    }
    let cookie = format!(
        "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        st.auth.ttl.as_secs(),
        if st.https { "; Secure" } else { "" }
    );
    let mut r = Json(p).into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&cookie).expect("cookie is ASCII"),
    );
    Ok(r)
}

/// `POST /api/v1/logout`: ends the session and clears the cookie.
pub async fn logout(
    State(st): State<AppState>,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
) -> Response {
    if let Some(p) = st.auth.principal(&headers)
        && let Err(a) = st.audit(&p.name, "logout", client, "", "").await
    {
        tracing::error!(error = %a, user = %p.name, "audit record of a logout not stored");
    }
    if let Some(id) = session_cookie(&headers) {
        st.auth.logout(id);
    }
    let mut r = Json(serde_json::json!({ "ok": true })).into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static(if st.https {
            "tidegate_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0; Secure"
        } else {
            "tidegate_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"
        }),
    );
    r
}

/// `GET /api/v1/session`: whether the request is authenticated, and as whom. Open to
/// everyone (the UI asks it before showing its login form), and answers 200 either way.
pub async fn session(State(st): State<AppState>, headers: HeaderMap) -> Json<serde_json::Value> {
    Json(match st.auth.principal(&headers) {
        Some(p) => {
            serde_json::json!({"authenticated": true, "name": p.name, "kind": p.kind, "role": p.role, "lines": p.lines, "lang": p.lang})
        }
        None => serde_json::json!({"authenticated": false}),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::config::{ApiConfig, Credential, Role};

    fn user(name: &str) -> Credential {
        Credential {
            name: name.into(),
            sha256: Some(sha256("pw")),
            argon2: None,
            role: Role::Viewer,
            lines: None,
            lang: None,
        }
    }

    #[tokio::test]
    async fn one_user_logging_in_again_and_again_cannot_end_anothers_session() {
        let auth = std::sync::Arc::new(Auth::new(&ApiConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            session_ttl: Duration::from_secs(3600),
            users: vec![user("ana"), user("bob")],
            tokens: Vec::new(),
            home_country: None,
            tls_files: None,
            tls: None,
        }));
        let (ana, _) = auth.login("ana", "pw").await.unwrap();
        let mut bobs = Vec::new();
        for _ in 0..MAX_SESSIONS_PER_USER + 50 {
            bobs.push(auth.login("bob", "pw").await.unwrap().0);
        }
        let s = auth.sessions.lock().unwrap();
        assert!(s.contains_key(&ana), "ana logged out by bob's logins");
        let held = bobs.iter().filter(|b| s.contains_key(*b)).count();
        assert_eq!(held, MAX_SESSIONS_PER_USER);
        // Bob's newest sessions are the ones kept.
        assert!(s.contains_key(bobs.last().unwrap()));
    }
}
