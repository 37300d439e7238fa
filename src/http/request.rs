//! What every surface reads from a request: the client's address (`X-Forwarded-For` believed
//! only from `chat.trusted_proxies`), query parameters, and JSON bodies within a size limit.
//! `super::HttpState::handle` builds one [`Req`] per request and hands it, with the body, to
//! the surface's `handle`.

use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::de::DeserializeOwned;

use super::response::json_error;
use super::Body;

/// Largest request body accepted (chat posts and admin JSON are tiny).
pub const MAX_REQUEST_BODY: usize = 16 * 1024;

/// Longest header line (`name: value`) or request target accepted. nginx takes lines up to
/// its 8 KiB `large_client_header_buffers`; 16 KiB leaves room for big cookies.
pub const MAX_HEADER_LINE: usize = 16 * 1024;

/// Largest request head (request line and every header) accepted: nginx's default is four
/// 8 KiB buffers. HTTP/1 enforces it in hyper's parser (`max_header_size`), so a connection
/// never buffers more than this for a head; HTTP/2 announces it as
/// SETTINGS_MAX_HEADER_LIST_SIZE and the h2 codec refuses larger header blocks with 431.
pub const MAX_REQUEST_HEAD: usize = 32 * 1024;

/// Checks a parsed request head against [`MAX_HEADER_LINE`] and [`MAX_REQUEST_HEAD`] (HTTP/2
/// counts its pseudo-headers differently, so the total is checked here for both): `Err` with
/// 414 (request target) or 431 (headers) and the reason.
pub fn head_within_limits(parts: &http::request::Parts) -> Result<(), (StatusCode, &'static str)> {
    let target = parts.uri.path_and_query().map_or(0, |p| p.as_str().len());
    if target > MAX_HEADER_LINE {
        return Err((
            StatusCode::URI_TOO_LONG,
            "request target longer than 16 KiB",
        ));
    }
    // "GET " + target + " HTTP/1.1\r\n"
    let mut total = parts.method.as_str().len() + target + 12;
    for (name, value) in &parts.headers {
        let line = name.as_str().len() + 2 + value.len();
        if line > MAX_HEADER_LINE {
            return Err((
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "a request header line is longer than 16 KiB",
            ));
        }
        total += line + 2;
    }
    if total > MAX_REQUEST_HEAD {
        return Err((
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "request headers larger than 32 KiB in all",
        ));
    }
    Ok(())
}

/// Any error, boxed.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// An error while reading a request body, whatever the connection's body type. A named type
/// rather than [`BoxError`] itself: with `Box<dyn Error>` as the body's error, rustc cannot
/// prove the connection's future `Send` (its higher-ranked lifetime check on `From`).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BodyError(BoxError);

/// A request body as the surfaces get it (hyper's `Incoming` in the server, anything in tests).
pub type RequestBody = UnsyncBoxBody<Bytes, BodyError>;

/// A body's error as a [`BodyError`].
pub fn body_error<E: Into<BoxError>>(e: E) -> BodyError {
    BodyError(e.into())
}

/// One request as every surface handler gets it, with the client's address.
pub struct Req {
    pub parts: http::request::Parts,
    /// Read only by handlers that take a body, with [`read_json`].
    pub body: RequestBody,
    /// The client: the peer, or what a trusted proxy says in `X-Forwarded-For` ([`client_ip`]).
    pub ip: IpAddr,
}

impl Req {
    pub fn new(
        parts: http::request::Parts,
        body: RequestBody,
        peer: SocketAddr,
        trusted: &[IpAddr],
    ) -> Self {
        let forwarded: Vec<&str> = parts
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        let ip = client_ip(peer.ip(), &forwarded, trusted);
        Self { parts, body, ip }
    }

    /// A header's value, when it is text.
    pub fn header(&self, name: impl http::header::AsHeaderName) -> Option<&str> {
        self.parts.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The raw value of a query parameter (no percent-decoding: see [`query_param`]).
    pub fn query_param(&self, name: &str) -> Option<&str> {
        query_param(self.parts.uri.query(), name)
    }
}

/// The raw value of `name` in a query string (only used for plain digits, so no decoding).
pub fn query_param<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?
        .split('&')
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
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

pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// One X-Forwarded-For entry: `1.2.3.4`, `1.2.3.4:5678`, `::1` or `[::1]:5678`.
pub fn parse_forwarded_ip(entry: &str) -> Option<IpAddr> {
    let e = entry.trim();
    if let Ok(ip) = e.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    e.parse::<SocketAddr>().ok().map(|s| canonical(s.ip()))
}

/// Reads a JSON request body of at most [`MAX_REQUEST_BODY`] bytes.
pub async fn read_json<T: DeserializeOwned>(body: RequestBody) -> Result<T, Response<Body>> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
