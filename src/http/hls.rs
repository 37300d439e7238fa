//! The HLS surface: multivariant and media playlists (with LL-HLS blocking reloads) and
//! segments or parts, all from the in-memory store (`crate::hls::serve`), segments with byte
//! ranges. A successful answer counts its client as a viewer of the channel (`crate::chat`).

use std::net::IpAddr;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};

use super::request::Req;
use super::response::{bytes_response, json_error, not_found, ranged};
use super::router::Route;
use super::{Body, HttpState};
use crate::hls::serve::{self, PlaylistQuery, ServeError};

/// `GET /hls/...`: playlists and segments.
pub async fn handle(state: &HttpState, route: Route<'_>, req: Req) -> Response<Body> {
    let ip = req.ip;
    let path = req.parts.uri.path_and_query().map_or("/", |p| p.as_str());
    if let Some(resp) = remote(state, &route, path, req.header(header::RANGE), ip).await {
        return resp;
    }
    match route {
        Route::Master(c) => viewed(
            state,
            c,
            ip,
            playlist(state.store.master(c).map_err(ServeError::from)),
        ),
        Route::MediaPlaylist(c, r) => match PlaylistQuery::parse(req.parts.uri.query()) {
            Ok(q) => viewed(
                state,
                c,
                ip,
                playlist(serve::media_playlist(&state.store, c, r, q).await),
            ),
            Err(e) => playlist(Err(e)),
        },
        Route::Segment(c, r, s) => match serve::media_object(&state.store, c, r, s).await {
            Ok((data, content_type)) => viewed(
                state,
                c,
                ip,
                segment_response(data, content_type, req.header(header::RANGE)),
            ),
            Err(e) => hls_error(e),
        },
        _ => not_found(),
    }
}

/// A successful HLS response counts its client as a viewer of the channel.
fn viewed(state: &HttpState, channel: &str, ip: IpAddr, resp: Response<Body>) -> Response<Body> {
    if resp.status() == StatusCode::OK {
        state.chat.touch_hls(channel, ip);
    }
    resp
}

/// A segment, whole or the part a `Range` header asks for; cached for good once whole.
fn segment_response(
    data: Bytes,
    content_type: &'static str,
    range: Option<&str>,
) -> Response<Body> {
    let mut resp = ranged(data, content_type, range);
    if resp.status() != StatusCode::RANGE_NOT_SATISFIABLE {
        resp.headers_mut().insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=30, immutable"),
        );
    }
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

/// A channel live on another node of the cluster: its HLS fetched from there (`cluster::proxy`:
/// one upstream request per object for all the viewers asking). `None`: serve it from here.
async fn remote(
    state: &HttpState,
    route: &Route<'_>,
    path: &str,
    range: Option<&str>,
    ip: IpAddr,
) -> Option<Response<Body>> {
    let cluster = state.cluster.as_ref()?;
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
    Some(viewed(state, c, ip, resp))
}
