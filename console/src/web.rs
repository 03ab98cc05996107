//! The single-page app (`console/web/`, built into `console/web/dist/` and
//! committed), embedded in the binary: `cargo build` needs no node, and one
//! file is the whole console. Its pages are served at `/`, `/visualize...`,
//! `/docs...`, `/login`; its hashed assets under `/assets/`, cached for a year.

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use rust_embed::RustEmbed;

#[derive(RustEmbed)]
#[folder = "web/dist/"]
struct Assets;

/// The app's routes (merge at the root).
pub fn routes() -> Router {
    Router::new()
        .route("/", get(index))
        .route("/visualize", get(index))
        .route("/visualize/{*state}", get(index))
        .route("/login", get(index))
        .route("/docs", get(index))
        .route("/docs/{name}", get(index))
        .route("/assets/{*file}", get(asset))
}

async fn index() -> Response {
    match Assets::get("index.html") {
        Some(file) => (
            [(header::CONTENT_TYPE, "text/html; charset=utf-8"), (header::CACHE_CONTROL, "no-cache")],
            file.data.into_owned(),
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "the console was built without its web app").into_response(),
    }
}

async fn asset(Path(file): Path<String>) -> Response {
    let Some(found) = Assets::get(&format!("assets/{file}")) else {
        return (StatusCode::NOT_FOUND, "no such asset").into_response();
    };
    let kind = match file.rsplit('.').next() {
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("woff2") => "font/woff2",
        _ => "application/octet-stream",
    };
    // Names carry a hash of their content.
    (
        [(header::CONTENT_TYPE, kind), (header::CACHE_CONTROL, "public, max-age=31536000, immutable")],
        found.data.into_owned(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_app_is_embedded() {
        let index = Assets::get("index.html").expect("console/web/dist/index.html (scripts/build-console)");
        let html = String::from_utf8_lossy(&index.data);
        let script = html.split("src=\"/assets/").nth(1).and_then(|s| s.split('"').next()).expect("a script");
        assert!(Assets::get(&format!("assets/{script}")).is_some(), "{script} is embedded");
        // No request to any other host: every URL in the page is local.
        assert!(!html.contains("http://") && !html.contains("https://"), "{html}");
    }
}
