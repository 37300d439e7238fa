//! The WHIP endpoint (RFC 9725): `POST /whip/{channel}` with an SDP offer and
//! `Authorization: Bearer {stream key}` answers 201 with the SDP answer, `Location:
//! /whip/{channel}/{session}`, `ETag` and `Accept-Patch`; `PATCH` on the session trickles
//! candidates (204), `DELETE` ends the broadcast (200), `OPTIONS` answers CORS preflights with
//! `Location` and `ETag` exposed. Refusals are JSON `{"error": reason}` with 400 (broken SDP),
//! 401 (key), 404 (channel or session), 406 (nothing onair can take), 412, 413, 415, 422,
//! 429 and 503 (limits), each with one log line that names the peer, never the key.
//!
//! A signed-in owner of the channel (`channels[].owners`) needs no key: the studio sends the
//! session cookie instead ([`credential`]).
//!
//! The protocol work is [`crate::ingest::whip::WhipIngest`]'s; this module only speaks HTTP.

use std::net::IpAddr;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{HeaderMap, Method, Response, StatusCode};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use tracing::{info, warn};

use super::request::{Req, RequestBody};
use super::response::{bytes_response, json_error, preflight_for};
use super::{Body, HttpState, Route};
use crate::config::Secret;
use crate::ingest::whip::{SessionId, WhipError, WhipIngest};
use crate::proto::sdp::{SdpError, MAX_OFFER_BYTES};

const SDP: &str = "application/sdp";
const SDP_FRAG: &str = "application/trickle-ice-sdpfrag";
/// Headers a page on another origin may read from WHIP responses.
const EXPOSED: &str = "Location, ETag, Accept-Patch, Link";

/// The HTTP status of a refusal.
fn status(e: &WhipError) -> StatusCode {
    match e {
        WhipError::Unauthorized => StatusCode::UNAUTHORIZED,
        WhipError::NoChannel | WhipError::NoSession => StatusCode::NOT_FOUND,
        WhipError::Offer(SdpError::TooLarge { .. }) => StatusCode::PAYLOAD_TOO_LARGE,
        WhipError::Offer(o) if o.not_acceptable() => StatusCode::NOT_ACCEPTABLE,
        WhipError::Offer(_) | WhipError::Rejected { .. } => StatusCode::BAD_REQUEST,
        WhipError::Full { .. } | WhipError::Stopped => StatusCode::SERVICE_UNAVAILABLE,
        WhipError::AddressFull { .. } => StatusCode::TOO_MANY_REQUESTS,
        WhipError::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
        WhipError::IceRestart => StatusCode::UNPROCESSABLE_ENTITY,
    }
}

fn refusal(e: &WhipError, what: &str, channel: &str, ip: IpAddr) -> Response<Body> {
    let code = status(e);
    match e {
        WhipError::Unauthorized | WhipError::NoChannel | WhipError::NoSession => {
            info!(channel, peer = %ip, reason = %e, "WHIP {what} refused")
        }
        _ => warn!(channel, peer = %ip, reason = %e, "WHIP {what} refused"),
    }
    let mut r = json_error(code, &e.to_string());
    let h = r.headers_mut();
    if code == StatusCode::UNAUTHORIZED {
        h.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"onair whip\""),
        );
    }
    if code == StatusCode::SERVICE_UNAVAILABLE || code == StatusCode::TOO_MANY_REQUESTS {
        h.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    }
    r
}

/// The stream key from `Authorization: Bearer …` (the only place WHIP clients put it).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

fn content_type_is(headers: &HeaderMap, want: &str) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case(want))
}

/// Reads a body of at most [`MAX_OFFER_BYTES`] as text.
async fn read_text(body: RequestBody) -> Result<String, WhipError> {
    match Limited::new(body, MAX_OFFER_BYTES).collect().await {
        Ok(c) => String::from_utf8(c.to_bytes().to_vec()).map_err(|_| {
            WhipError::Offer(SdpError::Malformed {
                reason: "not UTF-8 text".into(),
            })
        }),
        Err(e) if e.is::<LengthLimitError>() => Err(WhipError::Offer(SdpError::TooLarge {
            len: MAX_OFFER_BYTES + 1,
        })),
        Err(_) => Err(WhipError::Offer(SdpError::Malformed {
            reason: "the body could not be read".into(),
        })),
    }
}

fn with_cors(mut r: Response<Body>) -> Response<Body> {
    r.headers_mut().insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static(EXPOSED),
    );
    r
}

fn unsupported(want: &str) -> Response<Body> {
    json_error(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        &format!("Content-Type must be {want}"),
    )
}

/// The WHIP routes.
pub async fn handle(state: &HttpState, route: Route<'_>, req: Req) -> Response<Body> {
    let Some(whip) = &state.whip else {
        return json_error(StatusCode::SERVICE_UNAVAILABLE, "WHIP is not running");
    };
    let key = match &route {
        Route::WhipPublish(c) | Route::WhipSession(c, _) => {
            match credential(state, c, &req.parts).await {
                Ok(k) => k,
                Err(r) => return with_cors(r),
            }
        }
        _ => None,
    };
    let key = key.as_ref().map(Secret::expose);
    match route {
        Route::WhipOptions(session) => options(session),
        Route::WhipPublish(c) => publish(whip, c, key, req).await,
        Route::WhipSession(c, s) => session(whip, c, s, key, req).await,
        _ => super::response::not_found(),
    }
}

