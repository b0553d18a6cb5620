//! The web UI: the bundle built from `dashboards/ui` (`npm ci && npm run build`), committed
//! under `dashboards/ui/dist/` and embedded here at compile time, so building the
//! collector never needs node and the UI never loads anything from another host.

use axum::{
    http::{StatusCode, Uri, header},
    response::{IntoResponse, Response},
};

/// (path, content type, bytes) of every file of the UI.
pub const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "/",
        "text/html; charset=utf-8",
        include_bytes!("../../../dashboards/ui/dist/index.html"),
    ),
    (
        "/app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../../dashboards/ui/dist/app.js"),
    ),
    (
        "/app.css",
        "text/css; charset=utf-8",
        include_bytes!("../../../dashboards/ui/dist/app.css"),
    ),
    (
        "/favicon.svg",
        "image/svg+xml",
        include_bytes!("../../../dashboards/ui/dist/favicon.svg"),
    ),
];

/// Serves an embedded file; `/index.html` is `/`.
pub async fn serve(uri: Uri) -> Response {
    let path = match uri.path() {
        "/index.html" => "/",
        p => p,
    };
    match ASSETS.iter().find(|(p, _, _)| *p == path) {
        Some((_, ctype, body)) => (
            [
                (header::CONTENT_TYPE, *ctype),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            *body,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "not found").into_response(),
    }
}
