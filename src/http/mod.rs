//! HTTP: the listeners and connections (HTTP/1.1 and HTTP/2, chosen by ALPN on TLS or by
//! sniffing the h2c preface on cleartext; header timeout, connection limit, graceful shutdown
//! in [`graceful`]),
//! and [`HttpState::handle`], which routes each request ([`router::route`], pure) to the
//! surface that answers it. One module per surface: [`hls`] (playlists, segments), [`api`]
//! (JSON channels, health, metrics), [`chat`] (posts, event streams), [`pages`] (pages and
//! embedded assets; their share-card tags from [`cards`]), [`thumb`] (live thumbnails),
//! [`admin`], [`whip`] (WebRTC ingest); each has
//! `handle(state, route, req)`. What every surface
//! shares: [`request`] (client address, query, JSON bodies) and [`response`] (every response
//! helper). A new surface is one more module, its routes in `router.rs`, and one line in the
//! dispatch below. `lib.rs` builds the [`HttpState`] and starts [`serve`].

pub mod admin;
pub mod api;
pub mod auth;
pub mod cache;
pub mod cards;
pub mod chat;
mod graceful;
pub mod hls;
pub mod pages;
pub mod questions;
pub mod replay;
pub mod request;
pub mod response;
pub mod router;
pub mod thumb;
pub mod vod;
pub mod vod_store;
pub mod whip;

pub use router::{route, Route};

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use self::request::{BoxError, Req, RequestBody};
use self::response::{finish, json_error, not_found};
use crate::bus::Bus;
use crate::chat::Chat;
use crate::config::{HttpConfig, Secret};
use crate::hls::HlsStore;
use crate::tls::{CertSlot, TlsError};

pub type Body = BoxBody<Bytes, Infallible>;

/// What the HTTP service reads.
pub struct HttpState {
    /// Sign-in: who a request is (session cookie), providers, cross-posts.
    pub auth: Arc<crate::identity::Auth>,
    /// `server.public_url` without a trailing slash: the `Origin` our pages send, and the base
    /// of the links pages hand out (the studio's watch link).
    pub public_url: String,
    pub store: Arc<HlsStore>,
    pub bus: Arc<Bus>,
    pub announce: Arc<crate::announce::AnnounceStats>,
    pub chat: Arc<Chat>,
    /// Debate mode: questions, votes, the pinned question and the speaking timer.
    pub debate: Arc<crate::chat::questions::Debate>,
    /// `server.admin_token`; empty turns the server-wide admin API off.
    pub admin_token: Secret,
    /// The stream keys (swapped on reload): channel-scoped admin routes take a channel's key.
    pub ingest: Arc<crate::ingest::Ingest>,
    /// `chat.trusted_proxies`: peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpAddr>,
    /// `None` when the ladder is empty (passthrough only).
    pub transcoder: Option<Arc<crate::transcode::Transcoder>>,
    /// Recordings: index, files, chat log, deletes.
    pub recorder: Arc<crate::record::Recorder>,
    /// WHIP ingest; `None` when it is not running.
    pub whip: Option<Arc<crate::ingest::whip::WhipIngest>>,
    /// `None` for a single node.
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
    /// Live thumbnails (`/thumb`, the cards' picture).
    pub thumbnails: Arc<crate::transcode::thumbnails::Thumbnails>,
    /// Channel titles for share cards.
    pub cards: Arc<cards::Titles>,
    /// Replay pages served from memory for a short while (crawlers fetch a posted link at once).
    pub replay_pages: replay::ReplayPages,
}

