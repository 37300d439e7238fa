//! HTTP: a hyper 1 service for HLS playlists and segments (from memory), the JSON API, the chat
//! (posts and server-sent events), admin routes, pages with their embedded assets, and health.
//! Routing is a pure function of method and path with table tests; there is no file path
//! anywhere, so nothing to traverse. Request bodies are read with a size limit; the event
//! stream is a streaming body ([`crate::chat::SseBody`]).

pub mod admin;

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::bus::Bus;
use crate::chat::{BanTarget, Chat, ChatError};
use crate::config::{is_name, HttpConfig, Secret};
use crate::hls::serve::{self, PlaylistQuery, ServeError};
use crate::hls::{HlsStore, RenditionSummary};
use crate::tls::{CertSlot, TlsError};

pub type Body = BoxBody<Bytes, Infallible>;

/// Largest request body accepted (chat posts and admin JSON are tiny).
pub const MAX_REQUEST_BODY: usize = 16 * 1024;

/// Content-Security-Policy of the pages: only our own scripts, styles and connections; hls.js
/// plays from `blob:` URLs (MediaSource) and may start its worker from one.
const PAGE_CSP: &str =
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
media-src 'self' blob:; worker-src 'self' blob:; connect-src 'self'; object-src 'none'; \
base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

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
        body: include_bytes!("../assets/vendor/hls.min.js"),
        cache: "public, max-age=86400",
    },
    Asset {
        name: "watch.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../assets/watch.js"),
        cache: "no-cache",
    },
    Asset {
        name: "account.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../assets/account.js"),
        cache: "no-cache",
    },
    Asset {
        name: "index.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../assets/index.js"),
        cache: "no-cache",
    },
    Asset {
        name: "style.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../assets/style.css"),
        cache: "no-cache",
    },
];

