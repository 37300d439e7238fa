//! HTTP: a hyper 1 service for HLS playlists and segments (from memory), the JSON API, pages
//! and health. Routing is a pure function of method and path with table tests; there is no file
//! path anywhere, so nothing to traverse.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::bus::Bus;
use crate::config::{is_name, HttpConfig};
use crate::hls::{HlsStore, Lookup, RenditionSummary};

pub type Body = BoxBody<Bytes, Infallible>;

/// What a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route<'a> {
    Index,
    Watch(&'a str),
    Master(&'a str),
    MediaPlaylist(&'a str, &'a str),
    Segment(&'a str, &'a str, &'a str),
    Channels,
    Channel(&'a str),
    Healthz,
    /// CORS preflight for any path.
    Preflight,
    NotFound,
    MethodNotAllowed,
}

/// Maps a method and path to a route. Names must be `[A-Za-z0-9_-]{1,64}`; anything else
/// (encoded characters, dots, empty segments) is not found.
pub fn route<'a>(method: &Method, path: &'a str) -> Route<'a> {
    if method == Method::OPTIONS {
        return Route::Preflight;
    }
    let read = method == Method::GET || method == Method::HEAD;
    let parts: Vec<&str> = match path.strip_prefix('/') {
        Some("") => Vec::new(),
        Some(rest) => rest.split('/').collect(),
        None => return Route::NotFound,
    };
    let r = match parts.as_slice() {
        [] => Route::Index,
        ["healthz"] => Route::Healthz,
        ["watch", c] if is_name(c) => Route::Watch(c),
        ["hls", c, "master.m3u8"] if is_name(c) => Route::Master(c),
        ["hls", c, r, "index.m3u8"] if is_name(c) && is_name(r) => Route::MediaPlaylist(c, r),
        ["hls", c, r, s] if is_name(c) && is_name(r) && is_segment_name(s) => {
            Route::Segment(c, r, s)
        }
        ["api", "channels"] => Route::Channels,
        ["api", "channels", c] if is_name(c) => Route::Channel(c),
        _ => return Route::NotFound,
    };
    if read {
        r
    } else {
        Route::MethodNotAllowed
    }
}

fn is_segment_name(s: &str) -> bool {
    s.strip_suffix(".ts")
        .map(|n| !n.is_empty() && n.len() <= 20 && n.bytes().all(|b| b.is_ascii_digit()))
        .unwrap_or(false)
}

/// What the HTTP service reads.
pub struct HttpState {
    pub store: Arc<HlsStore>,
    pub bus: Arc<Bus>,
    /// `None` when the ladder is empty (passthrough only).
    pub transcoder: Option<Arc<crate::transcode::Transcoder>>,
}

/// One channel as `/api/channels` shows it.
#[derive(Debug, Serialize)]
pub struct ChannelView {
    pub name: String,
    pub live: bool,
    pub viewers: u64,
    pub renditions: Vec<String>,
    pub started_at: Option<String>,
    pub playlist: Option<String>,
    pub details: Vec<RenditionSummary>,
    /// Ladder renditions the transcoder has shed because the pool could not keep real time.
    pub degraded: Vec<String>,
}

impl HttpState {
    fn channel_view(&self, name: &str) -> Option<ChannelView> {
        let bus = self.bus.get(name)?;
        let publisher = bus.publisher();
        let details = self.store.renditions(name);
        let live = publisher.is_some();
        Some(ChannelView {
            name: name.to_string(),
            live,
            viewers: 0,
            renditions: details.iter().map(|r| r.name.clone()).collect(),
            started_at: publisher.map(|p| p.live_since.to_rfc3339()),
            playlist: (!details.is_empty()).then(|| format!("/hls/{name}/master.m3u8")),
            details,
            degraded: self
                .transcoder
                .as_ref()
                .map(|t| t.degraded(name))
                .unwrap_or_default(),
        })
    }

    /// Answers one request.
    pub fn handle(&self, method: &Method, path: &str) -> Response<Body> {
        let head = method == Method::HEAD;
        let resp = match route(method, path) {
            Route::Healthz => text(StatusCode::OK, "text/plain; charset=utf-8", "ok\n"),
            Route::Master(c) => playlist(self.store.master(c)),
            Route::MediaPlaylist(c, r) => playlist(self.store.media_playlist(c, r)),
            Route::Segment(c, r, s) => match self.store.segment(c, r, s) {
                Ok(data) => {
                    let mut resp = bytes_response(StatusCode::OK, "video/mp2t", data);
                    resp.headers_mut().insert(
                        header::CACHE_CONTROL,
                        HeaderValue::from_static("public, max-age=30, immutable"),
                    );
                    resp
                }
                Err(_) => not_found(),
            },
            Route::Channels => {
                let all: Vec<ChannelView> = self
                    .bus
                    .all()
                    .iter()
                    .filter_map(|c| self.channel_view(c.name.as_str()))
                    .collect();
                json(StatusCode::OK, &all)
            }
            Route::Channel(c) => match self.channel_view(c) {
                Some(v) => json(StatusCode::OK, &v),
                None => json_error(StatusCode::NOT_FOUND, "no such channel"),
            },
            Route::Index => self.index_page(),
            Route::Watch(c) => match self.bus.get(c) {
                Some(_) => html(StatusCode::OK, watch_page(c)),
                None => not_found(),
            },
            Route::Preflight => {
                let mut r = text(StatusCode::NO_CONTENT, "text/plain", "");
                let h = r.headers_mut();
                h.insert(
                    header::ACCESS_CONTROL_ALLOW_METHODS,
                    HeaderValue::from_static("GET, HEAD, POST, OPTIONS"),
                );
                h.insert(
                    header::ACCESS_CONTROL_ALLOW_HEADERS,
                    HeaderValue::from_static("Content-Type, Last-Event-ID"),
                );
                h.insert(
                    header::ACCESS_CONTROL_MAX_AGE,
                    HeaderValue::from_static("86400"),
                );
                r
            }
            Route::MethodNotAllowed => {
                json_error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
            }
            Route::NotFound => not_found(),
        };
        finish(resp, head)
    }

    fn index_page(&self) -> Response<Body> {
        let mut items = String::new();
        for c in self.bus.all() {
            if c.publisher().is_some() {
                let n = html_escape(c.name.as_str());
                items.push_str(&format!(
                    "<li><a href=\"/watch/{n}\">{n}</a> <small>(<a href=\"/hls/{n}/master.m3u8\">HLS</a>)</small></li>\n"
                ));
            }
        }
        if items.is_empty() {
            items.push_str("<li>No channel is live right now.</li>\n");
        }
        html(
            StatusCode::OK,
            format!(
                "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>onair</title></head>\
<body><h1>Live now</h1><ul>\n{items}</ul></body></html>\n"
            ),
        )
    }
}

fn watch_page(channel: &str) -> String {
    let n = html_escape(channel);
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{n} · onair</title></head>\
<body><h1>{n}</h1><video id=\"player\" controls autoplay muted playsinline src=\"/hls/{n}/master.m3u8\" style=\"max-width:100%\"></video>\
<p>Playlist: <a href=\"/hls/{n}/master.m3u8\">/hls/{n}/master.m3u8</a></p></body></html>\n"
    )
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

fn playlist(r: Result<Bytes, Lookup>) -> Response<Body> {
    match r {
        Ok(b) => {
            let mut resp = bytes_response(StatusCode::OK, "application/vnd.apple.mpegurl", b);
            resp.headers_mut().insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("no-cache, no-store"),
            );
            resp
        }
        Err(_) => not_found(),
    }
}