impl HttpState {
    /// Answers one request from `peer`: routes it and hands it to its surface.
    pub async fn handle<B>(&self, req: Request<B>, peer: SocketAddr) -> Response<Body>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let (parts, body) = req.into_parts();
        let head = parts.method == Method::HEAD;
        if let Err((status, why)) = request::head_within_limits(&parts) {
            log_refusal(peer, Refusal::HeadLimit(why));
            return finish(json_error(status, why), head);
        }
        let body: RequestBody = body.map_err(request::body_error).boxed_unsync();
        // The route borrows the path; the request moves on to its surface (a cheap clone).
        let (method, uri) = (parts.method.clone(), parts.uri.clone());
        let req = Req::new(parts, body, peer, &self.trusted_proxies);
        let route = route(&method, uri.path());
        let resp = match route {
            Route::Master(_) | Route::MediaPlaylist(..) | Route::Segment(..) => {
                hls::handle(self, route, req).await
            }
            Route::Channels | Route::Channel(_) | Route::Healthz | Route::Metrics => {
                api::handle(self, route, req).await
            }
            Route::ChatPost(_) | Route::ChatPreview(_) | Route::Events(_) => {
                chat::handle(self, route, req).await
            }
            Route::AuthStart(_)
            | Route::AuthCallback(_)
            | Route::AuthAppPassword
            | Route::AuthClientMetadata
            | Route::AuthLogout
            | Route::Me
            | Route::MeCrossPosts => auth::handle(self, route, req).await,
            Route::AdminBans(_)
            | Route::AdminDeleteMessage(..)
            | Route::AdminSlowMode(_)
            | Route::AdminStreams
            | Route::AdminOwnerAnnounce(_)
            | Route::AdminKick(_)
            | Route::AdminDeleteRecording(..) => admin::handle(self, route, req).await,
            Route::Index | Route::Watch(_) | Route::Studio(_) | Route::Asset(_) => {
                pages::handle(self, route, req).await
            }
            Route::Thumb(_) => thumb::handle(self, route, req).await,
            Route::WhipPublish(_) | Route::WhipSession(..) | Route::WhipOptions(_) => {
                whip::handle(self, route, req).await
            }
            Route::Replay(c, id) => replay::handle(self, c, id).await,
            Route::Recordings(_)
            | Route::RecordingChat(..)
            | Route::VodMaster(..)
            | Route::VodPlaylist(..)
            | Route::VodFile(..) => vod::handle(self, route, req).await,
            Route::Overlay(_)
            | Route::Questions(_)
            | Route::QuestionVote(..)
            | Route::AdminQuestion(..)
            | Route::AdminTimer(_) => questions::handle(self, route, req).await,
            Route::Preflight => response::preflight(),
            Route::MethodNotAllowed => {
                json_error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
            }
            Route::NotFound => not_found(),
        };
        finish(resp, head)
    }
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
    let event_streams = Arc::new(Semaphore::new(cfg.max_event_streams));
    let shutdown = graceful::Shutdown::default();
    // The connection tasks, waited for (3 s at most) once the listener stops.
    let connections = tokio_util::task::TaskTracker::new();
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
        let slot = ConnectionSlot::new(permit, event_streams.clone());
        let conn_slot = slot.clone();
        let svc = service_fn(move |mut req: Request<Incoming>| {
            let state = state.clone();
            req.extensions_mut().insert(conn_slot.clone());
            // Boxed: hyper keeps a slot the size of this future for the whole connection, and
            // an event stream keeps its connection for hours; boxed, the slot is one pointer
            // and the request's state is freed once the response has started.
            let fut: Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>> =
                Box::pin(async move { Ok(handle_request(&state, req, peer).await) });
            fut
        });
        let protocols = protocols.clone();
        let watcher = shutdown.clone();
        let tls = tls.as_ref().map(CertSlot::acceptor);
        connections.spawn(async move {
            // The opening (sniff or TLS handshake) is boxed as well: a task is sized for the
            // largest state it can hold, and this one lives as long as its connection.
            let opening = Box::pin(open_connection(sock, peer, tls, &protocols, svc, watcher));
            let Some(conn) = opening.await else { return };
            if let Err(e) = conn.await {
                log_connection_error(peer, &e, protocols.header_timeout);
            }
            drop(slot);
        });
    }
    drop(listener);
    shutdown.stop();
    connections.close();
    tokio::select! {
        _ = connections.wait() => {}
        _ = tokio::time::sleep(Duration::from_secs(3)) => debug!("http connections still open at shutdown; closing them"),
    }
}

type ConnectionFuture = Pin<Box<dyn Future<Output = Result<(), hyper::Error>> + Send>>;

/// Which budget a connection counts against: `http.max_connections` from accept, or
/// `http.max_event_streams` once one of its requests is an event stream (which holds the
/// connection for hours). Moving frees the general slot at once, so idle subscribers never
/// keep anyone from loading a playlist or posting. Requests find it in their extensions.
#[derive(Clone)]
pub struct ConnectionSlot(Arc<std::sync::Mutex<SlotState>>);

struct SlotState {
    /// Dropped with the connection (the last clone of the slot).
    permit: Option<OwnedSemaphorePermit>,
    event_stream: bool,
    event_streams: Arc<Semaphore>,
    /// The channel and client this connection last counted as a viewer, and when.
    viewed: Option<(String, IpAddr, std::time::Instant)>,
}

