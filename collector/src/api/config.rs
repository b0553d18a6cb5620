//! The `[api]` section of the collector's configuration: where the web UI and JSON API
//! listen and who may use them.
//!
//! ```toml
//! [api]
//! listen = "127.0.0.1:8080"      # default; the UI is at http://127.0.0.1:8080/
//! session_hours = 12             # how long a login lasts
//! home_country = "HK"            # where the map draws endpoints without a country (ours)
//! tls_cert = "certs/console.pem" # HTTPS (PEM chain and key; both or neither): Secure
//! tls_key = "certs/console.key"  # cookies and HSTS; without them plain HTTP (loopback)
//!
//! [[api.user]]                   # people log in on the UI's login page
//! name = "analyst"
//! password_hash = "$argon2id$v=19$m=19456,t=2,p=1$…"   # tidegate-collector hash-password
//! role = "analyst"               # viewer | analyst (default) | admin
//! lines = ["hk-sg-1"]            # only these lines' data (default: every line)
//! lang = "zh"                    # console language: en | zh (default: the browser's)
//!
//! [[api.token]]                  # automation sends Authorization: Bearer <token>
//! name = "grafana-export"
//! sha256 = "…"                   # printf %s 'the token' | sha256sum
//! role = "viewer"
//! ```
//!
//! Roles: a `viewer` reads; an `analyst` also triages alerts and exports table views; an
//! `admin` also places and lifts manual blocks. `lines` restricts every read — flows,
//! rollups, alerts, violations, triage, probe health — to those lines, in ClickHouse
//! itself (see [`super::scope`]).
//!
//! The file never holds a usable secret: passwords as salted Argon2id hashes (PHC strings,
//! `tidegate-collector hash-password` makes one; the older unsalted `password_sha256` is
//! still read, with a warning), tokens — long random strings, not guessable — as SHA-256
//! digests. At least one user or token is required: the API never runs without access
//! control.

use std::{net::SocketAddr, time::Duration};

use serde::Deserialize;
use toml::Spanned;

/// `[api]` as written in the file (positions kept for errors).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApiConfig {
    listen: Option<Spanned<String>>,
    session_hours: Option<Spanned<u64>>,
    home_country: Option<Spanned<String>>,
    tls_cert: Option<Spanned<String>>,
    tls_key: Option<Spanned<String>>,
    #[serde(default)]
    user: Vec<Spanned<RawUser>>,
    #[serde(default)]
    token: Vec<Spanned<RawToken>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUser {
    name: Spanned<String>,
    password_hash: Option<Spanned<String>>,
    password_sha256: Option<Spanned<String>>,
    role: Option<Spanned<String>>,
    lines: Option<Vec<Spanned<String>>>,
    lang: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawToken {
    name: Spanned<String>,
    sha256: Spanned<String>,
    role: Option<Spanned<String>>,
    lines: Option<Vec<Spanned<String>>>,
}

/// What a principal may do; each role includes the ones before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads every page and endpoint of its lines.
    Viewer,
    /// Also triages alerts and exports table views.
    Analyst,
    /// Also places and lifts manual blocks.
    Admin,
}

impl Role {
    /// The role's name in the configuration and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Analyst => "analyst",
            Role::Admin => "admin",
        }
    }
}

fn role(v: &Option<Spanned<String>>, what: &str) -> Result<Role, (usize, String)> {
    match v {
        None => Ok(Role::Analyst),
        Some(v) => match v.get_ref().as_str() {
            "viewer" => Ok(Role::Viewer),
            "analyst" => Ok(Role::Analyst),
            "admin" => Ok(Role::Admin),
            other => Err((
                v.span().start,
                format!("{what} {other:?}: expected viewer, analyst or admin"),
            )),
        },
    }
}

