//! Stand-ins for the posting and sign-in APIs (the sign-in servers are in their own files:
//! `mastodon_server`, `x_server`, `bluesky_server`, sharing `oauth`): tiny HTTP/1.1 servers on 127.0.0.1:0 (std threads, one per
//! connection) that check requests as the real services do and answer as they do. The OAuth
//! 1.0a check is an independent implementation (its own percent-encoding and base string), so
//! a signer bug cannot cancel itself out.
#![allow(dead_code)]

pub mod bluesky_server;
pub mod mastodon_server;
pub mod media;
pub mod oauth;
pub mod x_server;

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use hmac::{Hmac, Mac};

/// A request as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub at: Instant,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
    pub fn form(&self) -> HashMap<String, String> {
        String::from_utf8_lossy(&self.body)
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (form_decode(k), form_decode(v)))
            .collect()
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// An answer.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn new(status: u16, body: impl Into<String>) -> Self {
        Self {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: body.into(),
        }
    }
    pub fn with_header(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.into(), v.into()));
        self
    }
}

type Handler = Box<dyn FnMut(&Received) -> Reply + Send>;

/// A running stand-in; stops when dropped.
pub struct StandIn {
    pub addr: SocketAddr,
    log: Arc<Mutex<Vec<(Received, u16)>>>,
    stop: Arc<AtomicBool>,
}

