//! What a user (or a script) meets at the door of the web console: the UI's files load
//! without credentials, but every API call answers 401 until they log in or send a token;
//! a wrong password or token is refused; logging out ends the session; and a malformed
//! parameter is answered with 400 and a JSON message naming it. Real ClickHouse, real
//! collector process.

use crate::support::ui::{Console, PASSWORD, TOKEN, USER, api, block_on, http};

const PROTECTED: [&str; 13] = [
    "/api/v1/meta",
    "/api/v1/overview",
    "/api/v1/geo",
    "/api/v1/alerts",
    "/api/v1/alerts/timeline",
    "/api/v1/alerts/abc",
    "/api/v1/violations",
    "/api/v1/violations/rules",
    "/api/v1/violations/abc",
    "/api/v1/flows",
    "/api/v1/top-talkers",
    "/api/v1/probes",
    "/api/v1/probes/history",
];

#[test]
fn without_credentials_every_api_call_is_refused_and_a_login_or_token_opens_it() {
    let c = Console::start(false);
    block_on(async {
        // GET with one header.
        let get = async |path: &str, header: (&str, &str)| {
            http("GET", &c.url, path, &[header], None).await
        };
        // The UI shell itself is public (it shows the login form) and never framed.
        let index = http("GET", &c.url, "/", &[], None).await;
        assert_eq!(index.status, 200);
        assert!(String::from_utf8_lossy(&index.body).contains("/app.js"));
        assert_eq!(index.header("x-frame-options"), Some("DENY"));
        assert!(
            index
                .header("content-security-policy")
                .unwrap()
                .contains("default-src 'self'")
        );
        let js = http("GET", &c.url, "/app.js", &[], None).await;
        assert_eq!(js.status, 200);
        assert!(
            js.header("content-type")
                .unwrap()
                .starts_with("text/javascript")
        );

        for path in PROTECTED {
            let r = http("GET", &c.url, path, &[], None).await;
            assert_eq!(r.status, 401, "{path} without credentials");
            assert!(
                r.json()["error"]
                    .as_str()
                    .unwrap()
                    .contains("authentication required")
            );
            let r = get(path, ("Authorization", "Bearer wrong")).await;
            assert_eq!(r.status, 401, "{path} with a wrong token");
            let r = get(path, ("Cookie", "tidegate_session=forged")).await;
            assert_eq!(r.status, 401, "{path} with a forged session");
        }
        let s = http("GET", &c.url, "/api/v1/session", &[], None).await;
        assert_eq!(s.json()["authenticated"], false);

        // Token: in.
        let r = api(&c.url, "/api/v1/meta").await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(
            r.json()["extent"],
            serde_json::Value::Null,
            "nothing stored yet"
        );

        // Wrong password: 401, no cookie.
        let bad = format!(r#"{{"user":"{USER}","password":"nope"}}"#);
        let r = http("POST", &c.url, "/api/v1/login", &[], Some(&bad)).await;
        assert_eq!(r.status, 401);
        assert!(r.header("set-cookie").is_none());
        let r = http("POST", &c.url, "/api/v1/login", &[], Some("{\"user\":1}")).await;
        assert_eq!(r.status, 400);

        // Right password: a session cookie that opens the API, until logout.
        let good = format!(r#"{{"user":"{USER}","password":"{PASSWORD}"}}"#);
        let r = http("POST", &c.url, "/api/v1/login", &[], Some(&good)).await;
        assert_eq!(r.status, 200);
        let set = r.header("set-cookie").unwrap().to_string();
        assert!(
            set.contains("HttpOnly") && set.contains("SameSite=Strict"),
            "{set}"
        );
        let cookie = set.split(';').next().unwrap().to_string();
        let r = get("/api/v1/probes", ("Cookie", &cookie)).await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let s = get("/api/v1/session", ("Cookie", &cookie)).await;
        assert_eq!(s.json()["name"], USER);
        let r = http(
            "POST",
            &c.url,
            "/api/v1/logout",
            &[("Cookie", &cookie)],
            Some("{}"),
        )
        .await;
        assert_eq!(r.status, 200);
        let r = get("/api/v1/probes", ("Cookie", &cookie)).await;
        assert_eq!(r.status, 401, "the session ended with logout");
        assert!(!TOKEN.is_empty());
    });
}

#[test]
fn bad_parameters_get_400_with_a_message_naming_the_parameter() {
    let c = Console::start(false);
    block_on(async {
        let cases = [
            ("/api/v1/overview?from=yesterday", "from"),
            ("/api/v1/overview?from=2000&to=1000", "from"),
            ("/api/v1/overview?from=-9223372036854775808", "from"),
            ("/api/v1/overview?to=9223372036854775807", "to"),
            ("/api/v1/flows?from=-9223372036854775808&to=1000", "from"),
            ("/api/v1/overview?step=7", "step"),
            ("/api/v1/overview?lines=x", "lines"),
            ("/api/v1/flows?ip=10.0.0.0/33", "ip"),
            ("/api/v1/flows?ip=not-an-ip", "ip"),
            ("/api/v1/flows?port=70000", "port"),
            ("/api/v1/flows?proto=carrier-pigeon", "proto"),
            ("/api/v1/flows?country=Germany", "country"),
            ("/api/v1/flows?limit=0", "limit"),
            ("/api/v1/flows?limit=100000", "limit"),
            ("/api/v1/flows?offset=-1", "offset"),
            ("/api/v1/flows?direction=sideways", "direction"),
            ("/api/v1/flows?sort=src%3B%20DROP%20TABLE%20flows", "sort"),
            ("/api/v1/top-talkers?by=port", "by"),
            ("/api/v1/top-talkers?metric=fun", "metric"),
            ("/api/v1/alerts?severity=urgent", "severity"),
            ("/api/v1/alerts?kind=port_scan,telepathy", "kind"),
            ("/api/v1/violations?severity=info", "severity"),
            ("/api/v1/probes?window=1", "window"),
            ("/api/v1/probes/history?probe=%00", "probe"),
            ("/api/v1/alerts/abc?x=1", "x"),
        ];
        for (path, param) in cases {
            let r = api(&c.url, path).await;
            assert_eq!(
                r.status,
                400,
                "{path}: {}",
                String::from_utf8_lossy(&r.body)
            );
            let j = r.json();
            assert_eq!(j["parameter"], param, "{path}: {j}");
            assert!(
                j["error"].as_str().unwrap().contains(param),
                "{path}: message does not name {param}: {j}"
            );
        }
        // Unknown ids and endpoints: 404 in JSON.
        let r = api(&c.url, "/api/v1/alerts/no-such-alert").await;
        assert_eq!(r.status, 404);
        assert!(
            r.json()["error"]
                .as_str()
                .unwrap()
                .contains("no-such-alert")
        );
        let r = api(&c.url, "/api/v1/nothing-here").await;
        assert_eq!(r.status, 404);
        // Values that look like SQL are only ever data.
        let r = api(&c.url, "/api/v1/flows?line=x%27%20OR%201%3D1%20--").await;
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["total"], 0);
    });
}
