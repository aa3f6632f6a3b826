//! The page and its assets, embedded in the binary at build time (no CDN at run time):
//! `dashboard/index.html`, `app.js`, `app.css`, and uPlot from `dashboard/node_modules`
//! (`npm ci --prefix dashboard`, run by `scripts/tools`; `build.rs` checks it is there).
//! None of them carries data; they are served without the token, revalidated by ETag.

use axum::extract::Path;
use axum::http::HeaderMap;
use axum::response::Response;

use super::http::{cacheable, etag_of, not_found};

macro_rules! asset {
    ($path:literal) => {
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../dashboard/",
            $path
        ))
    };
}

/// `(name under /assets/, content type, bytes)`.
const ASSETS: &[(&str, &str, &[u8])] = &[
    ("app.js", "text/javascript; charset=utf-8", asset!("app.js")),
    ("app.css", "text/css; charset=utf-8", asset!("app.css")),
    (
        "uPlot.iife.min.js",
        "text/javascript; charset=utf-8",
        asset!("node_modules/uplot/dist/uPlot.iife.min.js"),
    ),
    (
        "uPlot.min.css",
        "text/css; charset=utf-8",
        asset!("node_modules/uplot/dist/uPlot.min.css"),
    ),
];

const INDEX: &[u8] = asset!("index.html");

fn serve(headers: &HeaderMap, content_type: &'static str, body: &'static [u8]) -> Response {
    cacheable(headers, content_type, "no-cache", &etag_of(body), body)
}

/// `GET /`: the page.
pub(super) async fn index(headers: HeaderMap) -> Response {
    serve(&headers, "text/html; charset=utf-8", INDEX)
}

/// `GET /assets/{name}`.
pub(super) async fn asset(Path(name): Path<String>, headers: HeaderMap) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, content_type, body)) => serve(&headers, content_type, body),
        None => not_found().await,
    }
}
