//! Pages and their embedded assets: the index of live channels (`/`), the watch page
//! (`/watch/{c}`: player, chat, viewer count), the broadcaster's studio (`/studio/{c}`: camera,
//! go live over WHIP, status, chat moderation; its logic is in the `studio*.js` modules) rendered
//! from templates in `assets/`, and every file under `/assets/` (scripts, styles, the vendored
//! hls.js), all built into the binary. Pages never carry a secret: the studio's stream key is
//! typed into the page and stays there.
//! The watch page carries its share card (`super::cards`).
//! Text from channels reaches HTML only through [`html_escape`]; pages carry the CSP of
//! `super::response::html`.

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};

use super::cards;
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

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// One of our own files: revalidated on every load, so a new binary's pages get new scripts.
const fn ours(name: &'static str, content_type: &'static str, body: &'static [u8]) -> Asset {
    Asset {
        name,
        content_type,
        body,
        cache: "no-cache",
    }
}

/// Everything under `/assets/`, embedded at build time. hls.js comes from npm (version in
/// package.json) and is vendored under assets/vendor/. Scripts that `import` each other are
/// ES modules named by their file name (`./chat-list.js` is `/assets/chat-list.js`).
pub static ASSETS: &[Asset] = &[
    Asset {
        name: "hls.min.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../assets/vendor/hls.min.js"),
        cache: "public, max-age=86400",
    },
    ours("watch.js", JS, include_bytes!("../../assets/watch.js")),
    ours("account.js", JS, include_bytes!("../../assets/account.js")),
    ours("index.js", JS, include_bytes!("../../assets/index.js")),
    ours("style.css", CSS, include_bytes!("../../assets/style.css")),
    ours(
        "chat-list.js",
        JS,
        include_bytes!("../../assets/chat-list.js"),
    ),
    ours("studio.css", CSS, include_bytes!("../../assets/studio.css")),
    ours("studio.js", JS, include_bytes!("../../assets/studio.js")),
    ours(
        "studio-auth.js",
        JS,
        include_bytes!("../../assets/studio-auth.js"),
    ),
    ours(
        "studio-broadcast.js",
        JS,
        include_bytes!("../../assets/studio-broadcast.js"),
    ),
    ours(
        "studio-chat.js",
        JS,
        include_bytes!("../../assets/studio-chat.js"),
    ),
    ours(
        "studio-events.js",
        JS,
        include_bytes!("../../assets/studio-events.js"),
    ),
    ours(
        "studio-media.js",
        JS,
        include_bytes!("../../assets/studio-media.js"),
    ),
    ours(
        "studio-status.js",
        JS,
        include_bytes!("../../assets/studio-status.js"),
    ),
    ours(
        "studio-whip.js",
        JS,
        include_bytes!("../../assets/studio-whip.js"),
    ),
    ours(
        "questions.js",
        JS,
        include_bytes!("../../assets/questions.js"),
    ),
    ours(
        "watch-questions.js",
        JS,
        include_bytes!("../../assets/watch-questions.js"),
    ),
    ours(
        "studio-questions.js",
        JS,
        include_bytes!("../../assets/studio-questions.js"),
    ),
    ours("overlay.js", JS, include_bytes!("../../assets/overlay.js")),
    ours(
        "overlay.css",
        CSS,
        include_bytes!("../../assets/overlay.css"),
    ),
    // The share cards' picture for a channel that has no live thumbnail yet.
    Asset {
        name: "card.jpg",
        content_type: "image/jpeg",
        body: include_bytes!("../../assets/card.jpg"),
        cache: "public, max-age=86400",
    },
];

const WATCH_TEMPLATE: &str = include_str!("../../assets/watch.html");
const INDEX_TEMPLATE: &str = include_str!("../../assets/index.html");
const STUDIO_TEMPLATE: &str = include_str!("../../assets/studio.html");

/// `GET /`, `/watch/{c}`, `/studio/{c}`, `/assets/{name}`.
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
            Some(ch) => html(
                StatusCode::OK,
                watch_page(state, c, ch.publisher().is_some()),
            ),
            None => not_found(),
        },
        Route::Studio(c) => match state.bus.get(c) {
            Some(_) => html(StatusCode::OK, studio_page(c, &state.public_url)),
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

/// The watch page with its share card: the live thumbnail as the picture (from memory, so a
/// crawler stampede after a go-live post is served without touching anything else).
fn watch_page(state: &HttpState, channel: &str, live: bool) -> String {
    let thumb = state.thumbnails.latest(channel);
    let card = cards::watch_card(
        &state.public_url,
        channel,
        state.cards.get(channel).as_deref(),
        live,
        thumb.as_ref().map(|t| (t.etag.as_str(), t.width, t.height)),
    );
    WATCH_TEMPLATE
        .replace("{{channel}}", &html_escape(channel))
        .replace("{{card}}", &cards::card_tags(&card))
}

/// The studio, with the watch link to share under `server.public_url`.
fn studio_page(channel: &str, public_url: &str) -> String {
    let watch = format!("{}/watch/{channel}", public_url.trim_end_matches('/'));
    STUDIO_TEMPLATE
        .replace("{{watch_url}}", &html_escape(&watch))
        .replace("{{channel}}", &html_escape(channel))
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
    fn every_asset_a_page_or_module_names_is_embedded() {
        let has = |name: &str| ASSETS.iter().any(|a| a.name == name);
        let overlay = include_str!("../../assets/overlay.html");
        for page in [WATCH_TEMPLATE, INDEX_TEMPLATE, STUDIO_TEMPLATE, overlay] {
            for part in page.split("\"/assets/").skip(1) {
                let name = part.split('"').next().unwrap_or_default();
                assert!(
                    has(name),
                    "a page names /assets/{name}, which is not embedded"
                );
            }
        }
        for a in ASSETS.iter().filter(|a| a.content_type == JS) {
            let text = std::str::from_utf8(a.body).expect("scripts are UTF-8");
            for line in text.lines().filter(|l| l.starts_with("import ")) {
                let name = line
                    .split("from './")
                    .nth(1)
                    .and_then(|t| t.split('\'').next())
                    .unwrap_or_else(|| {
                        panic!("{}: import not of the form from './x.js': {line}", a.name)
                    });
                assert!(
                    has(name),
                    "{} imports ./{name}, which is not embedded",
                    a.name
                );
            }
        }
    }

    #[test]
    fn studio_page_names_its_channel_and_watch_link_escaped() {
        let page = studio_page("alice", "https://live.example.org/");
        assert!(page.contains("data-channel=\"alice\""));
        assert!(page.contains("value=\"https://live.example.org/watch/alice\""));
        assert!(!page.contains("{{"), "a placeholder is left");
        let odd = studio_page("alice", "https://x.example/\"><script>");
        assert!(!odd.contains("<script>"), "public_url is escaped");
    }

    #[test]
    fn escapes_html() {
        assert_eq!(
            html_escape("<img src=x onerror=\"alert('1')\">&"),
            "&lt;img src=x onerror=&quot;alert(&#39;1&#39;)&quot;&gt;&amp;"
        );
    }
}
