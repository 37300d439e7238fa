//! The chat surface: `POST /api/channels/{c}/chat` (a viewer's message, checked by
//! `crate::chat` for bans, rate and slow mode) and `GET /api/channels/{c}/events` (the
//! server-sent event stream of chat, deletes, live/offline and viewer counts, resumable with
//! `Last-Event-ID`). [`chat_error`] maps chat refusals to HTTP for this surface and `admin`.

use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::BodyExt;
use serde::Deserialize;

use super::request::{read_json, Req};
use super::response::{json, json_error, not_found};
use super::router::Route;
use super::{Body, HttpState};
use crate::chat::ChatError;

/// `POST /api/channels/{c}/chat`
#[derive(Debug, Deserialize)]
struct ChatPostBody {
    nick: String,
    text: String,
}

/// `POST /api/channels/{c}/chat` and `GET /api/channels/{c}/events`.
pub async fn handle(state: &HttpState, route: Route<'_>, req: Req) -> Response<Body> {
    match route {
        Route::ChatPost(c) => match read_json::<ChatPostBody>(req.body).await {
            Ok(b) => match state.chat.post(c, req.ip, &b.nick, &b.text) {
                Ok(msg) => json(StatusCode::ACCEPTED, &msg),
                Err(e) => chat_error(&e),
            },
            Err(r) => r,
        },
        Route::Events(c) => {
            // The header is what EventSource sends when it reconnects by itself; the query
            // parameter is for a stream the page reopens by hand.
            let last = req
                .header("last-event-id")
                .and_then(|v| v.trim().parse::<u64>().ok())
                .or_else(|| req.query_param("last_event_id")?.parse().ok());
            match state.chat.subscribe(c, req.ip, last) {
                Ok(sse) => event_stream(sse),
                Err(e) => chat_error(&e),
            }
        }
        _ => not_found(),
    }
}

/// The HTTP answer to a refused chat request.
pub fn chat_error(e: &ChatError) -> Response<Body> {
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
        ChatError::Unsaved => (StatusCode::SERVICE_UNAVAILABLE, Some(5)),
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
