//! Recordings served from the object store, for `vod` when the local copy is not there: a
//! file streamed from the store (whole or the `Range` asked for, never buffered whole), and a
//! recording's playlists rebuilt from its `meta.json` and `segments.log` objects when this
//! node's index does not know it (another node of a cluster recorded it, or it was deleted
//! locally). Read through [`crate::record::store::RecordStore`].

use std::convert::Infallible;

use futures_util::StreamExt;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;

use super::response::{byte_range, bytes_response, not_found, text, ByteRange};
use super::Body;
use crate::db::recordings::{RenditionRow, SegmentRow};
use crate::record::store::{RecordStore, StoreError, UPLOADED};
use crate::record::{disk, playlist};

fn unavailable(e: &StoreError) -> Response<Body> {
    tracing::warn!(error = %e, "VOD: object store read failed");
    super::response::json_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "the recording's storage is unavailable",
    )
}

/// A recording file from the store: 200 or 206 (`Content-Range`) or 416, with a length and
/// the body streamed as the store sends it.
pub async fn file(
    store: &RecordStore,
    channel: &str,
    id: &str,
    rel: &str,
    range: Option<&str>,
    kind: &'static str,
    cache: &'static str,
) -> Response<Body> {
    let part = match range {
        None => None,
        Some(r) => {
            let size = match store.size(channel, id, rel).await {
                Ok(s) => s,
                Err(StoreError::NotFound) => return not_found(),
                Err(e) => return unavailable(&e),
            };
            match byte_range(Some(r), size) {
                ByteRange::Full => None,
                ByteRange::Part { first, last } => Some((first, last)),
                ByteRange::Unsatisfiable => {
                    let mut r = text(StatusCode::RANGE_NOT_SATISFIABLE, "text/plain", "");
                    if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                        r.headers_mut().insert(header::CONTENT_RANGE, v);
                    }
                    return r;
                }
            }
        }
    };
    let f = match store.open(channel, id, rel, part).await {
        Ok(f) => f,
        Err(StoreError::NotFound) => return not_found(),
        Err(e) => return unavailable(&e),
    };
    metrics::counter!("onair_record_store_reads_total").increment(1);
    let (first, end) = (f.range.start, f.range.end);
    // The store's stream is not Sync, as hyper's boxed body must be: a task relays it through
    // a small channel (backpressure: it reads on as the client takes). A store error mid-body
    // ends the body short of its Content-Length: the client sees a broken transfer, never
    // wrong bytes.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<bytes::Bytes>, Infallible>>(4);
    let mut body = f.body;
    tokio::spawn(async move {
        while let Some(chunk) = body.next().await {
            match chunk {
                Ok(b) => {
                    if tx.send(Ok(Frame::data(b))).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "VOD: object store read broke off");
                    return;
                }
            }
        }
    });
    let frames = tokio_stream::wrappers::ReceiverStream::new(rx);
    let mut resp = Response::new(BodyExt::boxed(StreamBody::new(frames)));
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(end - first));
    if part.is_some() {
        *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
        if let Ok(v) = HeaderValue::from_str(&format!(
            "bytes {first}-{}/{}",
            end.saturating_sub(1),
            f.size
        )) {
            resp.headers_mut().insert(header::CONTENT_RANGE, v);
        }
    }
    resp
}

/// A recording as the store holds it: its renditions' segments and whether it is final.
pub struct Remote {
    pub renditions: Vec<(String, Vec<SegmentRow>)>,
    pub ended: bool,
}

