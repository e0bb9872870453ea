//! The browser test page (`client/`), embedded in the binary and served on
//! the HTTP address, so it runs with no build step and no file on disk: the
//! page at `GET /` (and `/index.html`), its ES modules and stylesheet next to
//! it, by the same relative names the page uses when opened as a file.

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// Every file of the page: (URL path, content type, contents).
const FILES: &[(&str, &str, &str)] = &[
    ("/", HTML, include_str!("../../client/index.html")),
    ("/index.html", HTML, include_str!("../../client/index.html")),
    ("/fallback.js", JS, include_str!("../../client/fallback.js")),
    ("/app.js", JS, include_str!("../../client/app.js")),
    (
        "/odin-client.js",
        JS,
        include_str!("../../client/odin-client.js"),
    ),
    ("/metrics.js", JS, include_str!("../../client/metrics.js")),
    ("/format.js", JS, include_str!("../../client/format.js")),
    ("/style.css", CSS, include_str!("../../client/style.css")),
];

/// Routes for the page and its assets.
pub(crate) fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    FILES
        .iter()
        .fold(Router::new(), |router, &(path, content_type, body)| {
            router.route(path, get(move || serve(content_type, body)))
        })
}

async fn serve(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            // A new server version must not run against cached old modules
            // (the security headers are added to every answer, `crate::http`).
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
}

#[cfg(test)]
mod tests {
    use super::FILES;

    /// Every file the page refers to by a relative name is served.
    #[test]
    fn serves_every_file_the_page_loads() {
        let served: Vec<&str> = FILES.iter().map(|f| f.0.trim_start_matches('/')).collect();
        let sources = FILES.iter().map(|f| f.2);
        for text in sources {
            for reference in local_references(text) {
                assert!(
                    served.contains(&reference.as_str()),
                    "the page loads {reference:?}, which is not served"
                );
            }
        }
    }

    /// `src="x"`, `href="x"` and `from './x'` names that are local files.
    fn local_references(text: &str) -> Vec<String> {
        let mut found = Vec::new();
        for (open, close) in [("src=\"", '"'), ("href=\"", '"'), ("from './", '\'')] {
            let mut rest = text;
            while let Some(i) = rest.find(open) {
                rest = &rest[i + open.len()..];
                let name = &rest[..rest.find(close).unwrap_or(rest.len())];
                let local = !name.contains(':') && !name.starts_with('#') && !name.is_empty();
                if local {
                    found.push(name.trim_start_matches("./").to_owned());
                }
            }
        }
        found
    }
}
