//! The console's HTTP side under abuse, against the real collector: connections that
//! never finish their headers are cut after the header timeout (and capped per
//! address), password guessing from one address is throttled (429 with Retry-After,
//! logged with the address) while an analyst elsewhere logs in normally.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use tidegate_testkit::{Stack, stack::StackOptions};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpSocket, TcpStream},
};

const PASSWORD: &str = "correct horse battery staple";

async fn connect_from(src: &str, to: SocketAddr) -> std::io::Result<TcpStream> {
    let s = TcpSocket::new_v4()?;
    s.bind(format!("{src}:0").parse().unwrap())?;
    s.connect(to).await
}

/// One HTTP/1.0 request from `src`; the status code and the raw answer.
async fn request(src: &str, to: SocketAddr, req: &str) -> (u16, String) {
    let mut c = connect_from(src, to).await.unwrap();
    c.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    c.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, text)
}

fn login(user: &str, password: &str) -> String {
    let body = format!("{{\"user\":\"{user}\",\"password\":\"{password}\"}}");
    format!(
        "POST /api/v1/login HTTP/1.0\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn stack() -> (Stack, SocketAddr) {
    let port = tidegate_testkit::free_port();
    let hash = tidegate_collector::api::auth::hash_password_with(PASSWORD, 4096, 1, 1);
    let s = Stack::start_with(StackOptions {
        extra: format!(
            "[api]\nlisten = \"127.0.0.1:{port}\"\n\n[[api.user]]\nname = \"ana\"\npassword_hash = \"{hash}\"\n"
        ),
        ..StackOptions::default()
    });
    (s, SocketAddr::from(([127, 0, 0, 1], port)))
}

#[test]
fn connections_that_never_finish_their_headers_are_cut_and_capped() {
    let (_s, ui) = stack();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        // 300 connections from one address, each sending half a request.
        let mut slow = Vec::new();
        for _ in 0..300 {
            if let Ok(mut c) = connect_from("127.0.0.2", ui).await {
                let _ = c
                    .write_all(b"GET /api/v1/session HTTP/1.1\r\nHost: t\r\n")
                    .await;
                slow.push(c);
            }
        }
        // Others are served meanwhile.
        let (code, _) = request("127.0.0.1", ui, "GET /api/v1/session HTTP/1.0\r\n\r\n").await;
        assert_eq!(code, 200);
        // Every slow connection is closed by the server: at once beyond the per-address
        // cap, after the header timeout otherwise.
        let start = Instant::now();
        let mut closed = 0;
        for c in &mut slow {
            let mut b = [0u8; 256];
            let r = tokio::time::timeout(
                tidegate_collector::api::HEADER_TIMEOUT + Duration::from_secs(10),
                c.read(&mut b),
            )
            .await;
            if matches!(r, Ok(Ok(_)) | Ok(Err(_))) {
                closed += 1;
            }
        }
        assert_eq!(closed, slow.len(), "connections left open by the server");
        assert!(
            start.elapsed() < tidegate_collector::api::HEADER_TIMEOUT + Duration::from_secs(10),
            "{:?}",
            start.elapsed()
        );
    });
}

#[test]
fn password_guessing_from_one_address_is_throttled_while_another_logs_in() {
    let (s, ui) = stack();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut codes = Vec::new();
        for i in 0..12 {
            let (code, text) = request("127.0.0.2", ui, &login("ana", &format!("guess-{i}"))).await;
            if code == 429 {
                assert!(text.to_ascii_lowercase().contains("retry-after:"), "{text}");
            }
            codes.push(code);
        }
        let free = tidegate_collector::api::login_limit::FREE_FAILURES as usize;
        assert!(codes[..free].iter().all(|c| *c == 401), "{codes:?}");
        assert!(codes[free + 1..].iter().all(|c| *c == 429), "{codes:?}");
        // Even the right password waits from that address.
        let (code, _) = request("127.0.0.2", ui, &login("ana", PASSWORD)).await;
        assert_eq!(code, 429);
        // An analyst at another address logs in at once.
        let (code, text) = request("127.0.0.1", ui, &login("ana", PASSWORD)).await;
        assert_eq!(code, 200, "{text}");
        assert!(text.contains("tidegate_session="), "{text}");
    });
    // The refusals name the client's address.
    assert!(
        s.collector
            .wait_log("client=127.0.0.2", Duration::from_secs(10))
            .is_some(),
        "failed logins are logged with the client address"
    );
}

#[test]
fn a_login_body_trickled_slowly_is_cut_off() {
    let (_s, ui) = stack();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut c = connect_from("127.0.0.3", ui).await.unwrap();
        c.write_all(
            b"POST /api/v1/login HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{",
        )
        .await
        .unwrap();
        // A byte every two seconds: the body never completes within the timeout.
        let start = Instant::now();
        let mut answer = Vec::new();
        let read = async {
            let mut b = [0u8; 1024];
            loop {
                tokio::select! {
                    r = c.read(&mut b) => match r {
                        Ok(0) | Err(_) => break,
                        Ok(n) => answer.extend_from_slice(&b[..n]),
                    },
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {
                        let _ = c.write_all(b" ").await;
                    }
                }
            }
        };
        tokio::time::timeout(
            tidegate_collector::api::BODY_TIMEOUT + Duration::from_secs(10),
            read,
        )
        .await
        .expect("the server cut the connection");
        let text = String::from_utf8_lossy(&answer);
        assert!(text.starts_with("HTTP/1.1 400"), "{text}");
        assert!(
            start.elapsed() >= tidegate_collector::api::BODY_TIMEOUT - Duration::from_secs(1),
            "{:?}",
            start.elapsed()
        );
    });
}

#[test]
fn requests_that_change_something_must_come_from_the_console_and_carry_json() {
    let (_s, ui) = stack();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let body = format!("{{\"user\":\"ana\",\"password\":\"{PASSWORD}\"}}");
        let post = |headers: &str| {
            format!(
                "POST /api/v1/login HTTP/1.0\r\nHost: {ui}\r\n{headers}Content-Length: {}\r\n\r\n{body}",
                body.len()
            )
        };
        for (headers, want) in [
            // A form another page on the same site could submit.
            ("Content-Type: text/plain\r\n", 400),
            (
                "Content-Type: application/json\r\nSec-Fetch-Site: same-site\r\n",
                403,
            ),
            (
                "Content-Type: application/json\r\nOrigin: http://127.0.0.1:1\r\n",
                403,
            ),
            ("Content-Type: application/json\r\nOrigin: null\r\n", 403),
            // The console's own pages, and scripts that say nothing of where they are.
            (
                &format!(
                    "Content-Type: application/json\r\nSec-Fetch-Site: same-origin\r\nOrigin: http://{ui}\r\n"
                ),
                200,
            ),
            ("Content-Type: application/json; charset=utf-8\r\n", 200),
            // An older browser: its Origin is this server.
            (
                &format!("Content-Type: application/json\r\nOrigin: http://{ui}\r\n"),
                200,
            ),
            // Behind a reverse proxy that rewrites Host, the browser's word stands.
            (
                "Content-Type: application/json\r\nSec-Fetch-Site: same-origin\r\nOrigin: https://console.example\r\n",
                200,
            ),
        ] {
            let (code, text) = request("127.0.0.4", ui, &post(headers)).await;
            assert_eq!(code, want, "{headers:?}: {text}");
        }
    });
}
