//! What an HTTP cache in front of onair (nginx `proxy_cache`, a CDN, a browser) may keep of an
//! HLS answer, as a `Cache-Control` value. onair's own headers decide it: the shipped edge
//! config (`deploy/nginx-edge.conf`) sets no validity of its own, so any cache that honours
//! HTTP caching behaves the same (docs/scaling.md).
//!
//! - Segments, parts and init segments are named uniquely per broadcast
//!   (`crate::hls::names`), so they are immutable: kept a year.
//! - Plain playlists change with every part: kept at most one part duration (whole seconds,
//!   so `no-cache` when parts are shorter than a second, and always in `ts` mode where there
//!   are no parts).
//! - A blocking-reload answer (`_HLS_msn`/`_HLS_part` reached) is what every later request
//!   with the same query may get: kept a few target durations under its full query.
//! - Errors (a part that does not exist yet, a refused or timed-out request) are `no-store`,
//!   so that no cache answers the next request with them.
//!
//! Pure: `hls` asks [`CachePolicy::header`] for each answer; table-tested in place.

use std::borrow::Cow;

use crate::config::Container;

/// A year: the usual "forever" of immutable objects.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// Target durations a blocking-reload answer may be kept.
const BLOCKED_TARGETS: f64 = 3.0;

/// The kind of HLS answer a header is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HlsAnswer {
    /// A multivariant playlist, a media playlist without a blocking query, or a blocking one
    /// answered early (the stream ended).
    Playlist,
    /// A media playlist answering `_HLS_msn`/`_HLS_part` once that segment or part exists.
    Blocked,
    /// A segment, part or init segment (200 or 206).
    Media,
    /// 404, 400, 503: not to be kept.
    Error,
}

/// The settings the policy follows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CachePolicy {
    pub container: Container,
    pub segment_seconds: f64,
    pub part_seconds: f64,
}

impl CachePolicy {
    /// The `Cache-Control` value for an answer (borrowed when it is a constant, as it is for
    /// every answer but the `max-age` ones, so that serving it allocates nothing).
    pub fn header(&self, answer: HlsAnswer) -> Cow<'static, str> {
        match answer {
            HlsAnswer::Media => Cow::Borrowed(IMMUTABLE),
            HlsAnswer::Error => Cow::Borrowed("no-store"),
            HlsAnswer::Playlist => match self.container {
                // Whole seconds only: never longer than one part.
                Container::Fmp4 if self.part_seconds >= 1.0 => Cow::Owned(format!(
                    "public, max-age={}",
                    self.part_seconds.floor() as u64
                )),
                _ => Cow::Borrowed("no-cache"),
            },
            HlsAnswer::Blocked => {
                let target = self.segment_seconds.ceil().max(1.0);
                Cow::Owned(format!(
                    "public, max-age={}",
                    (target * BLOCKED_TARGETS) as u64
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_follow_the_policy() {
        let ll = |part_seconds| CachePolicy {
            container: Container::Fmp4,
            segment_seconds: 2.0,
            part_seconds,
        };
        let ts = CachePolicy {
            container: Container::Ts,
            segment_seconds: 4.0,
            part_seconds: 0.2,
        };
        let cases = [
            (ll(0.2), HlsAnswer::Playlist, "no-cache"),
            (ll(0.999), HlsAnswer::Playlist, "no-cache"),
            (ll(1.0), HlsAnswer::Playlist, "public, max-age=1"),
            (ll(1.5), HlsAnswer::Playlist, "public, max-age=1"),
            (ts, HlsAnswer::Playlist, "no-cache"),
            (ll(0.2), HlsAnswer::Blocked, "public, max-age=6"),
            (
                CachePolicy {
                    segment_seconds: 1.5,
                    ..ll(0.5)
                },
                HlsAnswer::Blocked,
                "public, max-age=6",
            ),
            (ll(0.2), HlsAnswer::Media, IMMUTABLE),
            (ts, HlsAnswer::Media, IMMUTABLE),
            (ll(0.2), HlsAnswer::Error, "no-store"),
            (ts, HlsAnswer::Error, "no-store"),
        ];
        for (policy, answer, want) in cases {
            assert_eq!(policy.header(answer), want, "{policy:?} {answer:?}");
        }
    }

    /// A plain playlist is never kept longer than a part, nor a blocking answer longer than
    /// the segments it lists stay in the store (the window plus a few).
    #[test]
    fn lifetimes_stay_within_bounds() {
        for part in [0.1, 0.2, 0.333, 0.5, 1.0, 1.9, 2.0] {
            for seg in [0.5, 1.0, 2.0, 6.0] {
                let p = CachePolicy {
                    container: Container::Fmp4,
                    segment_seconds: seg,
                    part_seconds: part,
                };
                let age = |a| {
                    p.header(a)
                        .strip_prefix("public, max-age=")
                        .and_then(|v| v.parse::<f64>().ok())
                };
                if let Some(a) = age(HlsAnswer::Playlist) {
                    assert!(a <= part, "{part} {seg}: {a}");
                }
                let b = age(HlsAnswer::Blocked).expect("blocked answers are kept");
                assert!(b <= seg.ceil().max(1.0) * 3.0, "{part} {seg}: {b}");
            }
        }
    }
}
