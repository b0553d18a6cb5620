//! Triage from the API, as an analyst and a script do it: every alert starts `new`; it is
//! acknowledged (by the automation token), taken in progress with an assignee and closed
//! (by the logged-in analyst), each action kept with who took it and its note; the list
//! shows each alert's current state and filters by it; bad states, oversized or control
//! characters, unknown alerts and empty actions are refused naming what is wrong, and SQL
//! in a note is stored as text. Real ClickHouse, real collector, real attack captures.

use crate::support::ui::{CAPTURES, Console, PASSWORD, TOKEN, USER, api, block_on, http};
use serde_json::Value;

#[test]
fn an_alert_goes_through_its_states_and_keeps_every_action() {
    let mut c = Console::start(true);
    c.seed(&CAPTURES);
    block_on(async {
        let all = api(&c.url, "/api/v1/alerts?from=946684800000&limit=500")
            .await
            .json();
        let items = all["items"].as_array().unwrap().clone();
        assert!(items.len() >= 2, "{all}");
        assert!(
            items
                .iter()
                .all(|a| a["triage_state"] == "new" && a["assignee"] == "")
        );
        let id = items[0]["id"].as_str().unwrap().to_string();
        let path = format!("/api/v1/alerts/{id}/triage");

        let bearer = format!("Bearer {TOKEN}");
        let as_token = [("Authorization", bearer.as_str())];
        let post = async |headers: &[(&str, &str)], body: &str| {
            http("POST", &c.url, &path, headers, Some(body)).await
        };
        // The script acknowledges it.
        let r = post(
            &as_token,
            r#"{"state":"acknowledged","note":"seen by the SOC bot"}"#,
        )
        .await;
        assert_eq!(r.status, 200, "{:?}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.json()["triage_state"], "acknowledged");

        // The analyst logs in, takes it and closes it.
        let login = format!(r#"{{"user":"{USER}","password":"{PASSWORD}"}}"#);
        let r = http("POST", &c.url, "/api/v1/login", &[], Some(&login)).await;
        assert_eq!(r.status, 200);
        let cookie = r
            .header("set-cookie")
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_string();
        let as_analyst = [("Cookie", cookie.as_str())];
        let r = post(&as_analyst, r#"{"state":"in_progress","assignee":"ana"}"#).await;
        assert_eq!(r.json()["assignee"], "ana");
        // SQL in a note is only text.
        let note = "spoofed sources; blocked upstream'); DROP TABLE alerts; --\nticket 分析-7";
        let body = serde_json::json!({ "state": "closed", "note": note }).to_string();
        let r = post(&as_analyst, &body).await;
        assert_eq!(r.status, 200);
        let done = r.json();
        assert_eq!(done["triage_state"], "closed");
        assert_eq!(
            done["assignee"], "ana",
            "an action without assignee keeps it"
        );

        // The history: three actions, oldest first, with who took each.
        let h = api(&c.url, &path).await.json();
        let rows = h["history"].as_array().unwrap();
        let seen: Vec<(String, String, String)> = rows
            .iter()
            .map(|r| {
                let s = |k: &str| r[k].as_str().unwrap().to_string();
                (s("user"), s("state"), s("assignee"))
            })
            .collect();
        assert_eq!(
            seen,
            [
                ("automation".into(), "acknowledged".into(), "".into()),
                (USER.into(), "in_progress".into(), "ana".into()),
                (USER.into(), "closed".into(), "ana".into()),
            ]
        );
        assert_eq!(rows[0]["note"], "seen by the SOC bot");
        assert_eq!(rows[2]["note"], note);
        assert_eq!(h["triage_state"], "closed");
        assert_eq!(
            c.stack
                .ch
                .query("SELECT count() FROM tidegate.alerts FINAL")
                .await,
            items.len().to_string(),
            "the note's SQL did nothing"
        );

        // The list shows it and filters by state.
        let closed = api(&c.url, "/api/v1/alerts?from=946684800000&state=closed")
            .await
            .json();
        let ids: Vec<&str> = closed["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, [id.as_str()]);
        assert_eq!(closed["items"][0]["triage_state"], "closed");
        let fresh = api(
            &c.url,
            "/api/v1/alerts?from=946684800000&limit=500&state=new",
        )
        .await
        .json();
        let fresh_items = fresh["items"].as_array().unwrap();
        assert_eq!(fresh_items.len(), items.len() - 1);
        assert!(fresh_items.iter().all(|a| a["id"] != id.as_str()));
        let detail = api(&c.url, &format!("/api/v1/alerts/{id}")).await.json();
        assert_eq!(detail["triage_state"], "closed");
        // The version is a 64-bit integer: sent as text, exactly as stored.
        let stored = c
            .stack
            .ch
            .query(&format!(
                "SELECT toString(max(version)) FROM tidegate.alerts WHERE id = '{id}'"
            ))
            .await;
        assert_eq!(detail["version"].as_str(), Some(stored.as_str()));
        assert_eq!(items[0]["version"].as_str(), Some(stored.as_str()));

        // Refusals name what is wrong.
        let refused = async |body: &str, status: u16, says: &str| {
            let r = post(&as_token, body).await;
            assert_eq!(r.status, status, "{body}");
            let msg = r.json()["error"].as_str().unwrap_or_default().to_string();
            assert!(msg.contains(says), "{body}: {msg}");
        };
        refused(r#"{"state":"resolved"}"#, 400, "state").await;
        refused(r#"{"assignee":"ana\nbob"}"#, 400, "assignee").await;
        refused(
            &format!(r#"{{"note":"{}"}}"#, "x".repeat(4001)),
            400,
            "note",
        )
        .await;
        refused("{}", 400, "nothing to do").await;
        refused(r#"{"state":"closed","priority":1}"#, 400, "priority").await;
        let r = http(
            "POST",
            &c.url,
            "/api/v1/alerts/0123456789abcdef/triage",
            &as_token,
            Some(r#"{"state":"closed"}"#),
        )
        .await;
        assert_eq!(r.status, 404);
        let r = api(&c.url, "/api/v1/alerts?state=resolved").await;
        assert_eq!(r.status, 400);
        assert!(r.json()["error"].as_str().unwrap().contains("state"));
        // Without credentials nothing is recorded.
        let r = http("POST", &c.url, &path, &[], Some(r#"{"state":"new"}"#)).await;
        assert_eq!(r.status, 401);
        let after = api(&c.url, &path).await.json();
        assert_eq!(after["history"].as_array().unwrap().len(), 3);
        let _: &Value = &after;
    });
}