/// The stream key a request speaks with: its `Authorization: Bearer` key, or, for a signed-in
/// owner of the channel (`channels[].owners`; the session cookie of a state-changing request
/// must come with our `Origin`, else 403), the channel's key, looked up inside the server and
/// never sent to the page. Anyone else: none (401 from the ingest).
async fn credential(
    state: &HttpState,
    channel: &str,
    parts: &http::request::Parts,
) -> Result<Option<Secret>, Response<Body>> {
    if let Some(k) = bearer(&parts.headers) {
        return Ok(Some(Secret::new(k)));
    }
    match super::auth::session_of(state, parts).await? {
        Some(s) if state.auth.is_owner(channel, &s.identity) => {
            info!(channel, identity = %s.identity.key(), method = %parts.method, "WHIP request by a signed-in owner");
            Ok(state.ingest.key_of(channel))
        }
        _ => Ok(None),
    }
}

/// `OPTIONS` on an endpoint or session URL.
fn options(session: bool) -> Response<Body> {
    let methods = if session {
        "PATCH, DELETE, OPTIONS"
    } else {
        "POST, OPTIONS"
    };
    let mut r = preflight_for(methods, "Authorization, Content-Type, If-Match");
    let h = r.headers_mut();
    if !session {
        h.insert("accept-post", HeaderValue::from_static(SDP));
    } else {
        h.insert("accept-patch", HeaderValue::from_static(SDP_FRAG));
    }
    with_cors(r)
}

/// `POST /whip/{channel}`.
async fn publish(whip: &WhipIngest, channel: &str, key: Option<&str>, req: Req) -> Response<Body> {
    let (headers, ip) = (&req.parts.headers, req.ip);
    if !content_type_is(headers, SDP) {
        return with_cors(unsupported(SDP));
    }
    let offer = match read_text(req.body).await {
        Ok(o) => o,
        Err(e) => return with_cors(refusal(&e, "offer", channel, ip)),
    };
    let answer = match whip.offer(channel, key, &offer, ip).await {
        Ok(a) => a,
        Err(e) => return with_cors(refusal(&e, "offer", channel, ip)),
    };
    let mut r = bytes_response(StatusCode::CREATED, SDP, Bytes::from(answer.sdp));
    let h = r.headers_mut();
    let location = format!("/whip/{channel}/{}", answer.session);
    if let Ok(v) = HeaderValue::from_str(&location) {
        h.insert(header::LOCATION, v);
    }
    if let Ok(v) = HeaderValue::from_str(&answer.etag) {
        h.insert(header::ETAG, v);
    }
    h.insert("accept-patch", HeaderValue::from_static(SDP_FRAG));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    with_cors(r)
}

/// `PATCH` and `DELETE` on `/whip/{channel}/{session}`.
async fn session(
    whip: &WhipIngest,
    channel: &str,
    session: &str,
    key: Option<&str>,
    req: Req,
) -> Response<Body> {
    let (method, headers, ip) = (&req.parts.method, &req.parts.headers, req.ip);
    let Some(id) = SessionId::parse(session) else {
        return with_cors(refusal(&WhipError::NoSession, "request", channel, ip));
    };
    let result = if method == Method::DELETE {
        whip.delete(channel, id, key).await.map(|()| {
            info!(channel, session = %id.short(), peer = %ip, "WHIP DELETE");
            bytes_response(StatusCode::OK, "text/plain", Bytes::new())
        })
    } else {
        if !content_type_is(headers, SDP_FRAG) {
            return with_cors(unsupported(SDP_FRAG));
        }
        let if_match = headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok());
        match read_text(req.body).await {
            Ok(frag) => whip
                .patch(channel, id, key, if_match, &frag)
                .await
                .map(|()| bytes_response(StatusCode::NO_CONTENT, "text/plain", Bytes::new())),
            Err(e) => Err(e),
        }
    };
    with_cors(result.unwrap_or_else(|e| refusal(&e, "session request", channel, ip)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer  k1 "),
        );
        assert_eq!(bearer(&h), Some("k1"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("bearer k2"));
        assert_eq!(bearer(&h), Some("k2"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic a2V5"),
        );
        assert_eq!(bearer(&h), None);
    }

    #[test]
    fn refusal_statuses() {
        let cases = [
            (WhipError::Unauthorized, 401),
            (WhipError::NoChannel, 404),
            (WhipError::Offer(SdpError::NoMedia), 406),
            (WhipError::Offer(SdpError::NoVideoCodec), 406),
            (
                WhipError::Offer(SdpError::Malformed { reason: "x".into() }),
                400,
            ),
            (WhipError::Offer(SdpError::TooLarge { len: 1 }), 413),
            (WhipError::Rejected { reason: "x".into() }, 400),
            (WhipError::Full { limit: 1 }, 503),
            (WhipError::AddressFull { limit: 1 }, 429),
            (WhipError::PreconditionFailed, 412),
            (WhipError::IceRestart, 422),
        ];
        for (e, code) in cases {
            assert_eq!(status(&e).as_u16(), code, "{e}");
        }
    }
}