/// A line name a principal is restricted to: 1-128 letters, digits and ` ._:/@+-` (it
/// is written into the ClickHouse row filter; line names with other characters cannot
/// be restricted to).
fn lines(
    v: &Option<Vec<Spanned<String>>>,
    what: &str,
) -> Result<Option<Vec<String>>, (usize, String)> {
    let Some(list) = v else { return Ok(None) };
    let mut out: Vec<String> = Vec::new();
    for l in list {
        let n = l.get_ref();
        if n.is_empty()
            || n.len() > 128
            || !n
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || " ._:/@+-".contains(c))
        {
            return Err((
                l.span().start,
                format!(
                    "{what} {n:?} must be 1-128 letters, digits, ' ', '.', '_', ':', '/', '@', '+', '-'"
                ),
            ));
        }
        if !out.contains(n) {
            out.push(n.clone());
        }
    }
    Ok(Some(out))
}

/// A principal allowed to use the API: a user (password) or a token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credential {
    /// User or token name (shown in the UI and logs).
    pub name: String,
    /// SHA-256 of the password or token (`None` for users with an Argon2id hash).
    pub sha256: Option<[u8; 32]>,
    /// A user's Argon2id hash (PHC string).
    pub argon2: Option<String>,
    /// What it may do.
    pub role: Role,
    /// The only lines whose data it sees (`None`: every line; empty: none).
    pub lines: Option<Vec<String>>,
    /// A user's console language ([`LANGS`]); `None`: the browser's.
    pub lang: Option<String>,
}

/// Languages of the console.
pub const LANGS: [&str; 2] = ["en", "zh"];

fn lang(v: &Option<Spanned<String>>) -> Result<Option<String>, (usize, String)> {
    match v {
        None => Ok(None),
        Some(s) if LANGS.contains(&s.get_ref().as_str()) => Ok(Some(s.get_ref().clone())),
        Some(s) => Err((
            s.span().start,
            format!(
                "api.user lang {:?}: expected one of {}",
                s.get_ref(),
                LANGS.join(", ")
            ),
        )),
    }
}

/// Validated `[api]` configuration.
#[derive(Clone, Debug)]
pub struct ApiConfig {
    /// Listening address of the UI and API.
    pub listen: SocketAddr,
    /// Lifetime of a login session.
    pub session_ttl: Duration,
    /// Users who may log in with a password.
    pub users: Vec<Credential>,
    /// Bearer tokens for automation.
    pub tokens: Vec<Credential>,
    /// ISO 3166 alpha-2 country the map places endpoints without a country at (the
    /// hub's own, private and unknown addresses).
    pub home_country: Option<String>,
    /// HTTPS: the certificate chain and key (PEM) as written, with the offset of
    /// `tls_cert` for errors; loaded by [`ApiConfig::load_tls`].
    pub tls_files: Option<(std::path::PathBuf, std::path::PathBuf, usize)>,
    /// The loaded TLS server configuration (`None`: plain HTTP, for loopback).
    pub tls: Option<std::sync::Arc<rustls::ServerConfig>>,
}

/// Default listening address: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

fn digest(v: &Spanned<String>, what: &str) -> Result<[u8; 32], (usize, String)> {
    let s = v.get_ref().trim();
    if !s.is_ascii() {
        return Err((
            v.span().start,
            format!("{what} must be 64 hex digits; it holds other characters"),
        ));
    }
    let bad = || {
        (
            v.span().start,
            format!("{what} must be 64 hex digits (printf %s 'secret' | sha256sum)"),
        )
    };
    if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(out)
}

/// A user's Argon2id hash, checked to be one (a PHC string with algorithm `argon2id`
/// and parameters this build can verify).
fn argon2_hash(v: &Spanned<String>) -> Result<String, (usize, String)> {
    let s = v.get_ref().trim();
    let bad = |why: String| {
        (
            v.span().start,
            format!(
                "api.user password_hash: {why} (make one with: tidegate-collector hash-password)"
            ),
        )
    };
    let h = argon2::PasswordHash::new(s).map_err(|e| bad(format!("not a PHC hash string: {e}")))?;
    if h.algorithm.as_str() != "argon2id" {
        return Err(bad(format!("algorithm {} is not argon2id", h.algorithm)));
    }
    argon2::Params::try_from(&h).map_err(|e| bad(format!("bad Argon2 parameters: {e}")))?;
    if h.salt.is_none() || h.hash.is_none() {
        return Err(bad("salt or hash missing".into()));
    }
    Ok(s.to_string())
}