/// The recording from its index objects, `None` when the store has no such recording.
pub async fn remote(
    store: &RecordStore,
    channel: &str,
    id: &str,
) -> Result<Option<Remote>, StoreError> {
    let meta = match store.read_all(channel, id, disk::META).await {
        Ok(m) => m,
        Err(StoreError::NotFound) => return Ok(None),
        Err(e) => return Err(e),
    };
    let Ok(meta) = serde_json::from_slice::<disk::Meta>(&meta) else {
        return Ok(None);
    };
    if meta.channel != channel || meta.id != id {
        return Ok(None);
    }
    let dir = store.dir_key(channel, id);
    let listing = store.store.list_with_delimiter(Some(&dir)).await?;
    let ended = listing
        .objects
        .iter()
        .any(|o| store.rel_of(&dir, &o.location).as_deref() == Some(UPLOADED));
    let mut renditions = Vec::new();
    for p in &listing.common_prefixes {
        let Some(r) = store.rel_of(&dir, p) else {
            continue;
        };
        if !crate::config::is_name(&r) {
            continue;
        }
        let log = match store
            .read_all(channel, id, &format!("{r}/{}", disk::LOG))
            .await
        {
            Ok(l) => l,
            Err(StoreError::NotFound) => continue,
            Err(e) => return Err(e),
        };
        let segs = disk::parse_log(&r, &String::from_utf8_lossy(&log));
        if !segs.is_empty() {
            renditions.push((r, segs));
        }
    }
    renditions.sort_by_key(|(r, _)| (r != crate::record::SOURCE, r.clone()));
    Ok(Some(Remote { renditions, ended }))
}

fn playlist_response(text: String, ended: bool) -> Response<Body> {
    let mut r = bytes_response(
        StatusCode::OK,
        "application/vnd.apple.mpegurl",
        bytes::Bytes::from(text),
    );
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(if ended {
            "public, max-age=86400"
        } else {
            "no-cache"
        }),
    );
    r
}

/// The multivariant playlist (`rendition` `None`) or a media playlist of a recording the
/// local index does not know, from the store.
pub async fn playlist(
    store: &RecordStore,
    channel: &str,
    id: &str,
    rendition: Option<&str>,
) -> Response<Body> {
    let rec = match remote(store, channel, id).await {
        Ok(Some(r)) => r,
        Ok(None) => return not_found(),
        Err(e) => return unavailable(&e),
    };
    match rendition {
        None => {
            let rows: Vec<RenditionRow> = rec
                .renditions
                .iter()
                .map(|(r, segs)| rendition_row(r, segs))
                .collect();
            playlist_response(playlist::master(&rows), rec.ended)
        }
        Some(r) => match rec.renditions.iter().find(|(name, _)| name == r) {
            Some((_, segs)) => playlist_response(playlist::media(segs, rec.ended), rec.ended),
            None => not_found(),
        },
    }
}

/// What the index's `renditions` query gives, from the segments.
fn rendition_row(rendition: &str, segs: &[SegmentRow]) -> RenditionRow {
    let bps = |bytes: i64, dur: i64| (bytes.max(0) as u64 * 8 * 90_000) / dur.max(1) as u64;
    let last = segs.last();
    RenditionRow {
        rendition: rendition.to_string(),
        codecs: last.map(|s| s.codecs.clone()).unwrap_or_default(),
        resolution: last.map(|s| s.resolution.clone()).unwrap_or_default(),
        peak_bps: segs
            .iter()
            .map(|s| bps(s.bytes, s.duration))
            .max()
            .unwrap_or(0),
        average_bps: bps(
            segs.iter().map(|s| s.bytes).sum(),
            segs.iter().map(|s| s.duration).sum(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bandwidth_from_segments() {
        let seg = |bytes, duration| SegmentRow {
            rendition: "source".into(),
            seq: 1,
            file: "000001.m4s".into(),
            init: "init-1.mp4".into(),
            duration,
            program_time: String::new(),
            discontinuity: false,
            bytes,
            codecs: "avc1".into(),
            resolution: "2x2".into(),
        };
        let r = rendition_row("source", &[seg(100_000, 180_000), seg(300_000, 180_000)]);
        assert_eq!((r.peak_bps, r.average_bps), (1_200_000, 800_000));
    }
}
