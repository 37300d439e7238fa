//! Every response helper in one place: JSON and JSON errors, HTML pages with their security
//! headers (CSP, referrer policy), raw bytes, byte ranges (`Range` / 206 / 416), not found, the
//! CORS preflight, and [`finish`], which every response passes through (CORS and `nosniff`
//! headers; HEAD keeps the headers and drops the body). Surfaces build their answers from these.

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Full};
use serde::Serialize;

use super::Body;

/// Content-Security-Policy of the pages: only our own scripts, styles and connections; hls.js
/// plays from `blob:` URLs (MediaSource) and may start its worker from one. Images may come
/// from any https host: signed-in viewers' avatars are on their own servers.
const PAGE_CSP: &str =
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: https:; \
media-src 'self' blob:; worker-src 'self' blob:; connect-src 'self'; object-src 'none'; \
base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

pub fn bytes_response(
    status: StatusCode,
    content_type: &'static str,
    body: Bytes,
) -> Response<Body> {
    let mut r = Response::new(Full::new(body).boxed());
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

pub fn text(status: StatusCode, content_type: &'static str, body: &'static str) -> Response<Body> {
    bytes_response(status, content_type, Bytes::from_static(body.as_bytes()))
}

pub fn html(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = bytes_response(status, "text/html; charset=utf-8", body.into());
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

pub fn not_found() -> Response<Body> {
    json_error(StatusCode::NOT_FOUND, "not found")
}

/// Common headers; HEAD keeps the headers (with the length, when known) and drops the body.
pub fn finish(mut resp: Response<Body>, head: bool) -> Response<Body> {
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

/// The answer to a CORS preflight (`OPTIONS` on any path).
pub fn preflight() -> Response<Body> {
    preflight_for(
        "GET, HEAD, POST, PUT, DELETE, OPTIONS",
        "Content-Type, Last-Event-ID, Authorization",
    )
}

/// A CORS preflight answer allowing `methods` and request `headers` (cached a day).
pub fn preflight_for(methods: &'static str, headers: &'static str) -> Response<Body> {
    let mut r = text(StatusCode::NO_CONTENT, "text/plain", "");
    let h = r.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static(methods),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static(headers),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("86400"),
    );
    r
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

/// A body, whole or the part a `Range` header asks for: 200 or 206 with `Accept-Ranges`, or 416
/// with `Content-Range: bytes */len`.
pub fn ranged(data: Bytes, content_type: &'static str, range: Option<&str>) -> Response<Body> {
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
    resp.headers_mut()
        .insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