fn name(v: &Spanned<String>, what: &str) -> Result<String, (usize, String)> {
    let n = v.get_ref();
    if n.is_empty()
        || n.len() > 64
        || !n
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c))
    {
        return Err((
            v.span().start,
            format!("{what} {n:?} must be 1-64 letters, digits, '-', '_', '.', '@'"),
        ));
    }
    Ok(n.clone())
}

impl ApiConfig {
    /// Validates the section that starts at byte `table_off`; errors carry the byte offset
    /// of the offending value.
    pub fn from_raw(raw: RawApiConfig, table_off: usize) -> Result<Self, (usize, String)> {
        let listen = match &raw.listen {
            Some(v) => v.get_ref().parse().map_err(|e| {
                (
                    v.span().start,
                    format!("api.listen {:?} is not host:port: {e}", v.get_ref()),
                )
            })?,
            None => DEFAULT_LISTEN.parse().expect("valid default"),
        };
        let session_ttl = match &raw.session_hours {
            Some(v) if !(1..=24 * 30).contains(v.get_ref()) => {
                return Err((
                    v.span().start,
                    "api.session_hours must be between 1 and 720".into(),
                ));
            }
            Some(v) => Duration::from_secs(v.get_ref() * 3600),
            None => Duration::from_secs(12 * 3600),
        };
        let home_country = match &raw.home_country {
            Some(v)
                if v.get_ref().len() == 2
                    && v.get_ref().chars().all(|c| c.is_ascii_alphabetic()) =>
            {
                Some(v.get_ref().to_ascii_uppercase())
            }
            Some(v) => {
                return Err((
                    v.span().start,
                    format!(
                        "api.home_country {:?} must be a two-letter country code",
                        v.get_ref()
                    ),
                ));
            }
            None => None,
        };
        let mut users = Vec::new();
        for user in &raw.user {
            let u = user.get_ref();
            let (sha256, argon2) = match (&u.password_hash, &u.password_sha256) {
                (Some(h), None) => (None, Some(argon2_hash(h)?)),
                (None, Some(d)) => (Some(digest(d, "api.user password_sha256")?), None),
                (Some(_), Some(d)) => {
                    return Err((
                        d.span().start,
                        "api.user: give password_hash or password_sha256, not both".into(),
                    ));
                }
                (None, None) => {
                    return Err((
                        user.span().start,
                        "api.user needs password_hash (tidegate-collector hash-password)".into(),
                    ));
                }
            };
            let c = Credential {
                name: name(&u.name, "api.user name")?,
                sha256,
                argon2,
                role: role(&u.role, "api.user role")?,
                lines: lines(&u.lines, "api.user lines:")?,
                lang: lang(&u.lang)?,
            };
            if users.iter().any(|x: &Credential| x.name == c.name) {
                return Err((u.name.span().start, format!("api.user {:?} twice", c.name)));
            }
            users.push(c);
        }
        let mut tokens = Vec::new();
        for t in &raw.token {
            let t = t.get_ref();
            let c = Credential {
                name: name(&t.name, "api.token name")?,
                sha256: Some(digest(&t.sha256, "api.token sha256")?),
                argon2: None,
                role: role(&t.role, "api.token role")?,
                lines: lines(&t.lines, "api.token lines:")?,
                lang: None,
            };
            if tokens.iter().any(|x: &Credential| x.sha256 == c.sha256) {
                return Err((t.sha256.span().start, "api.token: same token twice".into()));
            }
            tokens.push(c);
        }
        if users.is_empty() && tokens.is_empty() {
            return Err((
                table_off,
                "[api] needs at least one [[api.user]] or [[api.token]]: the UI never runs open"
                    .into(),
            ));
        }
        let tls_files = match (&raw.tls_cert, &raw.tls_key) {
            (Some(c), Some(k)) => Some((
                std::path::PathBuf::from(c.get_ref()),
                std::path::PathBuf::from(k.get_ref()),
                c.span().start,
            )),
            (None, None) => None,
            (Some(c), None) => {
                return Err((c.span().start, "api.tls_cert needs api.tls_key".into()));
            }
            (None, Some(k)) => {
                return Err((k.span().start, "api.tls_key needs api.tls_cert".into()));
            }
        };
        Ok(ApiConfig {
            listen,
            session_ttl,
            users,
            tokens,
            home_country,
            tls_files,
            tls: None,
        })
    }