impl StandIn {
    pub fn start(handler: impl FnMut(&Received) -> Reply + Send + 'static) -> StandIn {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind stand-in");
        let addr = listener.local_addr().expect("addr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Arc<Mutex<Handler>> = Arc::new(Mutex::new(Box::new(handler)));
        let (l, s) = (log.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (l, h) = (l.clone(), handler.clone());
                std::thread::spawn(move || serve(conn, l, h));
            }
        });
        StandIn { addr, log, stop }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request so far with the status it got.
    pub fn requests(&self) -> Vec<(Received, u16)> {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Requests answered with a 2xx.
    pub fn accepted(&self) -> Vec<Received> {
        self.requests()
            .into_iter()
            .filter(|(_, s)| (200..300).contains(s))
            .map(|(r, _)| r)
            .collect()
    }

    /// Polls (async-friendly) until `n` requests were accepted; returns them.
    pub async fn wait_accepted(&self, n: usize, within: Duration) -> Vec<Received> {
        let deadline = Instant::now() + within;
        loop {
            let a = self.accepted();
            if a.len() >= n {
                return a;
            }
            assert!(
                Instant::now() < deadline,
                "stand-in {} accepted {} of {n} requests within {within:?}; got {:?}",
                self.addr,
                a.len(),
                self.requests()
                    .iter()
                    .map(|(r, s)| (r.path.clone(), *s, r.text()))
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Blocking version for tests without a runtime.
    pub fn wait_accepted_blocking(&self, n: usize, within: Duration) -> Vec<Received> {
        let deadline = Instant::now() + within;
        loop {
            let a = self.accepted();
            if a.len() >= n {
                return a;
            }
            assert!(
                Instant::now() < deadline,
                "stand-in {} accepted {} of {n} requests within {within:?}",
                self.addr,
                a.len()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Polls until `n` requests arrived, whatever their answer.
    pub async fn wait_requests(&self, n: usize, within: Duration) -> Vec<(Received, u16)> {
        let deadline = Instant::now() + within;
        loop {
            let r = self.requests();
            if r.len() >= n {
                return r;
            }
            assert!(
                Instant::now() < deadline,
                "stand-in {} got {} of {n} requests within {within:?}",
                self.addr,
                r.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(self.addr);
    }
}

fn serve(conn: TcpStream, log: Arc<Mutex<Vec<(Received, u16)>>>, h: Arc<Mutex<Handler>>) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let Ok(mut write) = conn.try_clone() else {
        return;
    };
    // One request per connection: every answer says Connection: close.
    let mut r = BufReader::new(conn);
    let mut line = String::new();
    if r.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let (Some(method), Some(path)) = (parts.next(), parts.next()) else {
        return;
    };
    let (method, path) = (method.to_string(), path.to_string());
    let mut headers = Vec::new();
    loop {
        let mut l = String::new();
        if r.read_line(&mut l).unwrap_or(0) == 0 {
            return;
        }
        let l = l.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    if r.read_exact(&mut body).is_err() {
        return;
    }
    let req = Received {
        method,
        path,
        headers,
        body,
        at: Instant::now(),
    };
    let reply = (h.lock().unwrap_or_else(|e| e.into_inner()))(&req);
    log.lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((req, reply.status));
    let mut out = format!(
        "HTTP/1.1 {} X\r\nContent-Length: {}\r\nConnection: close\r\n",
        reply.status,
        reply.body.len()
    );
    for (k, v) in &reply.headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    out.push_str(&reply.body);
    let _ = write.write_all(out.as_bytes());
}

/// Length as X and Mastodon count it: every http(s) link is 23 characters.
pub fn weighted_len(text: &str) -> usize {
    text.split(' ')
        .map(|w| {
            if w.starts_with("http://") || w.starts_with("https://") {
                23
            } else {
                w.chars().count()
            }
        })
        .sum::<usize>()
        + text.matches(' ').count()
}

/// RFC 3986 percent-encoding, written independently of the server's.
pub fn pct(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn pct_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz");
            if let Ok(v) = u8::from_str_radix(hex, 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn form_decode(s: &str) -> String {
    pct_decode(&s.replace('+', " "))
}

pub struct XKeys {
    pub consumer_key: &'static str,
    pub consumer_secret: &'static str,
    pub token: &'static str,
    pub token_secret: &'static str,
}

pub const X_KEYS: XKeys = XKeys {
    consumer_key: "test-consumer-key",
    consumer_secret: "test-consumer-secret+/=",
    token: "1234-test-access-token",
    token_secret: "test token secret&!",
};

fn unauthorized_x() -> Reply {
    Reply::new(
        401,
        r#"{"title":"Unauthorized","type":"about:blank","status":401,"detail":"Unauthorized"}"#,
    )
}

/// Checks an X API v2 `POST /2/tweets` as X does: OAuth 1.0a signature recomputed from the
/// received request (JSON body excluded), fresh timestamp and nonce, JSON `{"text"}`.
pub fn x_api(keys: XKeys) -> impl FnMut(&Received) -> Reply + Send {
    let mut nonces = HashSet::new();
    move |r: &Received| {
        if r.method != "POST" || r.path.split('?').next() != Some("/2/tweets") {
            return Reply::new(404, r#"{"title":"Not Found"}"#);
        }
        let Some(auth) = r
            .header("authorization")
            .and_then(|a| a.strip_prefix("OAuth "))
        else {
            return unauthorized_x();
        };
        let mut p: HashMap<String, String> = HashMap::new();
        for field in auth.split(',') {
            let Some((k, v)) = field.trim().split_once('=') else {
                return unauthorized_x();
            };
            p.insert(pct_decode(k), pct_decode(v.trim_matches('"')));
        }
        let get = |k: &str| p.get(k).cloned().unwrap_or_default();
        let now = chrono::Utc::now().timestamp();
        let ts: i64 = get("oauth_timestamp").parse().unwrap_or(0);
        if get("oauth_consumer_key") != keys.consumer_key
            || get("oauth_token") != keys.token
            || get("oauth_signature_method") != "HMAC-SHA1"
            || get("oauth_version") != "1.0"
            || (now - ts).abs() > 300
            || get("oauth_nonce").is_empty()
            || !nonces.insert(get("oauth_nonce"))
        {
            return unauthorized_x();
        }
        let host = r.header("host").unwrap_or_default();
        let (path, query) = r.path.split_once('?').unwrap_or((&r.path, ""));
        let mut params: Vec<(String, String)> = p
            .iter()
            .filter(|(k, _)| *k != "oauth_signature")
            .map(|(k, v)| (pct(k), pct(v)))
            .collect();
        for kv in query.split('&').filter(|s| !s.is_empty()) {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            params.push((pct(&pct_decode(k)), pct(&pct_decode(v))));
        }
        params.sort();
        let normalized: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let base = format!(
            "POST&{}&{}",
            pct(&format!("http://{host}{path}")),
            pct(&normalized.join("&"))
        );
        let key = format!("{}&{}", pct(keys.consumer_secret), pct(keys.token_secret));
        let mut mac = Hmac::<sha1::Sha1>::new_from_slice(key.as_bytes()).expect("hmac");
        mac.update(base.as_bytes());
        let expected =
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        if get("oauth_signature") != expected {
            return unauthorized_x();
        }
        if !r
            .header("content-type")
            .is_some_and(|c| c.starts_with("application/json"))
        {
            return Reply::new(415, r#"{"title":"Unsupported Media Type"}"#);
        }
        let body = r.json();
        let Some(obj) = body.as_object() else {
            return Reply::new(400, r#"{"title":"Invalid Request"}"#);
        };
        let Some(text) = obj.get("text").and_then(|t| t.as_str()) else {
            return Reply::new(400, r#"{"title":"Invalid Request"}"#);
        };
        if obj.len() != 1 || weighted_len(text) > 280 {
            return Reply::new(400, r#"{"title":"Invalid Request"}"#);
        }
        Reply::new(
            201,
            serde_json::json!({"data": {"id": "1445880548472328192", "text": text}}).to_string(),
        )
    }
}

/// Checks a Mastodon `POST /api/v1/statuses`: bearer token, form fields, Idempotency-Key;
/// with `media_ids[]`, media uploaded (`POST /api/v2/media`) and processed first (see
/// [`media::mastodon_api`] for a token without `write:media` or slow processing).
pub fn mastodon(token: &'static str) -> impl FnMut(&Received) -> Reply + Send {
    media::mastodon_api(media::MastodonApi::new(token))
}

/// HMAC-SHA256 hex, as a receiver computes it to verify `X-Onair-Signature`.
pub fn hmac_sha256_hex(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("hmac");
    mac.update(body);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A JSON webhook receiver that verifies the signature and the payload's shape.
pub fn webhook(secret: &'static str) -> impl FnMut(&Received) -> Reply + Send {
    move |r: &Received| {
        let want = format!("sha256={}", hmac_sha256_hex(secret, &r.body));
        if r.header("x-onair-signature") != Some(want.as_str()) {
            return Reply::new(401, r#"{"error":"bad signature"}"#);
        }
        let v = r.json();
        let ok = ["event", "channel", "url", "text"]
            .iter()
            .all(|k| v[k].is_string())
            && (v["started_at"].is_string() || v["started_at"].is_null());
        if !ok || r.header("x-onair-event") != v["event"].as_str() {
            return Reply::new(400, r#"{"error":"bad payload"}"#);
        }
        Reply::new(204, "")
    }
}

/// A Discord incoming webhook: `{"content"}` up to 2000 characters, 204.
pub fn discord() -> impl FnMut(&Received) -> Reply + Send {
    move |r: &Received| {
        let v = r.json();
        match v["content"].as_str() {
            Some(c) if !c.is_empty() && c.chars().count() <= 2000 => Reply::new(204, ""),
            _ => Reply::new(
                400,
                r#"{"message": "Cannot send an empty message", "code": 50006}"#,
            ),
        }
    }
}

pub const BSKY_HANDLE: &str = "alice.test";
pub const BSKY_PASSWORD: &str = "abcd-efgh-ijkl-mnop";

/// A Bluesky PDS: createSession with handle and app password, then uploadBlob and
/// createRecord with the session's token; checks that link facets point at the URL by UTF-8
/// byte offsets and that an external embed's thumb is a blob uploaded before.
pub fn bluesky() -> impl FnMut(&Received) -> Reply + Send {
    let mut blobs = HashMap::new();
    move |r: &Received| {
        let v = r.json();
        match r.path.as_str() {
            "/xrpc/com.atproto.repo.uploadBlob" => {
                if r.header("authorization") != Some("Bearer jwt-access") {
                    return Reply::new(401, r#"{"error":"InvalidToken"}"#);
                }
                media::upload_blob(r, &mut blobs)
            }
            "/xrpc/com.atproto.server.createSession" => {
                if v["identifier"] == BSKY_HANDLE && v["password"] == BSKY_PASSWORD {
                    Reply::new(
                        200,
                        r#"{"did":"did:plc:test123","handle":"alice.test","accessJwt":"jwt-access","refreshJwt":"jwt-refresh"}"#,
                    )
                } else {
                    Reply::new(
                        401,
                        r#"{"error":"AuthenticationRequired","message":"Invalid identifier or password"}"#,
                    )
                }
            }
            "/xrpc/com.atproto.repo.createRecord" => {
                if r.header("authorization") != Some("Bearer jwt-access") {
                    return Reply::new(401, r#"{"error":"InvalidToken"}"#);
                }
                if !post_record_ok(&v, "did:plc:test123") {
                    return Reply::new(400, r#"{"error":"InvalidRequest"}"#);
                }
                if !media::thumb_ok(&v["record"]["embed"]["external"], &blobs) {
                    return Reply::new(
                        400,
                        r#"{"error":"BlobNotFound","message":"Could not find blob"}"#,
                    );
                }
                Reply::new(
                    200,
                    r#"{"uri":"at://did:plc:test123/app.bsky.feed.post/3k","cid":"bafy"}"#,
                )
            }
            _ => Reply::new(404, r#"{"error":"MethodNotImplemented"}"#),
        }
    }
}

/// Whether a `createRecord` body is a valid `app.bsky.feed.post` in `repo`: text of at most
/// 300 characters, link facets at the UTF-8 byte offsets of their URI, and an external embed
/// (if any) pointing at a link of the text.
pub fn post_record_ok(v: &serde_json::Value, repo: &str) -> bool {
    let rec = &v["record"];
    let text = rec["text"].as_str().unwrap_or_default();
    let facets_ok = rec["facets"].as_array().is_some_and(|fs| {
        !fs.is_empty()
            && fs.iter().all(|f| {
                let s = f["index"]["byteStart"].as_u64().unwrap_or(u64::MAX) as usize;
                let e = f["index"]["byteEnd"].as_u64().unwrap_or(0) as usize;
                let uri = f["features"][0]["uri"].as_str().unwrap_or_default();
                f["features"][0]["$type"] == "app.bsky.richtext.facet#link"
                    && text.as_bytes().get(s..e) == Some(uri.as_bytes())
            })
    });
    let embed = &rec["embed"];
    let embed_ok = embed.is_null()
        || (embed["$type"] == "app.bsky.embed.external"
            && embed["external"]["uri"]
                .as_str()
                .is_some_and(|u| text.contains(u))
            && embed["external"]["title"].is_string()
            && embed["external"]["description"].is_string());
    v["repo"] == repo
        && v["collection"] == "app.bsky.feed.post"
        && rec["$type"] == "app.bsky.feed.post"
        && rec["createdAt"].as_str().is_some()
        && !text.is_empty()
        && text.chars().count() <= 300
        && facets_ok
        && embed_ok
}

/// The `status` and `visibility` of a Mastodon `POST /api/v1/statuses`, checked as Mastodon
/// does (form-encoded, 1 to 500 characters with links as 23, a known visibility), or its
/// refusal.
pub fn status_form(r: &Received) -> Result<(String, String), Reply> {
    let blank = || Reply::new(422, r#"{"error":"Validation failed: Text can't be blank"}"#);
    if !r
        .header("content-type")
        .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"))
    {
        return Err(blank());
    }
    let f = r.form();
    let status = f.get("status").cloned().unwrap_or_default();
    let vis = f.get("visibility").cloned().unwrap_or_default();
    if status.trim().is_empty() || weighted_len(&status) > 500 {
        return Err(blank());
    }
    if !["public", "unlisted", "private", "direct"].contains(&vis.as_str()) {
        return Err(Reply::new(
            422,
            r#"{"error":"Validation failed: Visibility is invalid"}"#,
        ));
    }
    Ok((status, vis))
}

/// Answers `first` (status, headers) `n` times, then hands over to `then`.
pub fn failing_first(
    n: usize,
    status: u16,
    headers: Vec<(&'static str, &'static str)>,
    mut then: impl FnMut(&Received) -> Reply + Send,
) -> impl FnMut(&Received) -> Reply + Send {
    let mut seen = 0;
    move |r: &Received| {
        seen += 1;
        if seen <= n {
            let mut rep = Reply::new(status, r#"{"error":"try again later"}"#);
            for (k, v) in &headers {
                rep = rep.with_header(k, v);
            }
            rep
        } else {
            then(r)
        }
    }
}

/// Always the same answer.
pub fn always(status: u16) -> impl FnMut(&Received) -> Reply + Send {
    move |_| Reply::new(status, r#"{"error":"no"}"#)
}
