//! Recordings over HTTP: the list (`GET /api/channels/{c}/recordings`), each recording's chat
//! log (`…/recordings/{id}/chat`), its HLS (`/vod/{c}/{id}/master.m3u8`, media playlists,
//! segments and init segments from disk with `Range`), its poster and the admin delete (called
//! from `admin`); the replay page is `super::replay`. The index comes from
//! `db::recordings`, files from [`crate::record::Recorder::file_path`]; names are checked by
//! the router, so no path is built from anything else. What is not on this node (pruned after
//! upload, or recorded by another node) comes from the object store through [`super::vod_store`].

use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use serde::Serialize;

use super::request::Req;
use super::response::{bytes_response, json, json_error, not_found, ranged};
use super::router::Route;
use super::{Body, HttpState};
use crate::db::recording_pins;
use crate::db::recordings::{self, Recording};
use crate::db::DbError;
use crate::record::{playlist, RecordError};

const PLAYLIST: &str = "application/vnd.apple.mpegurl";
/// Listed files never change: a segment is written once, fsynced, then listed.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// A finished recording's playlists do not change either (until it is deleted).
const FINAL: &str = "public, max-age=86400";

/// One recording as the API lists it.
#[derive(Debug, Serialize)]
pub struct RecordingView {
    pub id: String,
    pub started_at: String,
    pub ended_at: Option<String>,
    pub duration_seconds: f64,
    pub bytes: i64,
    pub title: Option<String>,
    pub live: bool,
    /// `/vod/{c}/{id}/master.m3u8`
    pub playlist: String,
    /// `/replay/{c}/{id}`
    pub replay: String,
    /// `/vod/{c}/{id}/poster.jpg` when the recording has a poster, else null.
    pub thumbnail: Option<String>,
}

fn db_error(e: &DbError) -> Response<Body> {
    tracing::error!(error = %e, "recordings: database request failed");
    json_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "recordings are unavailable",
    )
}

pub(super) async fn find(
    state: &HttpState,
    c: &str,
    id: &str,
) -> Result<Recording, Response<Body>> {
    if state.bus.get(c).is_none() {
        return Err(not_found());
    }
    let (c, i) = (c.to_string(), id.to_string());
    match state
        .recorder
        .db
        .call(move |conn| recordings::get(conn, &c, &i))
        .await
    {
        Ok(Some(r)) => Ok(r),
        Ok(None) => Err(not_found()),
        Err(e) => Err(db_error(&e)),
    }
}

fn with_cache(mut r: Response<Body>, cache: &'static str) -> Response<Body> {
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    r
}

pub async fn handle(state: &HttpState, route: Route<'_>, req: Req) -> Response<Body> {
    match route {
        Route::Recordings(c) => list(state, c).await,
        Route::RecordingChat(c, id) => chat(state, c, id).await,
        Route::VodMaster(c, id) => {
            let rec = match find(state, c, id).await {
                Ok(r) => r,
                Err(r) => return from_store(state, r, c, id, None).await,
            };
            let (cc, i) = (c.to_string(), id.to_string());
            match state
                .recorder
                .db
                .call(move |conn| recordings::renditions(conn, &cc, &i))
                .await
            {
                Ok(rs) => playlist_response(playlist::master(&rs), rec.live()),
                Err(e) => db_error(&e),
            }
        }
        Route::VodPlaylist(c, id, r) => {
            let rec = match find(state, c, id).await {
                Ok(r) => r,
                Err(resp) => return from_store(state, resp, c, id, Some(r)).await,
            };
            let (cc, i, rr) = (c.to_string(), id.to_string(), r.to_string());
            match state
                .recorder
                .db
                .call(move |conn| recordings::segments(conn, &cc, &i, &rr))
                .await
            {
                Ok(segs) if segs.is_empty() && r != crate::record::SOURCE => not_found(),
                Ok(segs) => playlist_response(playlist::media(&segs, !rec.live()), rec.live()),
                Err(e) => db_error(&e),
            }
        }
        Route::VodFile(c, id, rendition, file) => {
            if state.bus.get(c).is_none() {
                return not_found();
            }
            let path = state.recorder.file_path(c, id, rendition, file);
            let local = tokio::task::spawn_blocking(move || std::fs::read(path)).await;
            let (kind, cache) = if file.ends_with(".m4s") {
                ("video/iso.segment", IMMUTABLE)
            } else if file.ends_with(".mp4") {
                ("video/mp4", IMMUTABLE)
            } else {
                ("image/jpeg", "public, max-age=300")
            };
            let range = req
                .parts
                .headers
                .get(header::RANGE)
                .and_then(|v| v.to_str().ok());
            match (local, &state.recorder.uploader) {
                (Ok(Ok(d)), _) => with_cache(ranged(bytes::Bytes::from(d), kind, range), cache),
                // Not on this node's disk (pruned after upload, or recorded by another node).
                (_, Some(up)) => {
                    let rel = match rendition {
                        Some(r) => format!("{r}/{file}"),
                        None => file.to_string(),
                    };
                    super::vod_store::file(&up.store, c, id, &rel, range, kind, cache).await
                }
                _ => not_found(),
            }
        }
        _ => not_found(),
    }
}