    /// Resolves the TLS files (relative to the configuration's directory, by `resolve`)
    /// and loads them: a missing file, a key that does not match the certificate, or
    /// anything rustls refuses is an error at the offset of `tls_cert`.
    pub fn load_tls(
        &mut self,
        resolve: impl Fn(&std::path::Path) -> std::path::PathBuf,
    ) -> Result<(), (usize, String)> {
        let Some((cert, key, off)) = self.tls_files.take() else {
            return Ok(());
        };
        let (cert, key) = (resolve(&cert), resolve(&key));
        let cfg = tidegate_base::tls::server_config(&cert, &key, "api.tls")
            .map_err(|e| (off, e.to_string()))?;
        self.tls_files = Some((cert, key, off));
        self.tls = Some(cfg);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PW: &str = "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8";

    fn parse(src: &str) -> Result<ApiConfig, (usize, String)> {
        #[derive(Deserialize)]
        struct F {
            api: Spanned<RawApiConfig>,
        }
        let f: F = toml::from_str(src).unwrap();
        let off = f.api.span().start;
        ApiConfig::from_raw(f.api.into_inner(), off)
    }

    #[test]
    fn a_user_and_a_token_with_defaults() {
        let c = parse(&format!(
            "[api]\n[[api.user]]\nname = \"ana\"\npassword_sha256 = \"{PW}\"\n[[api.token]]\nname = \"ci\"\nsha256 = \"{}\"\n",
            PW.replace('5', "6")
        ))
        .unwrap();
        assert_eq!(c.listen, DEFAULT_LISTEN.parse().unwrap());
        assert_eq!(c.users[0].name, "ana");
        assert_eq!(c.users[0].sha256.unwrap()[0], 0x5e);
        assert_eq!(c.tokens.len(), 1);
        assert_eq!((c.users[0].role, &c.users[0].lines), (Role::Analyst, &None));
    }

    #[test]
    fn a_tls_certificate_needs_its_key() {
        let base = format!("[api]\n[[api.user]]\nname = \"ana\"\npassword_sha256 = \"{PW}\"\n");
        let src = base.replace("[api]\n", "[api]\ntls_cert = \"c.pem\"\n");
        let e = parse(&src).unwrap_err();
        assert!(e.1.contains("needs api.tls_key"), "{e:?}");
        assert!(src[e.0..].starts_with("\"c.pem\""), "{e:?}");
        let c = parse(&base.replace(
            "[api]\n",
            "[api]\ntls_cert = \"c.pem\"\ntls_key = \"k.pem\"\n",
        ))
        .unwrap();
        assert_eq!(
            c.tls_files.as_ref().map(|f| f.1.clone()),
            Some("k.pem".into())
        );
        assert!(c.tls.is_none(), "loaded only by load_tls");
    }

    #[test]
    fn roles_and_line_restrictions_are_read_and_bad_ones_located() {
        let c = parse(&format!(
            "[api]\n[[api.user]]\nname = \"ana\"\npassword_sha256 = \"{PW}\"\nrole = \"viewer\"\nlines = [\"hk-sg-1\", \"hk-sg-1\", \"ndpi-1kxun\"]\n\
             [[api.token]]\nname = \"ops\"\nsha256 = \"{}\"\nrole = \"admin\"\n",
            PW.replace('5', "6")
        ))
        .unwrap();
        assert_eq!(c.users[0].role, Role::Viewer);
        assert_eq!(
            c.users[0].lines.as_deref(),
            Some(&["hk-sg-1".to_string(), "ndpi-1kxun".to_string()][..])
        );
        assert_eq!((c.tokens[0].role, &c.tokens[0].lines), (Role::Admin, &None));
        for (extra, bad, want) in [
            ("role = \"root\"", "\"root\"", "viewer, analyst or admin"),
            ("lang = \"fr\"", "\"fr\"", "expected one of en, zh"),
            ("lines = [\"a'b\"]", "\"a'b\"", "must be 1-128"),
            ("lines = [\"\"]", "\"\"", "must be 1-128"),
        ] {
            let src = format!(
                "[api]\n[[api.user]]\nname = \"ana\"\npassword_sha256 = \"{PW}\"\n{extra}\n"
            );
            let e = parse(&src).unwrap_err();
            assert!(e.1.contains(want), "{extra}: {e:?}");
            assert!(
                src[e.0..].starts_with(bad),
                "{extra}: located at the value: {e:?}"
            );
        }
    }

    #[test]
    fn argon2id_hashes_are_taken_and_anything_else_is_refused_at_its_place() {
        let h = crate::api::auth::hash_password_with("s3cret-pass", 64, 1, 1);
        let c = parse(&format!(
            "[api]\n[[api.user]]\nname = \"ana\"\npassword_hash = \"{h}\"\n"
        ))
        .unwrap();
        assert_eq!(c.users[0].argon2.as_deref(), Some(h.as_str()));
        for (bad, want) in [
            (
                "$argon2i$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
                "not argon2id",
            ),
            ("plain", "not a PHC hash"),
            ("中文中文", "not a PHC hash"),
        ] {
            let src = format!("[api]\n[[api.user]]\nname = \"ana\"\npassword_hash = \"{bad}\"\n");
            let e = parse(&src).unwrap_err();
            assert!(e.1.contains(want), "{bad}: {e:?}");
            assert!(src[e.0..].starts_with('"'), "{bad}: located at the value");
        }
        // Non-ASCII where hex digits belong: an error, never a panic.
        let src = format!(
            "[api]\n[[api.user]]\nname = \"ana\"\npassword_sha256 = \"{}\"\n",
            "é".repeat(32)
        );
        assert!(parse(&src).unwrap_err().1.contains("64 hex digits"));
        let e = parse("[api]\n[[api.user]]\nname = \"ana\"\n").unwrap_err();
        assert!(e.1.contains("password_hash"), "{e:?}");
    }

    #[test]
    fn refuses_an_open_api_and_bad_digests() {
        let e = parse("[api]\nlisten = \"127.0.0.1:1\"\n").unwrap_err();
        assert!(e.1.contains("at least one"), "{e:?}");
        let src = "[api]\n[[api.user]]\nname = \"ana\"\npassword_sha256 = \"nothex\"\n";
        let e = parse(src).unwrap_err();
        assert!(e.1.contains("64 hex digits"), "{e:?}");
        assert_eq!(&src[e.0..e.0 + 8], "\"nothex\"");
    }

    #[test]
    fn collector_config_errors_in_api_name_file_and_line() {
        let (d, _) = crate::config::fixture::write("");
        let base = crate::config::fixture::TRANSPORT;
        let cases = [
            ("[api]\nlisten = \"nope\"\n", ":7: api.listen"),
            (
                "[api]\nhome_country = \"Hong Kong\"\n[[api.token]]\nname = \"t\"\nsha256 = \"PW\"\n",
                ":7: api.home_country",
            ),
            (
                "[api]\n\n[[api.user]]\nname = \"a b\"\npassword_sha256 = \"PW\"\n",
                ":9: api.user name",
            ),
            ("[api]\nsession_hours = 0\n", ":7: api.session_hours"),
            ("[api]\n", ":6: [api] needs"),
        ];
        for (api, want) in cases {
            let p = d.path().join("collector.toml");
            std::fs::write(&p, format!("{base}{}", api.replace("PW", PW))).unwrap();
            let e = crate::config::CollectorConfig::load(&p)
                .unwrap_err()
                .to_string();
            assert!(
                e.starts_with(&format!("{}{want}", p.display())),
                "{api:?}: {e}"
            );
        }
        let p = d.path().join("collector.toml");
        std::fs::write(
            &p,
            format!("{base}[api]\n[[api.token]]\nname = \"t\"\nsha256 = \"{PW}\"\n"),
        )
        .unwrap();
        let c = crate::config::CollectorConfig::load(&p).unwrap();
        assert_eq!(c.api.unwrap().tokens[0].name, "t");
    }
}