/// How often one connection counts the same client as a viewer of the same channel: a player
/// asks for a playlist, part or segment several times a second, and counting one takes three
/// shared locks; a viewer is counted for `chat::HLS_VIEWER_WINDOW` (10 s) after the last.
const VIEW_REFRESH: Duration = Duration::from_secs(1);

impl ConnectionSlot {
    fn new(permit: OwnedSemaphorePermit, event_streams: Arc<Semaphore>) -> Self {
        Self(Arc::new(std::sync::Mutex::new(SlotState {
            permit: Some(permit),
            event_stream: false,
            event_streams,
            viewed: None,
        })))
    }

    /// Whether this connection counted `ip` as a viewer of `channel` less than [`VIEW_REFRESH`]
    /// ago; if not, notes that it does now. Std mutex: per connection, never across an await.
    pub fn viewed_recently(&self, channel: &str, ip: IpAddr) -> bool {
        let now = std::time::Instant::now();
        let mut s = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match &mut s.viewed {
            Some((c, i, at)) if c == channel && *i == ip => {
                if now.saturating_duration_since(*at) < VIEW_REFRESH {
                    return true;
                }
                *at = now;
            }
            v => *v = Some((channel.to_string(), ip, now)),
        }
        false
    }

    /// Moves the connection to the event-stream budget; false when that budget is full (the
    /// connection keeps its general slot). Std mutex: a short swap, never across an await.
    pub fn become_event_stream(&self) -> bool {
        let mut s = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if s.event_stream {
            return true;
        }
        match s.event_streams.clone().try_acquire_owned() {
            Ok(p) => {
                s.permit = Some(p);
                s.event_stream = true;
                true
            }
            Err(_) => false,
        }
    }
}

/// Takes a connection from accept to its protocol: the TLS handshake and ALPN, or the h2c
/// sniff on cleartext. `None` when the peer went away or timed out first (logged here).
async fn open_connection<S>(
    sock: tokio::net::TcpStream,
    peer: SocketAddr,
    tls: Option<tokio_rustls::TlsAcceptor>,
    protocols: &Protocols,
    svc: S,
    watcher: graceful::Shutdown,
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
            // 431 and close for a head over the limit, complete or not (max_buf_size alone
            // let a head that arrived in one read through, whatever its size).
            .max_header_size(request::MAX_REQUEST_HEAD)
            // The read buffer never needs more than a head (bodies are 16 KiB at most): at
            // 64 KiB, 10,000 clients each holding an unfinished 32 KiB head cost 54 KiB apiece
            // (scripts/bench-header-memory).
            .max_buf_size(request::MAX_REQUEST_HEAD);
        let mut http2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        http2
            .timer(TokioTimer::new())
            .max_concurrent_streams(256)
            .max_header_list_size(request::MAX_REQUEST_HEAD as u32);
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
        watcher: graceful::Shutdown,
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
    /// A header line or the request target over its limit (see [`request::head_within_limits`]).
    HeadLimit(&'static str),
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
            warn!(%peer, also_refused = also, "http request refused: headers larger than 32 KiB")
        }
        Refusal::HeadLimit(why) => {
            warn!(%peer, also_refused = also, "http request refused: {why}")
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

    /// A connection counts a viewer once per `VIEW_REFRESH` per channel and client; another
    /// channel or client (a proxy's connection carries many) is counted at once.
    #[test]
    fn a_connection_counts_a_viewer_once_a_second() {
        let permit = Arc::new(Semaphore::new(1))
            .try_acquire_owned()
            .expect("permit");
        let slot = ConnectionSlot::new(permit, Arc::new(Semaphore::new(1)));
        let a: IpAddr = "192.0.2.1".parse().expect("ip");
        let b: IpAddr = "192.0.2.2".parse().expect("ip");
        assert!(!slot.viewed_recently("c", a));
        assert!(slot.viewed_recently("c", a));
        assert!(!slot.viewed_recently("d", a));
        assert!(!slot.viewed_recently("d", b));
        assert!(slot.viewed_recently("d", b));
        // A second later the same viewer is counted again.
        if let Some((_, _, at)) = &mut slot.0.lock().expect("slot").viewed {
            *at -= VIEW_REFRESH;
        }
        assert!(!slot.viewed_recently("d", b));
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
}