/// A recording this node's index does not know may still be in the object store.
async fn from_store(
    state: &HttpState,
    resp: Response<Body>,
    c: &str,
    id: &str,
    rendition: Option<&str>,
) -> Response<Body> {
    match &state.recorder.uploader {
        Some(up) if resp.status() == StatusCode::NOT_FOUND && state.bus.get(c).is_some() => {
            super::vod_store::playlist(&up.store, c, id, rendition).await
        }
        _ => resp,
    }
}

fn playlist_response(text: String, live: bool) -> Response<Body> {
    let r = bytes_response(StatusCode::OK, PLAYLIST, bytes::Bytes::from(text));
    with_cache(r, if live { "no-cache" } else { FINAL })
}

async fn list(state: &HttpState, c: &str) -> Response<Body> {
    if state.bus.get(c).is_none() {
        return not_found();
    }
    let cc = c.to_string();
    let all = match state
        .recorder
        .db
        .call(move |conn| recordings::list(conn, &cc))
        .await
    {
        Ok(a) => a,
        Err(e) => return db_error(&e),
    };
    // Which have a poster: a stat per recording, off the runtime.
    let posters: Vec<std::path::PathBuf> = all
        .iter()
        .map(|r| state.recorder.file_path(c, &r.id, None, "poster.jpg"))
        .collect();
    let has = tokio::task::spawn_blocking(move || {
        posters.iter().map(|p| p.is_file()).collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    let views: Vec<RecordingView> = all
        .into_iter()
        .enumerate()
        .map(|(i, r)| RecordingView {
            playlist: format!("/vod/{c}/{}/master.m3u8", r.id),
            replay: format!("/replay/{c}/{}", r.id),
            thumbnail: has
                .get(i)
                .copied()
                .unwrap_or(false)
                .then(|| format!("/vod/{c}/{}/poster.jpg", r.id)),
            duration_seconds: (r.duration_seconds() * 1000.0).round() / 1000.0,
            live: r.live(),
            id: r.id,
            started_at: r.started_at,
            ended_at: r.ended_at,
            bytes: r.bytes,
            title: r.title,
        })
        .collect();
    json(StatusCode::OK, &serde_json::json!({ "recordings": views }))
}

async fn chat(state: &HttpState, c: &str, id: &str) -> Response<Body> {
    if let Err(r) = find(state, c, id).await {
        return r;
    }
    let (cc, i) = (c.to_string(), id.to_string());
    let (rows, pins) = match state
        .recorder
        .db
        .call(move |conn| {
            Ok((
                recordings::chat(conn, &cc, &i)?,
                recording_pins::list(conn, &cc, &i)?,
            ))
        })
        .await
    {
        Ok(r) => r,
        Err(e) => return db_error(&e),
    };
    let messages: Vec<serde_json::Value> = rows
        .into_iter()
        .filter_map(|row| {
            let mut v: serde_json::Value = serde_json::from_str(&row.message).ok()?;
            v["offset_seconds"] = serde_json::json!(row.offset_ms as f64 / 1000.0);
            Some(v)
        })
        .collect();
    // Each time a question was on screen: the question as it was when pinned, from
    // `offset_seconds` until `until_seconds` (null: to the end).
    let questions: Vec<serde_json::Value> = recording_pins::periods(&pins)
        .into_iter()
        .filter_map(|p| {
            let mut v: serde_json::Value = serde_json::from_str(&p.question).ok()?;
            v["offset_seconds"] = serde_json::json!(p.from_ms as f64 / 1000.0);
            v["until_seconds"] = serde_json::json!(p.until_ms.map(|u| u as f64 / 1000.0));
            Some(v)
        })
        .collect();
    json(
        StatusCode::OK,
        &serde_json::json!({ "messages": messages, "questions": questions }),
    )
}

/// `DELETE /api/admin/channels/{c}/recordings/{id}` (authorized by `admin`).
pub async fn delete(state: &HttpState, c: &str, id: &str) -> Response<Body> {
    if state.bus.get(c).is_none() {
        return not_found();
    }
    let deleted = state.recorder.delete(c, id).await;
    state.replay_pages.forget(c, id);
    match deleted {
        Ok(()) => json(StatusCode::OK, &serde_json::json!({ "deleted": id })),
        Err(RecordError::NotFound) => not_found(),
        Err(e @ RecordError::Live) => json_error(StatusCode::CONFLICT, &e.to_string()),
        Err(e) => {
            tracing::error!(channel = %c, recording = %id, error = %e, "recording not deleted");
            json_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the recording could not be deleted",
            )
        }
    }
}
