//! HLS requests that may wait: blocking playlist reloads (`_HLS_msn`, `_HLS_part`), delta
//! updates (`_HLS_skip`) and requests for the preload-hinted part (RFC 8216bis 6.2.5). A
//! waiting request awaits the rendition's `watch` channel, so it is answered the moment the
//! part lands, never by polling. Requests that can never be answered in time (too far ahead,
//! `_HLS_part` without `_HLS_msn`) are refused at once. HTTP calls these and says from the
//! [`PlaylistAnswer`] how long a cache may keep the answer; the parsing of the query and the
//! limits are pure functions.

use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::names::{MediaKind, MediaName};
use super::store::{HlsStore, Lookup, Position};
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
pub fn block_limit(segment_seconds: f64) -> Duration {
    Duration::from_secs_f64(segment_seconds.ceil().max(1.0) * 3.0)
}

/// RFC 8216bis 6.2.5.2's Advance Part Limit: how many parts past the last one a request may
/// ask for (three seconds' worth of parts, at least three).
pub fn advance_part_limit(part_seconds: f64) -> u64 {
    if part_seconds < 1.0 {
        (3.0 / part_seconds.max(0.01)).floor() as u64
    } else {
        3
    }
}

/// Whether a blocking request for `msn`/`part` is beyond what the spec lets a client ask for
/// at position `now` (answered at once with 400): `_HLS_msn` more than two past the last
/// complete segment, or `_HLS_part` more than the advance part limit past the last part.
pub fn too_far_ahead(now: &Position, msn: u64, part: Option<u64>, part_limit: u64) -> bool {
    // The last complete segment is `now.msn - 1`; the open one is `now.msn`.
    if msn > now.msn + 1 {
        return true;
    }
    let Some(part) = part else { return false };
    // Parts ahead of the last available one (`now.parts - 1` of segment `now.msn`); for the
    // next segment at least `part + 1` (the open segment's remaining parts are unknown).
    let ahead = if msn == now.msn {
        (part + 1).saturating_sub(now.parts)
    } else if msn == now.msn + 1 {
        part + 1
    } else {
        0
    };
    ahead > part_limit
}

/// What a media playlist request got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlaylistAnswer {
    pub body: Bytes,
    /// It answered a blocking request whose segment or part now exists: the same query will
    /// always be answered with at least this, so a cache may keep it (under its full query)
    /// for a few target durations. Plain requests, and blocking ones answered early because
    /// the stream ended, are `false`.
    pub reached: bool,
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

/// Waits until `ready` holds for the rendition's position (`true`), the stream ends (`false`),
/// or `limit` passes.
async fn wait_for(
    store: &HlsStore,
    channel: &str,
    rendition: &str,
    limit: Duration,
    ready: impl Fn(&Position) -> bool,
) -> Result<bool, ServeError> {
    let mut rx = store.watch(channel, rendition)?;
    let deadline = Instant::now() + limit;
    loop {
        {
            let p = rx.borrow_and_update();
            if ready(&p) {
                return Ok(true);
            }
            if p.ended {
                return Ok(false);
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
) -> Result<PlaylistAnswer, ServeError> {
    let mut got = false;
    if let (Some(msn), Container::Fmp4) = (q.msn, store.container()) {
        let now = *store.watch(channel, rendition)?.borrow();
        if too_far_ahead(&now, msn, q.part, advance_part_limit(store.part_seconds())) {
            return Err(ServeError::BadRequest(
                "_HLS_msn or _HLS_part is too far ahead",
            ));
        }
        let limit = block_limit(store.segment_seconds());
        got = wait_for(store, channel, rendition, limit, |p| {
            reached(p, msn, q.part)
        })
        .await?;
    }
    Ok(PlaylistAnswer {
        body: store.playlist(channel, rendition, q.skip)?,
        reached: got,
    })
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
    let content_type = match (media.kind, store.container()) {
        (MediaKind::Segment(_), Container::Ts) => "video/mp2t",
        (MediaKind::Segment(_), Container::Fmp4) => "video/iso.segment",
        _ => media.content_type(),
    };
    match store.media(channel, rendition, media) {
        Ok(b) => return Ok((b, content_type)),
        Err(Lookup::NoSegment) => {}
        Err(e) => return Err(e.into()),
    }
    let MediaKind::Part(msn, part) = media.kind else {
        return Err(ServeError::NotFound);
    };
    let now = *store.watch(channel, rendition)?.borrow();
    // Only the hinted part (the next one) is worth waiting for.
    if !(msn == now.msn && part == now.parts) {
        return Err(ServeError::NotFound);
    }
    let limit = block_limit(store.segment_seconds());
    wait_for(store, channel, rendition, limit, |p| {
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
    fn too_far_ahead_follows_the_spec() {
        let p = Position {
            msn: 5,
            parts: 2,
            ended: false,
            version: 1,
        };
        // 0.2 s parts: 15 parts ahead allowed; 1 s parts: 3.
        assert_eq!(advance_part_limit(0.2), 15);
        assert_eq!(advance_part_limit(0.333), 9);
        assert_eq!(advance_part_limit(1.0), 3);
        assert_eq!(advance_part_limit(2.0), 3);
        let cases = [
            // (msn, part, limit, refused)
            (3, None, 3, false),
            (5, None, 3, false),
            (6, None, 3, false),
            (7, None, 3, true),
            (1000, None, 3, true),
            (5, Some(1), 3, false),
            (5, Some(4), 3, false),
            (5, Some(5), 3, true),
            (6, Some(2), 3, false),
            (6, Some(3), 3, true),
            (6, Some(14), 15, false),
            (4, Some(99), 3, false),
            (7, Some(0), 15, true),
        ];
        for (msn, part, limit, want) in cases {
            assert_eq!(
                too_far_ahead(&p, msn, part, limit),
                want,
                "{msn} {part:?} {limit}"
            );
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
