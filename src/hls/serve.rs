//! HLS requests that may wait: blocking playlist reloads (`_HLS_msn`, `_HLS_part`), delta
//! updates (`_HLS_skip`) and requests for the preload-hinted part (RFC 8216bis 6.2.5). A
//! waiting request awaits the rendition's `watch` channel, so it is answered the moment the
//! part lands, never by polling. HTTP calls these; the parsing of the query is a pure function.

use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::store::{HlsStore, Lookup, MediaName, Position};
use crate::config::Container;

/// What a playlist request asks for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PlaylistQuery {
    pub msn: Option<u64>,
    pub part: Option<u64>,
    pub skip: bool,
}

/// Why an HLS request was not answered with the object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServeError {
    #[error("not found")]
    NotFound,
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    #[error("the requested part did not appear in time")]
    Timeout,
}

impl From<Lookup> for ServeError {
    fn from(_: Lookup) -> Self {
        ServeError::NotFound
    }
}

impl PlaylistQuery {
    /// Parses `_HLS_msn`, `_HLS_part` and `_HLS_skip` from a query string; other parameters
    /// are ignored (players add cache busters).
    pub fn parse(query: Option<&str>) -> Result<PlaylistQuery, ServeError> {
        let mut q = PlaylistQuery::default();
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let num = || {
                v.parse::<u64>()
                    .map_err(|_| ServeError::BadRequest("_HLS_msn and _HLS_part take a number"))
            };
            match k {
                "_HLS_msn" => q.msn = Some(num()?),
                "_HLS_part" => q.part = Some(num()?),
                "_HLS_skip" => q.skip = v == "YES" || v == "v2",
                _ => {}
            }
        }
        if q.part.is_some() && q.msn.is_none() {
            return Err(ServeError::BadRequest("_HLS_part without _HLS_msn"));
        }
        Ok(q)
    }
}

/// How long a blocking request may wait: three target durations, as the spec suggests.
fn block_limit(store: &HlsStore) -> Duration {
    Duration::from_secs_f64(store.segment_seconds().ceil().max(1.0) * 3.0)
}

/// Whether a position satisfies `_HLS_msn=msn[&_HLS_part=part]`.
pub fn reached(p: &Position, msn: u64, part: Option<u64>) -> bool {
    match part {
        // Part `part` of segment `msn` exists (or the segment is complete).
        Some(part) => p.msn > msn || (p.msn == msn && p.parts > part),
        // Segment `msn` is complete.
        None => p.msn > msn,
    }
}

/// Waits until `ready` holds for the rendition's position, the stream ends, or `limit` passes.
async fn wait_for(
    store: &HlsStore,
    channel: &str,
    rendition: &str,
    limit: Duration,
    ready: impl Fn(&Position) -> bool,
) -> Result<(), ServeError> {
    let mut rx = store.watch(channel, rendition)?;
    let deadline = Instant::now() + limit;
    loop {
        {
            let p = rx.borrow_and_update();
            if ready(&p) || p.ended {
                return Ok(());
            }
        }
        match tokio::time::timeout_at(deadline, rx.changed()).await {
            Ok(Ok(())) => continue,
            Ok(Err(_)) => return Err(ServeError::NotFound),
            Err(_) => return Err(ServeError::Timeout),
        }
    }
}

/// A media playlist, waiting first if the query asks for a future part or segment.
pub async fn media_playlist(
    store: &HlsStore,
    channel: &str,
    rendition: &str,
    q: PlaylistQuery,
) -> Result<Bytes, ServeError> {
    if let (Some(msn), Container::Fmp4) = (q.msn, store.container()) {
        let now = *store.watch(channel, rendition)?.borrow();
        // The spec's limit: at most two segments ahead of the last one listed.
        if msn > now.msn + 1 {
            return Err(ServeError::BadRequest("_HLS_msn is too far ahead"));
        }
        wait_for(store, channel, rendition, block_limit(store), |p| {
            reached(p, msn, q.part)
        })
        .await?;
    }
    Ok(store.playlist(channel, rendition, q.skip)?)
}

/// A segment, part or init segment with its content type. A request for the part the playlist
/// hints at (`EXT-X-PRELOAD-HINT`) waits for it.
pub async fn media_object(
    store: &HlsStore,
    channel: &str,
    rendition: &str,
    name: &str,
) -> Result<(Bytes, &'static str), ServeError> {
    let media = MediaName::parse(name).ok_or(ServeError::NotFound)?;
    let content_type = match (media, store.container()) {
        (MediaName::Segment(_), Container::Ts) => "video/mp2t",
        (MediaName::Segment(_), Container::Fmp4) => "video/iso.segment",
        (m, _) => m.content_type(),
    };
    match store.media(channel, rendition, media) {
        Ok(b) => return Ok((b, content_type)),
        Err(Lookup::NoSegment) => {}
        Err(e) => return Err(e.into()),
    }
    let MediaName::Part(msn, part) = media else {
        return Err(ServeError::NotFound);
    };
    let now = *store.watch(channel, rendition)?.borrow();
    // Only the hinted part (the next one) is worth waiting for.
    if !(msn == now.msn && part == now.parts) {
        return Err(ServeError::NotFound);
    }
    wait_for(store, channel, rendition, block_limit(store), |p| {
        reached(p, msn, Some(part))
    })
    .await?;
    Ok((store.media(channel, rendition, media)?, content_type))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_queries() {
        let cases: Vec<(Option<&str>, Result<PlaylistQuery, ServeError>)> = vec![
            (None, Ok(PlaylistQuery::default())),
            (
                Some("_HLS_msn=12&_HLS_part=3"),
                Ok(PlaylistQuery {
                    msn: Some(12),
                    part: Some(3),
                    skip: false,
                }),
            ),
            (
                Some("_HLS_msn=4&_HLS_skip=YES&x=1"),
                Ok(PlaylistQuery {
                    msn: Some(4),
                    part: None,
                    skip: true,
                }),
            ),
            (
                Some("_HLS_part=3"),
                Err(ServeError::BadRequest("_HLS_part without _HLS_msn")),
            ),
            (
                Some("_HLS_msn=abc"),
                Err(ServeError::BadRequest(
                    "_HLS_msn and _HLS_part take a number",
                )),
            ),
        ];
        for (q, want) in cases {
            assert_eq!(PlaylistQuery::parse(q), want, "{q:?}");
        }
    }

    #[test]
    fn reached_follows_the_spec() {
        let p = Position {
            msn: 5,
            parts: 2,
            ended: false,
            version: 1,
        };
        assert!(reached(&p, 4, None));
        assert!(!reached(&p, 5, None));
        assert!(reached(&p, 5, Some(1)));
        assert!(!reached(&p, 5, Some(2)));
        assert!(reached(&p, 4, Some(9)));
        assert!(!reached(&p, 6, Some(0)));
    }
}
