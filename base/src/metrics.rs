//! The `/metrics` endpoint of the probe and the collector: Prometheus/OpenMetrics text
//! rendered on demand, served from a thread of its own so a busy data path never delays
//! a scrape and a scrape never touches the data path's runtime.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use prometheus_client::registry::Registry;

/// Content type of the exposition.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Renders a registry as OpenMetrics text.
pub fn render(registry: &Registry) -> String {
    let mut s = String::new();
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut s, registry);
    s
}

/// Serves `GET /metrics` on `addr` with the text `render` returns. Binds before
/// returning, so a port in use is an error here, and returns the bound address (port 0
/// picks one).
pub fn serve(
    addr: SocketAddr,
    render: impl Fn() -> String + Send + Sync + 'static,
) -> std::io::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind(addr)?;
    let local = listener.local_addr()?;
    listener.set_nonblocking(true)?;
    let render = Arc::new(render);
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(error = %e, "metrics server: no runtime");
                    return;
                }
            };
            rt.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::error!(error = %e, "metrics server: listener");
                        return;
                    }
                };
                let app = axum::Router::new().route(
                    "/metrics",
                    axum::routing::get(move || {
                        let render = render.clone();
                        async move { ([("content-type", CONTENT_TYPE)], render()) }
                    }),
                );
                if let Err(e) = axum::serve(listener, app).await {
                    tracing::error!(error = %e, "metrics server stopped");
                }
            });
        })?;
    tracing::info!(%local, "metrics on http://{local}/metrics");
    Ok(local)
}

/// [`serve`] for a shared registry.
pub fn serve_registry(
    addr: SocketAddr,
    registry: Arc<Mutex<Registry>>,
) -> std::io::Result<SocketAddr> {
    serve(addr, move || {
        registry
            .lock()
            .map(|r| render(&r))
            .unwrap_or_else(|p| render(&p.into_inner()))
    })
}

/// Registers metric fields of a struct in one go, each as `field: "help text"` (the
/// metric is named after the field) or `field as "name": "help text"`, under `prefix`
/// when one is given; evaluates to the (sub-)registry for anything that needs more
/// (units):
///
/// ```
/// # use prometheus_client::{metrics::counter::Counter, registry::Registry};
/// struct M { sent: Counter, failed: Counter }
/// let m = M { sent: Counter::default(), failed: Counter::default() };
/// let mut registry = Registry::default();
/// tidegate_base::register_metrics!(registry, "export", m {
///     sent: "Batches sent",
///     failed as "send_failures": "Batches that failed",
/// });
/// ```
#[macro_export]
macro_rules! register_metrics {
    ($registry:expr, $prefix:literal, $metrics:ident { $($field:ident $(as $name:literal)?: $help:expr),* $(,)? }) => {{
        let r = $registry.sub_registry_with_prefix($prefix);
        $( r.register($crate::register_metrics!(@name $field $($name)?), $help, $metrics.$field.clone()); )*
        r
    }};
    ($registry:expr, $metrics:ident { $($field:ident $(as $name:literal)?: $help:expr),* $(,)? }) => {{
        let r = $registry;
        $( r.register($crate::register_metrics!(@name $field $($name)?), $help, $metrics.$field.clone()); )*
        r
    }};
    (@name $field:ident) => { stringify!($field) };
    (@name $field:ident $name:literal) => { $name };
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;
    use std::io::{Read, Write};

    #[test]
    fn scrape_returns_the_registry() {
        let mut r = Registry::with_prefix("t");
        let c: Counter = Counter::default();
        r.register("things", "Things", c.clone());
        c.inc_by(7);
        let addr = serve_registry("127.0.0.1:0".parse().unwrap(), Arc::new(Mutex::new(r))).unwrap();
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .unwrap();
        let mut body = String::new();
        s.read_to_string(&mut body).unwrap();
        assert!(body.contains("t_things_total 7"), "{body}");
        assert!(body.contains(CONTENT_TYPE), "{body}");
    }

    #[test]
    fn a_port_in_use_is_an_error_at_once() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let e = serve(l.local_addr().unwrap(), String::new).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse);
    }
}
