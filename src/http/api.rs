//! The public JSON API and the operational endpoints: `/api/channels` (each channel's live
//! state, viewers, renditions), `/healthz`, and `/metrics` (Prometheus text, rendered by
//! `crate::metrics` from the bus, store, chat, announce and transcode counters).

use bytes::Bytes;
use http::{Response, StatusCode};
use serde::Serialize;

use super::request::Req;
use super::response::{bytes_response, json, json_error, not_found, text};
use super::router::Route;
use super::{Body, HttpState};
use crate::hls::RenditionSummary;

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
    /// Ladder renditions this stream does not get (at or above the source's height or
    /// bitrate), each with the reason and the rendition serving its viewers instead.
    pub skipped: Vec<crate::transcode::ladder::Skipped>,
}

/// `GET /api/channels[/{c}]`, `/healthz`, `/metrics`.
pub async fn handle(state: &HttpState, route: Route<'_>, _req: Req) -> Response<Body> {
    match route {
        Route::Healthz => match &state.cluster {
            // Still serving its own viewers: 200, with the detail for whoever reads it.
            Some(c) if !c.online() => text(
                StatusCode::OK,
                "text/plain; charset=utf-8",
                "degraded: redis unreachable (cluster state not shared; per-node chat)\n",
            ),
            _ => text(StatusCode::OK, "text/plain; charset=utf-8", "ok\n"),
        },
        Route::Metrics => {
            let body = crate::metrics::render(&crate::metrics::Sources {
                bus: state.bus.clone(),
                store: state.store.clone(),
                announce: state.announce.clone(),
                chat: state.chat.clone(),
                transcoder: state.transcoder.clone(),
                cluster: state.cluster.as_ref().map(|c| c.status()),
            });
            bytes_response(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                Bytes::from(body),
            )
        }
        Route::Channels => {
            let all: Vec<ChannelView> = state
                .bus
                .all()
                .iter()
                .filter_map(|c| channel_view(state, c.name.as_str()))
                .collect();
            json(StatusCode::OK, &all)
        }
        Route::Channel(c) => match channel_view(state, c) {
            Some(v) => json(StatusCode::OK, &v),
            None => json_error(StatusCode::NOT_FOUND, "no such channel"),
        },
        _ => not_found(),
    }
}

/// One channel as the API shows it; `None` for a channel that does not exist.
pub fn channel_view(state: &HttpState, name: &str) -> Option<ChannelView> {
    let bus = state.bus.get(name)?;
    let publisher = bus.publisher();
    let details = state.store.renditions(name);
    let remote = match publisher {
        Some(_) => None,
        None => state.cluster.as_ref().and_then(|c| c.remote_origin(name)),
    };
    let live = publisher.is_some() || remote.is_some();
    Some(ChannelView {
        name: name.to_string(),
        live,
        viewers: state.chat.viewers(name),
        renditions: details.iter().map(|r| r.name.clone()).collect(),
        started_at: publisher
            .map(|p| p.live_since.to_rfc3339())
            .or_else(|| remote.as_ref().map(|o| o.started_at.clone())),
        playlist: (!details.is_empty() || remote.is_some())
            .then(|| format!("/hls/{name}/master.m3u8")),
        details,
        degraded: state
            .transcoder
            .as_ref()
            .map(|t| t.degraded(name))
            .unwrap_or_default(),
        skipped: state
            .transcoder
            .as_ref()
            .map(|t| t.skipped(name))
            .unwrap_or_default(),
    })
}
