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
use crate::hls::serve::{self, PlaylistQuery, ServeError};
use crate::hls::{HlsStore, RenditionSummary};

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
    Metrics,
    /// CORS preflight for any path.
    Preflight,
    NotFound,
    MethodNotAllowed,
}

impl Route<'_> {
    /// A low-cardinality name for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Route::Index => "index",
            Route::Watch(_) => "watch",
            Route::Master(_) => "master_playlist",
            Route::MediaPlaylist(..) => "media_playlist",
            Route::Segment(..) => "segment",
            Route::Channels | Route::Channel(_) => "api_channels",
            Route::Healthz => "healthz",
            Route::Metrics => "metrics",
            Route::Preflight => "preflight",
            Route::NotFound => "not_found",
            Route::MethodNotAllowed => "method_not_allowed",
        }
    }
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
        ["metrics"] => Route::Metrics,
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
    crate::hls::MediaName::parse(s).is_some()
}

/// What the HTTP service reads.
pub struct HttpState {
    pub store: Arc<HlsStore>,
    pub bus: Arc<Bus>,
    pub announce: Arc<crate::announce::AnnounceStats>,
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
        })
    }

    /// Answers one request.
    pub async fn handle(&self, method: &Method, path: &str, query: Option<&str>) -> Response<Body> {
        self.handle_ranged(method, path, query, None).await
    }

    /// Answers one request that may carry a `Range` header (honoured for segments).
    pub async fn handle_ranged(
        &self,
        method: &Method,
        path: &str,
        query: Option<&str>,
        range: Option<&str>,
    ) -> Response<Body> {
        let head = method == Method::HEAD;
        let resp = match route(method, path) {
            Route::Healthz => text(StatusCode::OK, "text/plain; charset=utf-8", "ok\n"),
            Route::Metrics => {
                let body = crate::metrics::render(&crate::metrics::Sources {
                    bus: self.bus.clone(),
                    store: self.store.clone(),
                    announce: self.announce.clone(),
                });
                bytes_response(
                    StatusCode::OK,
                    "text/plain; version=0.0.4; charset=utf-8",
                    Bytes::from(body),
                )
            }
            Route::Master(c) => playlist(self.store.master(c).map_err(ServeError::from)),
            Route::MediaPlaylist(c, r) => match PlaylistQuery::parse(query) {
                Ok(q) => playlist(serve::media_playlist(&self.store, c, r, q).await),
                Err(e) => playlist(Err(e)),
            },
            Route::Segment(c, r, s) => match serve::media_object(&self.store, c, r, s).await {
                Ok((data, content_type)) => segment_response(data, content_type, range),
                Err(e) => hls_error(e),
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

/// What a `Range` header asks of a body of a given length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// No header, another unit, several ranges or bad syntax: the whole body (RFC 9110 allows
    /// ignoring such a header).
    Full,
    /// Bytes `first..=last`.
    Part { first: u64, last: u64 },
    /// 416: nothing of the body is in the range.
    Unsatisfiable,
}

/// Parses a single-range `Range: bytes=...` header against a body of `len` bytes.
pub fn byte_range(header: Option<&str>, len: u64) -> ByteRange {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return ByteRange::Full;
    };
    let Some((a, b)) = spec.trim().split_once('-') else {
        return ByteRange::Full;
    };
    // Numbers too large for u64 saturate: a first byte beyond any length is unsatisfiable.
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
    let (a, b) = (a.trim(), b.trim());
    match (digits(a), digits(b), b.is_empty()) {
        // bytes=-N: the last N bytes.
        (false, true, _) if a.is_empty() => match b.parse::<u64>().unwrap_or(u64::MAX) {
            0 => ByteRange::Unsatisfiable,
            _ if len == 0 => ByteRange::Unsatisfiable,
            n => ByteRange::Part {
                first: len.saturating_sub(n),
                last: len - 1,
            },
        },
        // bytes=A- and bytes=A-B
        (true, bb, empty) if bb || empty => {
            let first: u64 = a.parse().unwrap_or(u64::MAX);
            let last: u64 = if empty {
                u64::MAX
            } else {
                b.parse().unwrap_or(u64::MAX)
            };
            if last < first {
                ByteRange::Full
            } else if first >= len {
                ByteRange::Unsatisfiable
            } else {
                ByteRange::Part {
                    first,
                    last: last.min(len - 1),
                }
            }
        }
        _ => ByteRange::Full,
    }
}

/// A segment, whole or the part a `Range` header asks for.
fn segment_response(
    data: Bytes,
    content_type: &'static str,
    range: Option<&str>,
) -> Response<Body> {
    let len = data.len() as u64;
    let mut resp = match byte_range(range, len) {
        ByteRange::Full => bytes_response(StatusCode::OK, content_type, data),
        ByteRange::Part { first, last } => {
            let mut r = bytes_response(
                StatusCode::PARTIAL_CONTENT,
                content_type,
                data.slice(first as usize..=last as usize),
            );
            if let Ok(v) = HeaderValue::from_str(&format!("bytes {first}-{last}/{len}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            r
        }
        ByteRange::Unsatisfiable => {
            let mut r = text(StatusCode::RANGE_NOT_SATISFIABLE, "text/plain", "");
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return r;
        }
    };
    let h = resp.headers_mut();
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=30, immutable"),
    );
    resp
}

fn playlist(r: Result<Bytes, ServeError>) -> Response<Body> {
    match r {
        Ok(b) => {
            let mut resp = bytes_response(StatusCode::OK, "application/vnd.apple.mpegurl", b);
            resp.headers_mut().insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("no-cache, no-store"),
            );
            resp
        }
        Err(e) => hls_error(e),
    }
}

fn hls_error(e: ServeError) -> Response<Body> {
    match e {
        ServeError::NotFound => not_found(),
        ServeError::BadRequest(why) => json_error(StatusCode::BAD_REQUEST, why),
        ServeError::Timeout => json_error(StatusCode::SERVICE_UNAVAILABLE, "not available in time"),
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

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read http.tls_cert {path}: {reason}")]
    Cert { path: String, reason: String },
    #[error("cannot read http.tls_key {path}: {reason}")]
    Key { path: String, reason: String },
    #[error("http.tls_cert and http.tls_key do not make a usable pair: {0}")]
    Pair(String),
}

/// TLS settings from the configured PEM files, offering HTTP/2 and HTTP/1.1 by ALPN; `None`
/// when no certificate is configured (plain HTTP, where HTTP/2 is still offered as h2c).
pub fn tls_config(
    cfg: &HttpConfig,
) -> Result<Option<Arc<tokio_rustls::rustls::ServerConfig>>, TlsError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    if cfg.tls_cert.is_empty() {
        return Ok(None);
    }
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cfg.tls_cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::Cert {
            path: cfg.tls_cert.clone(),
            reason: e.to_string(),
        })?;
    let key = PrivateKeyDer::from_pem_file(&cfg.tls_key).map_err(|e| TlsError::Key {
        path: cfg.tls_key.clone(),
        reason: e.to_string(),
    })?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Pair(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Pair(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Some(Arc::new(config)))
}

/// Serves HTTP until `cancel`, then drains open connections gracefully.
pub async fn serve(
    listener: TcpListener,
    state: Arc<HttpState>,
    cfg: HttpConfig,
    tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    cancel: CancellationToken,
) {
    let limit = Arc::new(Semaphore::new(cfg.max_connections));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let tls = tls.map(tokio_rustls::TlsAcceptor::from);
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
    let mut last_full_log: Option<std::time::Instant> = None;
    let header_timeout = cfg.header_timeout_seconds;
    loop {
        let permit = match limit.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                // At the limit nothing is accepted: new connections wait in the listen backlog.
                // Said at most once a second (the peers are not known before accept).
                if last_full_log.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                    warn!(
                        limit = cfg.max_connections,
                        "http.max_connections reached: new connections wait in the listen backlog"
                    );
                    last_full_log = Some(std::time::Instant::now());
                }
                tokio::select! {
                    p = limit.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
                    _ = cancel.cancelled() => break,
                }
            }
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
            async move { Ok::<_, Infallible>(handle_request(&state, req, peer).await) }
        });
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let tls = tls.clone();
        let handshake_limit = Duration::from_secs(cfg.header_timeout_seconds);
        tokio::spawn(async move {
            let result = match tls {
                None => {
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(sock), svc);
                    watcher.watch(conn.into_owned()).await
                }
                Some(acceptor) => {
                    let stream =
                        match tokio::time::timeout(handshake_limit, acceptor.accept(sock)).await {
                            Ok(Ok(s)) => s,
                            Ok(Err(e)) => {
                                debug!(%peer, error = %e, "TLS handshake failed");
                                return;
                            }
                            Err(_) => {
                                debug!(%peer, "TLS handshake timed out");
                                return;
                            }
                        };
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc);
                    watcher.watch(conn.into_owned()).await
                }
            };
            if let Err(e) = result {
                log_connection_error(peer, &*e, header_timeout);
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

/// Logs why a connection was refused (a limit, not HTTP), at most once a second: a flood of
/// slow or broken clients must not become a flood of log lines. Other errors (the peer went
/// away) are debug.
fn log_connection_error(
    peer: SocketAddr,
    e: &(dyn std::error::Error + Send + Sync + 'static),
    header_timeout: u64,
) {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LAST_LOG_SECOND: AtomicU64 = AtomicU64::new(0);
    static UNLOGGED: AtomicU64 = AtomicU64::new(0);
    let Some(h) = e.downcast_ref::<hyper::Error>() else {
        debug!(%peer, error = %e, "http connection ended with an error");
        return;
    };
    if !(h.is_timeout() || h.is_parse() || h.is_parse_too_large()) {
        debug!(%peer, error = %e, "http connection ended with an error");
        return;
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    if LAST_LOG_SECOND.swap(now, Ordering::Relaxed) == now {
        UNLOGGED.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let also = UNLOGGED.swap(0, Ordering::Relaxed);
    if h.is_timeout() {
        warn!(%peer, also_refused = also, "http connection closed: request headers not received within http.header_timeout_seconds ({header_timeout} s)");
    } else if h.is_parse_too_large() {
        warn!(%peer, also_refused = also, "http request refused: headers larger than 64 KiB");
    } else {
        warn!(%peer, also_refused = also, error = %e, "http request refused: not valid HTTP");
    }
}

async fn handle_request(
    state: &HttpState,
    req: Request<Incoming>,
    _peer: SocketAddr,
) -> Response<Body> {
    let started = std::time::Instant::now();
    let label = route(req.method(), req.uri().path()).label();
    let range = req
        .headers()
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok());
    let resp = state
        .handle_ranged(req.method(), req.uri().path(), req.uri().query(), range)
        .await;
    crate::metrics::http_request(label, resp.status().as_u16(), started.elapsed());
    resp
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
    fn byte_ranges() {
        use ByteRange::*;
        let part = |first, last| Part { first, last };
        let cases: Vec<(Option<&str>, u64, ByteRange)> = vec![
            (None, 100, Full),
            (Some("bytes=0-9"), 100, part(0, 9)),
            (Some("bytes=90-"), 100, part(90, 99)),
            (Some("bytes=90-1000"), 100, part(90, 99)),
            (Some("bytes=-10"), 100, part(90, 99)),
            (Some("bytes=-1000"), 100, part(0, 99)),
            (Some("bytes=100-"), 100, Unsatisfiable),
            (Some("bytes=-0"), 100, Unsatisfiable),
            (Some("bytes=0-"), 0, Unsatisfiable),
            (Some("bytes=9-0"), 100, Full),
            (Some("bytes=0-1,5-6"), 100, Full),
            (Some("items=0-1"), 100, Full),
            (Some("bytes=x-1"), 100, Full),
            (Some("bytes=-"), 100, Full),
            (Some("bytes=99999999999999999999-"), 100, Unsatisfiable),
            (Some("bytes=-99999999999999999999"), 100, part(0, 99)),
            (Some("bytes=18446744073709551615-"), 100, Unsatisfiable),
        ];
        for (h, len, want) in cases {
            assert_eq!(byte_range(h, len), want, "{h:?} of {len}");
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
