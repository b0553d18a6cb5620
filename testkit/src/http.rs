//! Plain HTTP/1.0 GETs against local endpoints (Prometheus metrics), and reading one
//! sample out of a metrics page.

/// The body of `GET url` (`http://host:port/path`).
pub async fn http_get(url: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").expect("an http:// URL");
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let mut s = tokio::net::TcpStream::connect(host).await.expect("connect");
    s.write_all(format!("GET /{path} HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes())
        .await
        .expect("send the request");
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.expect("read the answer");
    buf.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or(buf)
}

/// The value of the sample `name` (with its labels, as printed) in a metrics page;
/// panics when it is absent.
pub fn metric(text: &str, name: &str) -> f64 {
    metric_opt(text, name).unwrap_or_else(|| panic!("{name} not in metrics:\n{text}"))
}

/// [`metric`], `None` when absent.
pub fn metric_opt(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(name)
            .filter(|r| r.starts_with(' '))
            .and_then(|r| r.trim().parse::<f64>().ok())
    })
}
