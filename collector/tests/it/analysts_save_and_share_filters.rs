//! Saved flow filters through the real API and ClickHouse: a viewer keeps filters of its
//! own but may not share them; an analyst shares one and every user sees it (read-only);
//! a filter is replaced by saving under the same name and gone once its owner deletes it
//! (a save and a delete within one millisecond included); an invalid expression is refused
//! naming `q`; saves and deletions are in the audit log; a user at the limit cannot pass
//! it with saves sent at once.

use serde_json::Value;

use crate::support::ui::{Console, PASSWORD, block_on, http};

fn users() -> String {
    let h = tidegate_collector::api::auth::hash_password_with(PASSWORD, 4096, 1, 1);
    format!(
        "\n[[api.user]]\nname = \"vera\"\npassword_hash = \"{h}\"\nrole = \"viewer\"\n\
         \n[[api.user]]\nname = \"ali\"\npassword_hash = \"{h}\"\nrole = \"analyst\"\n"
    )
}

async fn login(url: &str, user: &str) -> String {
    let body = format!(r#"{{"user": "{user}", "password": "{PASSWORD}"}}"#);
    let r = http("POST", url, "/api/v1/login", &[], Some(&body)).await;
    assert_eq!(r.status, 200, "{user}");
    let set = r.header("set-cookie").unwrap();
    set.split(';').next().unwrap().to_string()
}

async fn call(
    url: &str,
    cookie: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> (u16, Value) {
    let r = http(method, url, path, &[("Cookie", cookie)], body).await;
    (
        r.status,
        serde_json::from_slice(&r.body).unwrap_or(Value::Null),
    )
}

/// (owner, name, q, shared) of a list answer.
fn listed(v: &Value) -> Vec<(String, String, String, bool)> {
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["owner"].as_str().unwrap().to_string(),
                i["name"].as_str().unwrap().to_string(),
                i["q"].as_str().unwrap().to_string(),
                i["shared"]
                    .as_bool()
                    .unwrap_or_else(|| i["shared"].as_u64() == Some(1)),
            )
        })
        .collect()
}

#[test]
fn viewers_keep_filters_analysts_share_them_and_owners_delete_them() {
    let c = Console::start_with(true, &users());
    block_on(async {
        let (vera, ali) = (login(&c.url, "vera").await, login(&c.url, "ali").await);
        let put = |cookie: String, name: &'static str, body: &'static str| {
            let url = c.url.clone();
            async move {
                call(
                    &url,
                    &cookie,
                    "PUT",
                    &format!("/api/v1/filters/{name}"),
                    Some(body),
                )
                .await
            }
        };
        // A viewer saves its own filter, but may not share one.
        let (s, v) = put(vera.clone(), "ssh", r#"{"q": "dport = 22"}"#).await;
        assert_eq!(s, 200, "{v}");
        let (s, v) = put(
            vera.clone(),
            "web",
            r#"{"q": "dport in (80, 443)", "shared": true}"#,
        )
        .await;
        assert_eq!(s, 403, "{v}");
        // An invalid expression or name is refused, naming what is wrong.
        let (s, v) = put(ali.clone(), "bad", r#"{"q": "port = 99999"}"#).await;
        assert_eq!((s, v["parameter"].as_str()), (400, Some("q")), "{v}");
        let (s, _) = put(ali.clone(), "%20lead", r#"{"q": "port = 1"}"#).await;
        assert_eq!(s, 400);
        // An analyst shares one; saving again under the name replaces it.
        assert_eq!(
            put(ali.clone(), "dns", r#"{"q": "port = 53", "shared": true}"#)
                .await
                .0,
            200
        );
        assert_eq!(
            put(
                ali.clone(),
                "dns",
                r#"{"q": "proto = udp and port = 53", "shared": true}"#
            )
            .await
            .0,
            200
        );
        assert_eq!(
            put(ali.clone(), "mine", r#"{"q": "bytes > 1M"}"#).await.0,
            200
        );

        let (_, v) = call(&c.url, &vera, "GET", "/api/v1/filters", None).await;
        assert_eq!(
            listed(&v),
            vec![
                ("vera".into(), "ssh".into(), "dport = 22".into(), false),
                (
                    "ali".into(),
                    "dns".into(),
                    "proto = udp and port = 53".into(),
                    true
                ),
            ],
            "own first, then shared; ali's private filter hidden"
        );
        // Only the owner deletes; a shared filter is read-only for the others.
        let (s, _) = call(&c.url, &vera, "DELETE", "/api/v1/filters/dns", None).await;
        assert_eq!(s, 404);
        // Save and delete back to back (one millisecond is likely): the delete wins.
        assert_eq!(put(ali.clone(), "tmp", r#"{"q": "port = 1"}"#).await.0, 200);
        let (s, _) = call(&c.url, &ali, "DELETE", "/api/v1/filters/tmp", None).await;
        assert_eq!(s, 200);
        let (s, _) = call(&c.url, &ali, "DELETE", "/api/v1/filters/mine", None).await;
        assert_eq!(s, 200);
        let (_, v) = call(&c.url, &ali, "GET", "/api/v1/filters", None).await;
        assert_eq!(
            listed(&v),
            vec![(
                "ali".into(),
                "dns".into(),
                "proto = udp and port = 53".into(),
                true
            )]
        );
        let audit = c
            .stack
            .ch
            .query("SELECT user, action, target FROM tidegate.audit_log WHERE action LIKE 'filter_%' ORDER BY at, action DESC")
            .await;
        assert_eq!(
            audit,
            "vera\tfilter_save\tssh\nali\tfilter_save\tdns\nali\tfilter_save\tdns\nali\tfilter_save\tmine\n\
             ali\tfilter_save\ttmp\nali\tfilter_delete\ttmp\nali\tfilter_delete\tmine"
        );
    });
}

#[test]
fn saves_sent_at_once_cannot_pass_the_per_user_limit() {
    use tidegate_collector::api::saved_filters::MAX_PER_USER;
    let c = Console::start_with(true, &users());
    block_on(async {
        // One below the limit, stored directly.
        c.stack
            .ch
            .query(&format!(
                "INSERT INTO tidegate.saved_filters (owner, name, q, shared, deleted, at) \
                 SELECT 'vera', concat('f', toString(number)), 'port = 1', 0, 0, now64(3) \
                 FROM numbers({})",
                MAX_PER_USER - 1
            ))
            .await;
        let vera = login(&c.url, "vera").await;
        let saves = (0..8).map(|i| {
            let (url, cookie) = (c.url.clone(), vera.clone());
            async move {
                call(
                    &url,
                    &cookie,
                    "PUT",
                    &format!("/api/v1/filters/new{i}"),
                    Some(r#"{"q": "port = 2"}"#),
                )
                .await
            }
        });
        let answers = futures_util::future::join_all(saves).await;
        let ok = answers.iter().filter(|(s, _)| *s == 200).count();
        let refused = answers
            .iter()
            .filter(|(s, v)| *s == 400 && v.to_string().contains("already"))
            .count();
        assert_eq!((ok, refused), (1, 7), "{answers:?}");
        let (_, v) = call(&c.url, &vera, "GET", "/api/v1/filters", None).await;
        assert_eq!(listed(&v).len() as u64, MAX_PER_USER);
    });
}
