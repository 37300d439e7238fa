//! The chat surface: `POST /api/channels/{c}/chat` (a viewer's message, checked by
//! `crate::chat` for bans, rate and slow mode, and by `chat.mode` for who may post; a
//! signed-in viewer's message carries its `author` and, if they ask, is queued to be
//! cross-posted: the answer never waits for that), `POST /api/channels/{c}/chat/preview` (the
//! exact text a cross-post would have) and `GET /api/channels/{c}/events` (the
//! server-sent event stream of chat, deletes, live/offline and viewer counts, resumable with
//! `Last-Event-ID`). [`chat_error`] maps chat refusals to HTTP for this surface and `admin`.

use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::BodyExt;
use serde::Deserialize;

use super::auth::session_of;
use super::request::{read_json, Req};
use super::response::{json, json_error, not_found};
use super::router::Route;
use super::{Body, HttpState};
use crate::chat::{Audience, ChatError};
use crate::identity::gate::ChatGate;

/// `POST /api/channels/{c}/chat`
#[derive(Debug, Deserialize)]
struct ChatPostBody {
    /// Ignored for a signed-in viewer (their handle is their name).
    #[serde(default)]
    nick: String,
    text: String,
    /// Also post it on the viewer's own account.
    #[serde(default)]
    cross_post: bool,
}

/// `POST /api/channels/{c}/chat/preview`
#[derive(Debug, Deserialize)]
struct PreviewBody {
    text: String,
}

/// A `chat.mode` refusal.
pub(super) fn gate_error(g: &ChatGate) -> Response<Body> {
    let status = match g {
        ChatGate::SignIn(_) => StatusCode::UNAUTHORIZED,
        ChatGate::Forbidden(_) => StatusCode::FORBIDDEN,
        ChatGate::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    json_error(status, &g.to_string())
}

async fn post(state: &HttpState, c: &str, req: Req) -> Response<Body> {
    let session = match session_of(state, &req.parts).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let b = match read_json::<ChatPostBody>(req.body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    if state.bus.get(c).is_none() {
        return chat_error(&ChatError::NoChannel);
    }
    if let Err(g) = state.auth.may_chat(c, session.as_ref()).await {
        return gate_error(&g);
    }
    let author = session.as_ref().map(|s| &s.identity);
    let msg = match state.chat.submit(c, req.ip, &b.nick, &b.text, author).await {
        Ok(m) => m,
        Err(e) => return chat_error(&e),
    };
    state.recorder.chat_posted(c, &msg);
    let mut answer = match serde_json::to_value(&msg) {
        Ok(v) => v,
        Err(_) => return json_error(StatusCode::INTERNAL_SERVER_ERROR, "encoding failed"),
    };
    if let (true, Some(s)) = (b.cross_post, &session) {
        let started = state
            .bus
            .get(c)
            .and_then(|ch| ch.publisher())
            .map(|p| p.live_since.timestamp())
            .unwrap_or(0);
        let x = state
            .auth
            .cross_post(c, s, msg.id, &msg.text, started)
            .await;
        answer["cross_post"] = serde_json::to_value(x).unwrap_or_default();
    }
    json(StatusCode::ACCEPTED, &answer)
}

async fn preview(state: &HttpState, c: &str, req: Req) -> Response<Body> {
    let session = match session_of(state, &req.parts).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            return json_error(StatusCode::UNAUTHORIZED, "sign in to post to your timeline")
        }
        Err(r) => return r,
    };
    if state.bus.get(c).is_none() {
        return chat_error(&ChatError::NoChannel);
    }
    let b = match read_json::<PreviewBody>(req.body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let text = match crate::chat::moderation::clean_text(
        &b.text,
        state.chat.max_message_chars(),
        state.chat.blocked_words(),
    ) {
        Ok(t) => t,
        Err(e) => return chat_error(&e.into()),
    };
    match state.auth.preview(c, &session, &text) {
        Ok(v) => json(StatusCode::OK, &v),
        Err(r) => json_error(StatusCode::FORBIDDEN, &r.to_string()),
    }
}

/// `POST /api/channels/{c}/chat` and `GET /api/channels/{c}/events`.
pub async fn handle(state: &HttpState, route: Route<'_>, req: Req) -> Response<Body> {
    match route {
        Route::ChatPost(c) => post(state, c, req).await,
        Route::ChatPreview(c) => preview(state, c, req).await,
        Route::Events(c) => {
            // The header is what EventSource sends when it reconnects by itself; the query
            // parameter is for a stream the page reopens by hand.
            let last = req
                .header("last-event-id")
                .and_then(|v| v.trim().parse::<u64>().ok())
                .or_else(|| req.query_param("last_event_id")?.parse().ok());
            // The studio page's own stream is not a viewer.
            let audience = match req.query_param("role") {
                Some("studio") => Audience::Studio,
                _ => Audience::Viewer,
            };
            match state.chat.subscribe_as(c, req.ip, last, audience) {
                Ok(sse) => {
                    let moved = req
                        .parts
                        .extensions
                        .get::<super::ConnectionSlot>()
                        .is_none_or(super::ConnectionSlot::become_event_stream);
                    if moved {
                        event_stream(sse)
                    } else {
                        // Dropping the body unsubscribes.
                        drop(sse);
                        chat_error(&ChatError::ServerFull)
                    }
                }
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
        ChatError::ChannelFull | ChatError::ServerFull => {
            (StatusCode::SERVICE_UNAVAILABLE, Some(10))
        }
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
