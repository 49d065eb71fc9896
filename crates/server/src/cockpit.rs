//! Serves the web cockpit embedded at build time (see `build.rs`). The files are code, not
//! data, so they need no token; the page asks for one and sends it on every API call.

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

include!(concat!(env!("OUT_DIR"), "/cockpit_files.rs"));

/// Workers come from blob URLs (MapLibre); everything else from this origin only.
const CSP: &str = "default-src 'self'; script-src 'self'; worker-src 'self' blob:; \
child-src blob:; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; \
connect-src 'self'; frame-ancestors 'none'";

const NOT_BUILT: &str = "<!doctype html><meta charset=utf-8><title>citybrain</title>\
<body style=\"font:16px system-ui;margin:3em\"><h1>citybrain is running</h1>\
<p>This binary was built without the web cockpit. Build it with <code>cockpit/build</code> \
(needs Node.js and npm) and rebuild citybrain, or start with <code>scripts/up</code>, which \
does both.</p><p>The API is at <a href=\"/api/v1/openapi.json\">/api/v1/openapi.json</a>.</p>";

fn content_type(name: &str) -> &'static str {
    match name.rsplit('.').next().unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        _ => "application/octet-stream",
    }
}

/// Whether the cockpit was built into this binary.
pub fn built() -> bool {
    FILES.iter().any(|(name, _)| *name == "index.html")
}

/// For working on the cockpit: with `CITYBRAIN_COCKPIT_DIR=cockpit/dist` the server reads
/// the files from disk on each request, so `npm run build` shows without rebuilding Rust.
fn file(name: &str) -> Option<Vec<u8>> {
    if let Some(dir) = std::env::var_os("CITYBRAIN_COCKPIT_DIR") {
        if name.split('/').any(|part| part == ".." || part.is_empty()) {
            return None;
        }
        return std::fs::read(std::path::Path::new(&dir).join(name)).ok();
    }
    FILES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, bytes)| bytes.to_vec())
}

fn respond(name: &str, bytes: Vec<u8>, cache: &'static str) -> Response {
    let mut response = bytes.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(name)),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// `GET /`: the cockpit's page (or how to build it).
pub async fn index() -> Response {
    match file("index.html") {
        Some(bytes) => respond("index.html", bytes, "no-cache"),
        None => (
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            NOT_BUILT,
        )
            .into_response(),
    }
}

/// `GET /assets/{path}`: the built scripts and styles; their names carry a content hash,
/// so browsers may keep them for good.
pub async fn asset(Path(path): Path<String>) -> Response {
    let name = format!("assets/{path}");
    match file(&name) {
        Some(bytes) => respond(&name, bytes, "public, max-age=31536000, immutable"),
        None => (StatusCode::NOT_FOUND, "no such cockpit file").into_response(),
    }
}