const WATCH_TEMPLATE: &str = include_str!("../assets/watch.html");
const INDEX_TEMPLATE: &str = include_str!("../assets/index.html");

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
    /// `POST /api/channels/{c}/chat`
    ChatPost(&'a str),
    /// `GET /api/channels/{c}/events`
    Events(&'a str),
    /// `POST`/`DELETE /api/admin/channels/{c}/bans`
    AdminBans(&'a str),
    /// `DELETE /api/admin/channels/{c}/chat/{id}`
    AdminDeleteMessage(&'a str, u64),
    /// `PUT /api/admin/channels/{c}/slow-mode`
    AdminSlowMode(&'a str),
    /// `GET /api/admin/streams`
    AdminStreams,
    /// `POST /api/admin/channels/{c}/kick`
    AdminKick(&'a str),
    /// An embedded file, by index in [`ASSETS`].
    Asset(usize),
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
            Route::ChatPost(_) => "chat_post",
            Route::Events(_) => "chat_events",
            Route::AdminBans(_) | Route::AdminDeleteMessage(..) | Route::AdminSlowMode(_) => {
                "admin_chat"
            }
            Route::AdminStreams | Route::AdminKick(_) => "admin_streams",
            Route::Asset(_) => "asset",
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
        ["api", "channels", c, "chat"] if is_name(c) => Route::ChatPost(c),
        ["api", "channels", c, "events"] if is_name(c) => Route::Events(c),
        ["api", "admin", "channels", c, "bans"] if is_name(c) => Route::AdminBans(c),
        ["api", "admin", "channels", c, "chat", id] if is_name(c) => match parse_id(id) {
            Some(id) => Route::AdminDeleteMessage(c, id),
            None => return Route::NotFound,
        },
        ["api", "admin", "channels", c, "slow-mode"] if is_name(c) => Route::AdminSlowMode(c),
        ["api", "admin", "streams"] => Route::AdminStreams,
        ["api", "admin", "channels", c, "kick"] if is_name(c) => Route::AdminKick(c),
        ["assets", name] => match ASSETS.iter().position(|a| a.name == *name) {
            Some(i) => Route::Asset(i),
            None => return Route::NotFound,
        },
        _ => return Route::NotFound,
    };
    let allowed = match r {
        Route::ChatPost(_) => method == Method::POST,
        Route::AdminBans(_) => {
            method == Method::GET || method == Method::POST || method == Method::DELETE
        }
        Route::AdminDeleteMessage(..) => method == Method::DELETE,
        Route::AdminSlowMode(_) => method == Method::PUT,
        Route::AdminKick(_) => method == Method::POST,
        _ => method == Method::GET || method == Method::HEAD,
    };
    if allowed {
        r
    } else {
        Route::MethodNotAllowed
    }
}

/// The raw value of `name` in a query string (only used for plain digits, so no decoding).
fn query_param<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?
        .split('&')
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
}

/// A message id: decimal digits that fit a u64.
fn parse_id(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// The client's address: the peer's, unless the peer is a trusted proxy, in which case the
/// `X-Forwarded-For` chain is walked from the right (the entry our proxy added) past every
/// trusted proxy to the first address that is not one. Entries that do not parse stop the walk
/// (nothing left of a forged entry can be trusted). IPv4-mapped IPv6 addresses count as IPv4.
pub fn client_ip(peer: IpAddr, forwarded_for: &[&str], trusted: &[IpAddr]) -> IpAddr {
    let mut ip = canonical(peer);
    if !trusted.contains(&ip) {
        return ip;
    }
    for entry in forwarded_for
        .iter()
        .flat_map(|h| h.split(','))
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
    {
        match parse_forwarded_ip(entry) {
            Some(next) => {
                ip = next;
                if !trusted.contains(&ip) {
                    break;
                }
            }
            None => break,
        }
    }
    ip
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// One X-Forwarded-For entry: `1.2.3.4`, `1.2.3.4:5678`, `::1` or `[::1]:5678`.
fn parse_forwarded_ip(entry: &str) -> Option<IpAddr> {
    let e = entry.trim();
    if let Ok(ip) = e.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    e.parse::<SocketAddr>().ok().map(|s| canonical(s.ip()))
}

fn is_segment_name(s: &str) -> bool {
    crate::hls::MediaName::parse(s).is_some()
}

/// What the HTTP service reads.
pub struct HttpState {
    pub store: Arc<HlsStore>,
    pub bus: Arc<Bus>,
    pub announce: Arc<crate::announce::AnnounceStats>,
    pub chat: Arc<Chat>,
    /// `server.admin_token`; empty turns the admin API off.
    pub admin_token: Secret,
    /// `chat.trusted_proxies`: peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpAddr>,
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

/// `POST /api/channels/{c}/chat`
#[derive(Debug, Deserialize)]
struct ChatPostBody {
    nick: String,
    text: String,
}

/// `POST`/`DELETE /api/admin/channels/{c}/bans`: exactly one of the two.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BanBody {
    nick: Option<String>,
    address: Option<String>,
}

/// `PUT /api/admin/channels/{c}/slow-mode`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SlowModeBody {
    seconds: u64,
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
            viewers: self.chat.viewers(name),
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

    /// Answers one request from `peer`.
    pub async fn handle<B>(&self, req: Request<B>, peer: SocketAddr) -> Response<Body>
    where
        B: http_body::Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let (parts, body) = req.into_parts();
        let method = &parts.method;
        let path = parts.uri.path();
        let query = parts.uri.query();
        let range = parts
            .headers
            .get(header::RANGE)
            .and_then(|v| v.to_str().ok());
        let head = method == Method::HEAD;
        let forwarded: Vec<&str> = parts
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        let ip = client_ip(peer.ip(), &forwarded, &self.trusted_proxies);
        let resp = match route(method, path) {
            Route::Healthz => text(StatusCode::OK, "text/plain; charset=utf-8", "ok\n"),
            Route::Metrics => {
                let body = crate::metrics::render(&crate::metrics::Sources {
                    bus: self.bus.clone(),
                    store: self.store.clone(),
                    announce: self.announce.clone(),
                    chat: self.chat.clone(),
                    transcoder: self.transcoder.clone(),
                });
                bytes_response(
                    StatusCode::OK,
                    "text/plain; version=0.0.4; charset=utf-8",
                    Bytes::from(body),
                )
            }
            Route::Master(c) => self.hls(
                c,
                ip,
                playlist(self.store.master(c).map_err(ServeError::from)),
            ),
            Route::MediaPlaylist(c, r) => match PlaylistQuery::parse(query) {
                Ok(q) => self.hls(
                    c,
                    ip,
                    playlist(serve::media_playlist(&self.store, c, r, q).await),
                ),
                Err(e) => playlist(Err(e)),
            },
            Route::Segment(c, r, s) => match serve::media_object(&self.store, c, r, s).await {
                Ok((data, content_type)) => {
                    self.hls(c, ip, segment_response(data, content_type, range))
                }
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
            Route::ChatPost(c) => match read_json::<ChatPostBody, B>(body).await {
                Ok(b) => match self.chat.post(c, ip, &b.nick, &b.text) {
                    Ok(msg) => json(StatusCode::ACCEPTED, &msg),
                    Err(e) => chat_error(&e),
                },
                Err(r) => r,
            },
            Route::Events(c) => {
                // The header is what EventSource sends when it reconnects by itself; the query
                // parameter is for a stream the page reopens by hand.
                let last = parts
                    .headers
                    .get("last-event-id")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .or_else(|| {
                        query_param(parts.uri.query(), "last_event_id")?
                            .parse()
                            .ok()
                    });
                match self.chat.subscribe(c, ip, last) {
                    Ok(sse) => event_stream(sse),
                    Err(e) => chat_error(&e),
                }
            }
            Route::AdminBans(c) => match admin::authorize(&parts.headers, &self.admin_token) {
                Err(denied) => denied.response(),
                Ok(()) if method == Method::GET => match self.chat.bans(c) {
                    Ok(bans) => json(StatusCode::OK, &bans),
                    Err(e) => chat_error(&e),
                },
                Ok(()) => match read_json::<BanBody, B>(body).await {
                    Ok(b) => self.ban(c, method == Method::POST, b),
                    Err(r) => r,
                },
            },
            Route::AdminDeleteMessage(c, id) => {
                match admin::authorize(&parts.headers, &self.admin_token) {
                    Err(denied) => denied.response(),
                    Ok(()) => match self.chat.delete(c, id) {
                        Ok(()) => json(StatusCode::OK, &serde_json::json!({ "deleted": id })),
                        Err(e) => chat_error(&e),
                    },
                }
            }
            Route::AdminStreams => match admin::authorize(&parts.headers, &self.admin_token) {
                Err(denied) => denied.response(),
                Ok(()) => json(StatusCode::OK, &admin::streams(&self.bus, &self.store)),
            },
            Route::AdminKick(c) => match admin::authorize(&parts.headers, &self.admin_token) {
                Err(denied) => denied.response(),
                Ok(()) => match self.bus.get(c) {
                    None => json_error(StatusCode::NOT_FOUND, "no such channel"),
                    Some(ch) => {
                        let kicked = ch.kick();
                        if kicked {
                            tracing::info!(channel = %c, "publisher kicked by an admin");
                        }
                        json(StatusCode::OK, &serde_json::json!({ "kicked": kicked }))
                    }
                },
            },
            Route::AdminSlowMode(c) => match admin::authorize(&parts.headers, &self.admin_token) {
                Err(denied) => denied.response(),
                Ok(()) => match read_json::<SlowModeBody, B>(body).await {
                    Ok(b) => match self.chat.set_slow_mode(c, b.seconds) {
                        Ok(()) => {
                            json(StatusCode::OK, &serde_json::json!({ "seconds": b.seconds }))
                        }
                        Err(e) => chat_error(&e),
                    },
                    Err(r) => r,
                },
            },
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
                    HeaderValue::from_static("GET, HEAD, POST, PUT, DELETE, OPTIONS"),
                );
                h.insert(
                    header::ACCESS_CONTROL_ALLOW_HEADERS,
                    HeaderValue::from_static("Content-Type, Last-Event-ID, Authorization"),
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

    /// A successful HLS response counts its client as a viewer of the channel.
    fn hls(&self, channel: &str, ip: IpAddr, resp: Response<Body>) -> Response<Body> {
        if resp.status() == StatusCode::OK {
            self.chat.touch_hls(channel, ip);
        }
        resp
    }

    fn ban(&self, channel: &str, add: bool, b: BanBody) -> Response<Body> {
        let target = match (b.nick, b.address) {
            (Some(n), None) if !n.trim().is_empty() => BanTarget::Nick(n.trim().to_string()),
            (None, Some(a)) => match parse_forwarded_ip(&a) {
                Some(ip) => BanTarget::Address(ip),
                None => return json_error(StatusCode::BAD_REQUEST, "address is not an IP address"),
            },
            _ => {
                return json_error(
                    StatusCode::BAD_REQUEST,
                    "give exactly one of \"nick\" or \"address\"",
                )
            }
        };
        let shown = match &target {
            BanTarget::Nick(n) => serde_json::json!({ "nick": n }),
            BanTarget::Address(a) => serde_json::json!({ "address": a.to_string() }),
        };
        if add {
            match self.chat.ban(channel, &target) {
                Ok(deleted) => json(
                    StatusCode::OK,
                    &serde_json::json!({ "banned": shown, "deleted_messages": deleted }),
                ),
                Err(e) => chat_error(&e),
            }
        } else {
            match self.chat.unban(channel, &target) {
                Ok(true) => json(StatusCode::OK, &serde_json::json!({ "unbanned": shown })),
                Ok(false) => json_error(StatusCode::NOT_FOUND, "not banned"),
                Err(e) => chat_error(&e),
            }
        }
    }

    fn index_page(&self) -> Response<Body> {
        let mut items = String::new();
        for c in self.bus.all() {
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
}

fn watch_page(channel: &str) -> String {
    WATCH_TEMPLATE.replace("{{channel}}", &html_escape(channel))
}

/// Reads a JSON request body of at most [`MAX_REQUEST_BODY`] bytes.
async fn read_json<T, B>(body: B) -> Result<T, Response<Body>>
where
    T: DeserializeOwned,
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let too_large = || {
        json_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("request body is larger than {MAX_REQUEST_BODY} bytes"),
        )
    };
    // No early answer from Content-Length alone: reading up to the limit first means a client
    // whose whole (modestly) oversized body fits in the socket buffers has finished sending
    // and reads the 413 instead of a broken pipe.
    let bytes = match Limited::new(body, MAX_REQUEST_BODY).collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) if e.is::<LengthLimitError>() => return Err(too_large()),
        Err(_) => {
            return Err(json_error(
                StatusCode::BAD_REQUEST,
                "could not read the request body",
            ))
        }
    };
    serde_json::from_slice(&bytes)
        .map_err(|e| json_error(StatusCode::BAD_REQUEST, &format!("invalid JSON: {e}")))
}

/// The HTTP answer to a refused chat request.
fn chat_error(e: &ChatError) -> Response<Body> {
    let reason = e.to_string();
    let (status, retry) = match e {
        ChatError::NoChannel => (StatusCode::NOT_FOUND, None),
        ChatError::NoSuchMessage { .. } => (StatusCode::NOT_FOUND, None),
        ChatError::Invalid { .. } | ChatError::SlowModeTooLong { .. } => {
            (StatusCode::BAD_REQUEST, None)
        }
        ChatError::TooLong { .. } => (StatusCode::PAYLOAD_TOO_LARGE, None),
        ChatError::Banned => (StatusCode::FORBIDDEN, None),
        ChatError::RateLimited { retry_after } | ChatError::SlowMode { retry_after } => {
            (StatusCode::TOO_MANY_REQUESTS, Some(*retry_after))
        }
        ChatError::AddressFull => (StatusCode::TOO_MANY_REQUESTS, Some(10)),
        ChatError::ChannelFull => (StatusCode::SERVICE_UNAVAILABLE, Some(10)),
    };
    let mut r = match retry {
        Some(s) => json(
            status,
            &serde_json::json!({ "error": reason, "retry_after": s }),
        ),
        None => json_error(status, &reason),
    };
    if let Some(s) = retry {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(s));
    }
    r
}

/// A `text/event-stream` response around a subscriber's body.
fn event_stream(sse: crate::chat::SseBody) -> Response<Body> {
    let mut r = Response::new(BodyExt::boxed(sse));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Tells nginx-style proxies not to buffer the stream.
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    r
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
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(PAGE_CSP),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
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

/// Common headers; HEAD keeps the headers (with the length, when known) and drops the body.
fn finish(mut resp: Response<Body>, head: bool) -> Response<Body> {
    resp.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    resp.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if head {
        if let Some(len) = http_body::Body::size_hint(resp.body()).exact() {
            resp.headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        }
        *resp.body_mut() = Full::new(Bytes::new()).boxed();
    }
    resp
}

/// TLS settings from the configured PEM files, offering HTTP/2 and HTTP/1.1 by ALPN; `None`
/// when no certificate is configured (plain HTTP, where HTTP/2 is still offered as h2c).
pub fn tls_config(cfg: &HttpConfig) -> Result<Option<CertSlot>, TlsError> {
    if cfg.tls_cert.is_empty() {
        return Ok(None);
    }
    CertSlot::load("http", &cfg.tls_cert, &cfg.tls_key, &[b"h2", b"http/1.1"]).map(Some)
}

/// Serves HTTP until `cancel`, then drains open connections gracefully.
pub async fn serve(
    listener: TcpListener,
    state: Arc<HttpState>,
    cfg: HttpConfig,
    tls: Option<CertSlot>,
    cancel: CancellationToken,
) {
    let limit = Arc::new(Semaphore::new(cfg.max_connections));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let protocols = Arc::new(Protocols::new(cfg.header_timeout_seconds));
    let mut last_full_log: Option<std::time::Instant> = None;
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
            // Boxed: hyper keeps a slot the size of this future for the whole connection, and
            // an event stream keeps its connection for hours; boxed, the slot is one pointer
            // and the request's state is freed once the response has started.
            let fut: Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>> =
                Box::pin(async move { Ok(handle_request(&state, req, peer).await) });
            fut
        });
        let protocols = protocols.clone();
        let watcher = graceful.watcher();
        let tls = tls.as_ref().map(CertSlot::acceptor);
        tokio::spawn(async move {
            // The opening (sniff or TLS handshake) is boxed as well: a task is sized for the
            // largest state it can hold, and this one lives as long as its connection.
            let opening = Box::pin(open_connection(sock, peer, tls, &protocols, svc, watcher));
            let Some(conn) = opening.await else { return };
            if let Err(e) = conn.await {
                log_connection_error(peer, &e, protocols.header_timeout);
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

type ConnectionFuture = Pin<Box<dyn Future<Output = Result<(), hyper::Error>> + Send>>;

/// Takes a connection from accept to its protocol: the TLS handshake and ALPN, or the h2c
/// sniff on cleartext. `None` when the peer went away or timed out first (logged here).
async fn open_connection<S>(
    sock: tokio::net::TcpStream,
    peer: SocketAddr,
    tls: Option<tokio_rustls::TlsAcceptor>,
    protocols: &Protocols,
    svc: S,
    watcher: hyper_util::server::graceful::Watcher,
) -> Option<ConnectionFuture>
where
    S: hyper::service::HttpService<Incoming, ResBody = Body> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let limit = Duration::from_secs(protocols.header_timeout);
    let Some(acceptor) = tls else {
        return match tokio::time::timeout(limit, sniff_h2_preface(&sock)).await {
            Ok(Ok(h2)) => Some(protocols.serve(TokioIo::new(sock), h2, svc, watcher)),
            Ok(Err(e)) => {
                debug!(%peer, error = %e, "http connection failed before its first request");
                None
            }
            Err(_) => {
                log_refusal(peer, Refusal::HeaderTimeout(protocols.header_timeout));
                None
            }
        };
    };
    let stream = match tokio::time::timeout(limit, acceptor.accept(sock)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            debug!(%peer, error = %e, "TLS handshake failed");
            return None;
        }
        Err(_) => {
            debug!(%peer, "TLS handshake timed out");
            return None;
        }
    };
    // Browsers and curl always negotiate the protocol by ALPN; a TLS client that offers none
    // is served HTTP/1.1.
    let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
    Some(protocols.serve(TokioIo::new(stream), h2, svc, watcher))
}

/// The HTTP/1.1 and HTTP/2 connection builders, configured once.
///
/// Picked per connection by [`sniff_h2_preface`] (cleartext) or ALPN (TLS) rather than by
/// hyper-util's `auto` builder: `auto` reads the first 24 bytes itself and hands them to HTTP/1
/// as a separate first read, after which hyper grows the connection's read buffer from 8 to
/// 16 KiB. Peeking leaves the bytes in the socket, so an HTTP/1 connection (every event-stream
/// subscriber) keeps one 8 KiB read buffer: 8 KiB less per open connection.
struct Protocols {
    http1: hyper::server::conn::http1::Builder,
    http2: hyper::server::conn::http2::Builder<TokioExecutor>,
    /// `http.header_timeout_seconds`: also bounds the TLS handshake and the h2c sniff.
    header_timeout: u64,
}

impl Protocols {
    fn new(header_timeout: u64) -> Self {
        let header_limit = Duration::from_secs(header_timeout);
        let mut http1 = hyper::server::conn::http1::Builder::new();
        http1
            .timer(TokioTimer::new())
            .header_read_timeout(header_limit)
            .max_buf_size(64 * 1024);
        let mut http2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        http2.timer(TokioTimer::new()).max_concurrent_streams(256);
        Self {
            http1,
            http2,
            header_timeout,
        }
    }

    /// The connection's future, boxed and sized to the protocol it speaks: the connection task
    /// then holds one pointer instead of room for the largest of HTTP/1, HTTP/2 and the TLS
    /// handshake (a 5.7 KiB task per connection before, for hours per event-stream subscriber).
    fn serve<I, S>(
        &self,
        io: I,
        h2: bool,
        svc: S,
        watcher: hyper_util::server::graceful::Watcher,
    ) -> Pin<Box<dyn Future<Output = Result<(), hyper::Error>> + Send>>
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
        S: hyper::service::HttpService<Incoming, ResBody = Body> + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        if h2 {
            Box::pin(watcher.watch(self.http2.serve_connection(io, svc)))
        } else {
            Box::pin(watcher.watch(self.http1.serve_connection(io, svc)))
        }
    }
}

/// Whether a cleartext connection opens with the HTTP/2 preface (prior knowledge, h2c), seen by
/// peeking so the bytes stay in the socket for the protocol that reads them. Decided at the
/// first byte that differs; a client that sends the preface in pieces is waited for.
async fn sniff_h2_preface(sock: &tokio::net::TcpStream) -> std::io::Result<bool> {
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let mut buf = [0u8; 24];
    loop {
        let n = sock.peek(&mut buf).await?;
        if n == 0 {
            // Closed before a byte: HTTP/1 reports the empty connection as it always has.
            return Ok(false);
        }
        if buf[..n] != PREFACE[..n] {
            return Ok(false);
        }
        if n == PREFACE.len() {
            return Ok(true);
        }
        // A prefix of the preface so far: peek returns at once while those bytes wait, so
        // give the rest a moment to arrive (bounded by the caller's header timeout).
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Why a connection was refused before it made a valid request.
enum Refusal<'a> {
    /// No complete request head within `http.header_timeout_seconds` (the value).
    HeaderTimeout(u64),
    TooLarge,
    Invalid(&'a hyper::Error),
}

/// Logs a connection that ended with an error: a refusal (a limit, not HTTP) as a warning, at
/// most once a second; anything else (the peer went away) at debug.
fn log_connection_error(peer: SocketAddr, e: &hyper::Error, header_timeout: u64) {
    if e.is_timeout() {
        log_refusal(peer, Refusal::HeaderTimeout(header_timeout));
    } else if e.is_parse_too_large() {
        log_refusal(peer, Refusal::TooLarge);
    } else if e.is_parse() {
        log_refusal(peer, Refusal::Invalid(e));
    } else {
        debug!(%peer, error = %e, "http connection ended with an error");
    }
}

/// Logs a refusal at most once a second, counting the ones left unsaid: a flood of slow or
/// broken clients must not become a flood of log lines.
fn log_refusal(peer: SocketAddr, why: Refusal<'_>) {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LAST_LOG_SECOND: AtomicU64 = AtomicU64::new(0);
    static UNLOGGED: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    if LAST_LOG_SECOND.swap(now, Ordering::Relaxed) == now {
        UNLOGGED.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let also = UNLOGGED.swap(0, Ordering::Relaxed);
    match why {
        Refusal::HeaderTimeout(secs) => {
            warn!(%peer, also_refused = also, "http connection closed: request headers not received within http.header_timeout_seconds ({secs} s)")
        }
        Refusal::TooLarge => {
            warn!(%peer, also_refused = also, "http request refused: headers larger than 64 KiB")
        }
        Refusal::Invalid(e) => {
            warn!(%peer, also_refused = also, error = %e, "http request refused: not valid HTTP")
        }
    }
}

async fn handle_request(
    state: &HttpState,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Response<Body> {
    let started = std::time::Instant::now();
    let label = route(req.method(), req.uri().path()).label();
    let resp = state.handle(req, peer).await;
    // For an event stream this is the time to the response head, not the stream's life.
    crate::metrics::http_request(label, resp.status().as_u16(), started.elapsed());
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `sniff_h2_preface` decides for a client that writes `parts` (pausing between them)
    /// over a real loopback connection; the bytes must still be in the socket afterwards.
    async fn sniff(parts: &[&[u8]]) -> (bool, Vec<u8>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let parts: Vec<Vec<u8>> = parts.iter().map(|p| p.to_vec()).collect();
        let client = tokio::spawn(async move {
            let mut c = tokio::net::TcpStream::connect(addr).await.expect("connect");
            for p in parts {
                c.write_all(&p).await.expect("write");
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
            c.shutdown().await.expect("shutdown");
        });
        let (mut sock, _) = listener.accept().await.expect("accept");
        let h2 = tokio::time::timeout(Duration::from_secs(5), sniff_h2_preface(&sock))
            .await
            .expect("decided in time")
            .expect("peek");
        client.await.expect("client");
        let mut rest = Vec::new();
        sock.read_to_end(&mut rest).await.expect("read");
        (h2, rest)
    }

    #[tokio::test]
    async fn cleartext_protocol_is_sniffed_without_consuming() {
        let preface: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
        assert_eq!(sniff(&[preface]).await, (true, preface.to_vec()));
        // Sent in pieces: waited for, not mistaken for HTTP/1.
        assert_eq!(
            sniff(&[&preface[..3], &preface[3..10], &preface[10..]]).await,
            (true, preface.to_vec())
        );
        let get: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(sniff(&[get]).await, (false, get.to_vec()));
        // Starts like the preface, then differs: HTTP/1 (which will refuse it).
        assert!(!sniff(&[b"PRI", b" / HTTP/1.1"]).await.0);
        // Closed without a byte.
        assert_eq!(sniff(&[]).await, (false, Vec::new()));
    }

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
            (
                Method::POST,
                "/api/channels/alice/chat",
                Route::ChatPost("alice"),
            ),
            (
                get.clone(),
                "/api/channels/alice/chat",
                Route::MethodNotAllowed,
            ),
            (
                get.clone(),
                "/api/channels/alice/events",
                Route::Events("alice"),
            ),
            (
                Method::POST,
                "/api/channels/alice/events",
                Route::MethodNotAllowed,
            ),
            (Method::POST, "/api/channels/al.ce/chat", Route::NotFound),
            (
                Method::POST,
                "/api/admin/channels/alice/bans",
                Route::AdminBans("alice"),
            ),
            (
                Method::DELETE,
                "/api/admin/channels/alice/bans",
                Route::AdminBans("alice"),
            ),
            (
                get.clone(),
                "/api/admin/channels/alice/bans",
                Route::AdminBans("alice"),
            ),
            (
                Method::PUT,
                "/api/admin/channels/alice/bans",
                Route::MethodNotAllowed,
            ),
            (
                Method::DELETE,
                "/api/admin/channels/alice/chat/1764000000000001",
                Route::AdminDeleteMessage("alice", 1764000000000001),
            ),
            (
                Method::DELETE,
                "/api/admin/channels/alice/chat/-1",
                Route::NotFound,
            ),
            (
                Method::DELETE,
                "/api/admin/channels/alice/chat/99999999999999999999999",
                Route::NotFound,
            ),
            (
                Method::PUT,
                "/api/admin/channels/alice/slow-mode",
                Route::AdminSlowMode("alice"),
            ),
            (get.clone(), "/api/admin/streams", Route::AdminStreams),
            (
                Method::POST,
                "/api/admin/channels/alice/kick",
                Route::AdminKick("alice"),
            ),
            (
                get.clone(),
                "/api/admin/channels/alice/kick",
                Route::MethodNotAllowed,
            ),
            (
                Method::POST,
                "/api/admin/channels/alice/slow-mode",
                Route::MethodNotAllowed,
            ),
            (get.clone(), "/assets/hls.min.js", Route::Asset(0)),
            (get.clone(), "/assets/watch.js", Route::Asset(1)),
            (get.clone(), "/assets/../Cargo.toml", Route::NotFound),
            (get.clone(), "/assets/nope.js", Route::NotFound),
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
    fn client_address_trusts_forwarded_for_only_from_proxies() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let proxies = [ip("10.0.0.1"), ip("10.0.0.2")];
        let cases: Vec<(&str, Vec<&str>, &str)> = vec![
            // Not a proxy: the header is ignored.
            ("203.0.113.9", vec!["1.2.3.4"], "203.0.113.9"),
            // A proxy: the rightmost untrusted entry.
            ("10.0.0.1", vec!["1.2.3.4"], "1.2.3.4"),
            ("10.0.0.1", vec!["6.6.6.6, 1.2.3.4"], "1.2.3.4"),
            ("10.0.0.1", vec!["6.6.6.6, 1.2.3.4, 10.0.0.2"], "1.2.3.4"),
            ("10.0.0.1", vec!["6.6.6.6", "1.2.3.4"], "1.2.3.4"),
            ("10.0.0.1", vec!["[2001:db8::1]:443"], "2001:db8::1"),
            ("10.0.0.1", vec!["1.2.3.4:5678"], "1.2.3.4"),
            // Garbage stops the walk at the last good address.
            ("10.0.0.1", vec!["1.2.3.4, nonsense"], "10.0.0.1"),
            ("10.0.0.1", vec![], "10.0.0.1"),
            ("::ffff:10.0.0.1", vec!["1.2.3.4"], "1.2.3.4"),
            ("::ffff:203.0.113.9", vec![], "203.0.113.9"),
        ];
        for (peer, xff, want) in cases {
            assert_eq!(
                client_ip(ip(peer), &xff, &proxies),
                ip(want),
                "{peer} {xff:?}"
            );
        }
    }

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
