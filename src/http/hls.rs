//! The HLS surface: multivariant and media playlists (with LL-HLS blocking reloads) and
//! segments or parts, all from the in-memory store (`crate::hls::serve`), segments with byte
//! ranges. Every answer carries the `Cache-Control` that [`super::cache`] decides, and never a
//! cookie, so that an nginx edge or a CDN in front may keep it. A successful answer counts its
//! client as a viewer of the channel (`crate::chat`).

use std::borrow::Cow;
use std::net::IpAddr;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};

use super::cache::{CachePolicy, HlsAnswer};
use super::request::Req;
use super::response::{bytes_response, json_error, not_found, ranged};
use super::router::Route;
use super::{Body, ConnectionSlot, HttpState};
use crate::hls::serve::{self, PlaylistQuery, ServeError};

const PLAYLIST_TYPE: &str = "application/vnd.apple.mpegurl";

/// `GET /hls/...`: playlists and segments.
pub async fn handle(state: &HttpState, route: Route<'_>, req: Req) -> Response<Body> {
    if let Some(resp) = remote(state, &route, &req.parts, req.ip).await {
        return resp;
    }
    let policy = CachePolicy {
        container: state.store.container(),
        segment_seconds: state.store.segment_seconds(),
        part_seconds: state.store.part_seconds(),
    };
    let (resp, answer) = match route {
        Route::Master(c) => match state.store.master(c) {
            Ok(b) => (
                viewed(state, &req.parts, req.ip, c, playlist(b)),
                HlsAnswer::Playlist,
            ),
            Err(e) => hls_error(e.into()),
        },
        Route::MediaPlaylist(c, r) => match PlaylistQuery::parse(req.parts.uri.query()) {
            Ok(q) => match serve::media_playlist(&state.store, c, r, q).await {
                Ok(a) => (
                    viewed(state, &req.parts, req.ip, c, playlist(a.body)),
                    if a.reached {
                        HlsAnswer::Blocked
                    } else {
                        HlsAnswer::Playlist
                    },
                ),
                Err(e) => hls_error(e),
            },
            Err(e) => hls_error(e),
        },
        Route::Segment(c, r, s) => match serve::media_object(&state.store, c, r, s).await {
            Ok((data, content_type)) => {
                let resp = ranged(data, content_type, req.header(header::RANGE));
                let answer = if resp.status() == StatusCode::RANGE_NOT_SATISFIABLE {
                    HlsAnswer::Error
                } else {
                    HlsAnswer::Media
                };
                (viewed(state, &req.parts, req.ip, c, resp), answer)
            }
            Err(e) => hls_error(e),
        },
        _ => (not_found(), HlsAnswer::Error),
    };
    cacheable(resp, &policy, answer)
}

/// Sets the answer's `Cache-Control` and drops any cookie.
fn cacheable(mut resp: Response<Body>, policy: &CachePolicy, answer: HlsAnswer) -> Response<Body> {
    let h = resp.headers_mut();
    h.remove(header::SET_COOKIE);
    let value = match policy.header(answer) {
        Cow::Borrowed(v) => Some(HeaderValue::from_static(v)),
        Cow::Owned(v) => HeaderValue::from_str(&v).ok(),
    };
    if let Some(v) = value {
        h.insert(header::CACHE_CONTROL, v);
    }
    resp
}

/// A successful HLS response counts its client as a viewer of the channel (once a second per
/// connection: see [`ConnectionSlot::viewed_recently`]).
fn viewed(
    state: &HttpState,
    parts: &http::request::Parts,
    ip: IpAddr,
    channel: &str,
    resp: Response<Body>,
) -> Response<Body> {
    if resp.status() == StatusCode::OK
        && !parts
            .extensions
            .get::<ConnectionSlot>()
            .is_some_and(|s| s.viewed_recently(channel, ip))
    {
        state.chat.touch_hls(channel, ip);
    }
    resp
}

fn playlist(b: Bytes) -> Response<Body> {
    bytes_response(StatusCode::OK, PLAYLIST_TYPE, b)
}

fn hls_error(e: ServeError) -> (Response<Body>, HlsAnswer) {
    let resp = match e {
        ServeError::NotFound => not_found(),
        ServeError::BadRequest(why) => json_error(StatusCode::BAD_REQUEST, why),
        ServeError::Timeout => json_error(StatusCode::SERVICE_UNAVAILABLE, "not available in time"),
    };
    (resp, HlsAnswer::Error)
}

/// A channel live on another node of the cluster: its HLS fetched from there (`cluster::proxy`:
/// one upstream request per object for all the viewers asking). `None`: serve it from here.
async fn remote(
    state: &HttpState,
    route: &Route<'_>,
    parts: &http::request::Parts,
    ip: IpAddr,
) -> Option<Response<Body>> {
    let cluster = state.cluster.as_ref()?;
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let range = parts
        .headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok());
    let (c, segment) = match route {
        Route::Master(c) | Route::MediaPlaylist(c, _) => (*c, false),
        Route::Segment(c, ..) => (*c, true),
        _ => return None,
    };
    if state.bus.get(c).and_then(|b| b.publisher()).is_some() {
        return None;
    }
    let origin = cluster.remote_origin(c)?;
    let f = cluster.fetch_hls(&origin, path).await;
    let status = StatusCode::from_u16(f.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut resp = if status == StatusCode::OK && segment {
        ranged(f.body, "application/octet-stream", range)
    } else {
        bytes_response(status, "application/octet-stream", f.body)
    };
    let h = resp.headers_mut();
    for (name, value) in [
        (header::CONTENT_TYPE, &f.content_type),
        (header::CACHE_CONTROL, &f.cache_control),
    ] {
        if let Some(v) = value.as_deref().and_then(|v| HeaderValue::from_str(v).ok()) {
            h.insert(name, v);
        }
    }
    Some(viewed(state, parts, ip, c, resp))
}