fn bytes_response(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Body> {
    let mut r = Response::new(Full::new(body).boxed());
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn text(status: StatusCode, content_type: &'static str, body: &'static str) -> Response<Body> {
    bytes_response(status, content_type, Bytes::from_static(body.as_bytes()))
}

fn html(status: StatusCode, body: String) -> Response<Body> {
    let mut r = bytes_response(status, "text/html; charset=utf-8", Bytes::from(body));
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

/// A JSON response.
pub fn json<T: Serialize>(status: StatusCode, v: &T) -> Response<Body> {
    match serde_json::to_vec(v) {
        Ok(b) => {
            let mut r = bytes_response(status, "application/json", Bytes::from(b));
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            r
        }
        Err(_) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain",
            "encoding failed\n",
        ),
    }
}

/// A JSON error `{"error": reason}`.
pub fn json_error(status: StatusCode, reason: &str) -> Response<Body> {
    json(status, &serde_json::json!({ "error": reason }))
}

fn not_found() -> Response<Body> {
    json_error(StatusCode::NOT_FOUND, "not found")
}

/// Common headers; HEAD keeps the headers (with the length) and drops the body.
fn finish(mut resp: Response<Body>, head: bool) -> Response<Body> {
    resp.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    if head {
        let len = http_body::Body::size_hint(resp.body()).exact().unwrap_or(0);
        resp.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        *resp.body_mut() = Full::new(Bytes::new()).boxed();
    }
    resp
}

/// Serves HTTP until `cancel`, then drains open connections gracefully.
pub async fn serve(
    listener: TcpListener,
    state: Arc<HttpState>,
    cfg: HttpConfig,
    cancel: CancellationToken,
) {
    let limit = Arc::new(Semaphore::new(cfg.max_connections));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(cfg.header_timeout_seconds))
        .max_buf_size(64 * 1024);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(256);
    loop {
        let permit = tokio::select! {
            p = limit.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = cancel.cancelled() => break,
        };
        let (sock, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    warn!(error = %e, "http accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = cancel.cancelled() => break,
        };
        let _ = sock.set_nodelay(true);
        let state = state.clone();
        let svc = service_fn(move |req: Request<Incoming>| {
            let state = state.clone();
            async move { Ok::<_, Infallible>(handle_request(&state, req, peer)) }
        });
        let conn = builder.serve_connection_with_upgrades(TokioIo::new(sock), svc);
        let conn = graceful.watch(conn.into_owned());
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                debug!(%peer, error = %e, "http connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(Duration::from_secs(3)) => debug!("http connections still open at shutdown; closing them"),
    }
}

fn handle_request(state: &HttpState, req: Request<Incoming>, _peer: SocketAddr) -> Response<Body> {
    state.handle(req.method(), req.uri().path())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let get = Method::GET;
        let cases: Vec<(Method, &str, Route)> = vec![
            (get.clone(), "/", Route::Index),
            (get.clone(), "/healthz", Route::Healthz),
            (get.clone(), "/watch/alice", Route::Watch("alice")),
            (
                get.clone(),
                "/hls/alice/master.m3u8",
                Route::Master("alice"),
            ),
            (
                get.clone(),
                "/hls/alice/source/index.m3u8",
                Route::MediaPlaylist("alice", "source"),
            ),
            (
                get.clone(),
                "/hls/alice/360p/12.ts",
                Route::Segment("alice", "360p", "12.ts"),
            ),
            (
                Method::HEAD,
                "/hls/alice/360p/12.ts",
                Route::Segment("alice", "360p", "12.ts"),
            ),
            (get.clone(), "/api/channels", Route::Channels),
            (get.clone(), "/api/channels/alice", Route::Channel("alice")),
            (Method::OPTIONS, "/anything", Route::Preflight),
            (
                Method::POST,
                "/hls/alice/master.m3u8",
                Route::MethodNotAllowed,
            ),
            (get.clone(), "/hls/../etc/passwd", Route::NotFound),
            (
                get.clone(),
                "/hls/alice/source/..%2f..%2fx.ts",
                Route::NotFound,
            ),
            (
                get.clone(),
                "/hls/alice%2fsource/index.m3u8",
                Route::NotFound,
            ),
            (get.clone(), "/hls/alice/source/1.ts/", Route::NotFound),
            (get.clone(), "/hls/alice/source/x.ts", Route::NotFound),
            (get.clone(), "/hls/alice/source/.ts", Route::NotFound),
            (get.clone(), "/hls//source/1.ts", Route::NotFound),
            (get.clone(), "//", Route::NotFound),
            (get.clone(), "", Route::NotFound),
            (
                get.clone(),
                "/watch/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                Route::NotFound,
            ),
        ];
        for (m, p, want) in cases {
            assert_eq!(route(&m, p), want, "{m} {p}");
        }
    }

    #[test]
    fn escapes_html() {
        assert_eq!(
            html_escape("<img src=x onerror=\"alert('1')\">&"),
            "&lt;img src=x onerror=&quot;alert(&#39;1&#39;)&quot;&gt;&amp;"
        );
    }
}
