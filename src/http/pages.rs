//! Pages and their embedded assets: the index of live channels (`/`), the watch page
//! (`/watch/{c}`: player, chat, viewer count) rendered from templates in `assets/`, and every
//! file under `/assets/` (scripts, styles, the vendored hls.js), all built into the binary.
//! Text from channels reaches HTML only through [`html_escape`]; pages carry the CSP of
//! `super::response::html`.

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};

use super::request::Req;
use super::response::{bytes_response, html, not_found};
use super::router::Route;
use super::{Body, HttpState};

/// A file shipped inside the binary.
pub struct Asset {
    pub name: &'static str,
    pub content_type: &'static str,
    pub body: &'static [u8],
    pub cache: &'static str,
}

/// Everything under `/assets/`, embedded at build time. hls.js comes from npm (version in
/// package.json) and is vendored under assets/vendor/.
pub static ASSETS: &[Asset] = &[
    Asset {
        name: "hls.min.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../assets/vendor/hls.min.js"),
        cache: "public, max-age=86400",
    },
    Asset {
        name: "watch.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../assets/watch.js"),
        cache: "no-cache",
    },
    Asset {
        name: "account.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../assets/account.js"),
        cache: "no-cache",
    },
    Asset {
        name: "index.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../assets/index.js"),
        cache: "no-cache",
    },
    Asset {
        name: "style.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../assets/style.css"),
        cache: "no-cache",
    },
];

const WATCH_TEMPLATE: &str = include_str!("../../assets/watch.html");
const INDEX_TEMPLATE: &str = include_str!("../../assets/index.html");

/// `GET /`, `/watch/{c}`, `/assets/{name}`.
pub async fn handle(state: &HttpState, route: Route<'_>, _req: Req) -> Response<Body> {
    match route {
        Route::Asset(i) => match ASSETS.get(i) {
            Some(a) => {
                let mut r =
                    bytes_response(StatusCode::OK, a.content_type, Bytes::from_static(a.body));
                r.headers_mut()
                    .insert(header::CACHE_CONTROL, HeaderValue::from_static(a.cache));
                r
            }
            None => not_found(),
        },
        Route::Index => index_page(state),
        Route::Watch(c) => match state.bus.get(c) {
            Some(_) => html(StatusCode::OK, watch_page(c)),
            None => not_found(),
        },
        _ => not_found(),
    }
}

fn index_page(state: &HttpState) -> Response<Body> {
    let mut items = String::new();
    for c in state.bus.all() {
        if c.publisher().is_some() {
            let n = html_escape(c.name.as_str());
            items.push_str(&format!(
                "<li><a href=\"/watch/{n}\">{n}</a> <span class=\"badge live\">LIVE</span></li>\n"
            ));
        }
    }
    if items.is_empty() {
        items.push_str("<li class=\"empty\">No channel is live right now.</li>\n");
    }
    html(StatusCode::OK, INDEX_TEMPLATE.replace("{{items}}", &items))
}

fn watch_page(channel: &str) -> String {
    WATCH_TEMPLATE.replace("{{channel}}", &html_escape(channel))
}

/// Escapes text for HTML.
pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vendored_hls_js_is_the_version_package_json_names() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let pkg: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(root.join("package.json")).expect("package.json"),
        )
        .expect("package.json is JSON");
        let version = pkg["dependencies"]["hls.js"]
            .as_str()
            .expect("hls.js version");
        let hls = ASSETS
            .iter()
            .find(|a| a.name == "hls.min.js")
            .expect("asset");
        let needle = format!("\"{version}\"");
        assert!(
            hls.body
                .windows(needle.len())
                .any(|w| w == needle.as_bytes()),
            "assets/vendor/hls.min.js is not hls.js {version}: run `npm install && npm run vendor`"
        );
    }

    #[test]
    fn escapes_html() {
        assert_eq!(
            html_escape("<img src=x onerror=\"alert('1')\">&"),
            "&lt;img src=x onerror=&quot;alert(&#39;1&#39;)&quot;&gt;&amp;"
        );
    }
}
