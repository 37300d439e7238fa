//! HLS from the origin node: a node where a channel is not live answers its playlists, parts
//! and segments by fetching them from the node the registry names. Concurrent requests for one
//! object (path and query, so each blocking reload `_HLS_msn`/`_HLS_part` is its own object)
//! share one upstream request, and the answer is held: media objects for the window (their
//! names are never reused within it), playlists for about one part, errors briefly.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::OnceCell;
use tracing::debug;

/// How long an upstream request may take: above a blocking reload's wait (three target
/// durations at most in practice).
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(20);
/// Errors are held this long, so that a failing origin is not asked once per viewer.
const ERROR_HOLD: Duration = Duration::from_millis(500);

/// An upstream answer as the viewers get it.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// 502 when the origin could not be reached.
    pub status: u16,
    pub content_type: Option<String>,
    pub cache_control: Option<String>,
    pub body: Bytes,
}

impl Fetched {
    fn bad_gateway() -> Self {
        Fetched {
            status: 502,
            content_type: None,
            cache_control: None,
            body: Bytes::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProxyStats {
    /// Upstream requests made.
    pub requests: u64,
    /// Requests answered from a held or in-flight upstream answer.
    pub shared: u64,
}

struct Slot {
    cell: Arc<OnceCell<(Fetched, Instant)>>,
    made: Instant,
}

pub(super) struct Proxy {
    client: reqwest::Client,
    /// How long media objects are held (the playlist window).
    window: Duration,
    /// How long a plain playlist is held (about one part).
    playlist_hold: Duration,
    /// Std mutex: looked up and inserted into, never held across an await.
    slots: Mutex<HashMap<String, Slot>>,
    requests: AtomicU64,
    shared: AtomicU64,
}

impl Proxy {
    pub fn new(window: Duration, part_seconds: f64) -> Self {
        let client = reqwest::Client::builder()
            .timeout(UPSTREAM_TIMEOUT)
            .connect_timeout(Duration::from_secs(2))
            .build()
            .unwrap_or_default();
        Proxy {
            client,
            window,
            playlist_hold: Duration::from_secs_f64(part_seconds.clamp(0.1, 1.0)),
            slots: Mutex::new(HashMap::new()),
            requests: AtomicU64::new(0),
            shared: AtomicU64::new(0),
        }
    }

    pub fn stats(&self) -> ProxyStats {
        ProxyStats {
            requests: self.requests.load(Ordering::Relaxed),
            shared: self.shared.load(Ordering::Relaxed),
        }
    }

    fn hold(&self, key: &str, f: &Fetched) -> Duration {
        if f.status != 200 {
            return ERROR_HOLD;
        }
        let path = key.split('?').next().unwrap_or(key);
        if path.ends_with(".m3u8") {
            if key.contains("_HLS_msn") {
                // A blocking reload's answer is final for its query.
                self.window.min(Duration::from_secs(30))
            } else {
                self.playlist_hold
            }
        } else {
            self.window
        }
    }

    /// `base` + `path_and_query`, once for every viewer asking meanwhile.
    pub async fn fetch(&self, base: &str, path_and_query: &str) -> Fetched {
        let key = format!("{base}{path_and_query}");
        let now = Instant::now();
        let cell = {
            let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
            let fresh = |s: &Slot| match s.cell.get() {
                Some((_, until)) => *until > now,
                // In flight; a stuck one is given up with the request's own timeout.
                None => now.saturating_duration_since(s.made) < UPSTREAM_TIMEOUT,
            };
            if slots.len() > 4096 {
                slots.retain(|_, s| fresh(s));
            }
            match slots.get(&key) {
                Some(s) if fresh(s) => {
                    self.shared.fetch_add(1, Ordering::Relaxed);
                    s.cell.clone()
                }
                _ => {
                    let cell = Arc::new(OnceCell::new());
                    slots.insert(
                        key.clone(),
                        Slot {
                            cell: cell.clone(),
                            made: now,
                        },
                    );
                    cell
                }
            }
        };
        let (f, _) = cell
            .get_or_init(|| async {
                self.requests.fetch_add(1, Ordering::Relaxed);
                let f = self.upstream(&key).await;
                let until = Instant::now() + self.hold(path_and_query, &f);
                (f, until)
            })
            .await;
        f.clone()
    }

    async fn upstream(&self, url: &str) -> Fetched {
        let resp = match self.client.get(url).send().await {
            Ok(r) => r,
            Err(e) => {
                debug!(error = %e, "origin node unreachable for HLS");
                return Fetched::bad_gateway();
            }
        };
        let status = resp.status().as_u16();
        let header = |name: reqwest::header::HeaderName| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let content_type = header(reqwest::header::CONTENT_TYPE);
        let cache_control = header(reqwest::header::CACHE_CONTROL);
        match resp.bytes().await {
            Ok(body) => Fetched {
                status,
                content_type,
                cache_control,
                body,
            },
            Err(_) => Fetched::bad_gateway(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn playlists_are_held_briefly_media_for_the_window_and_errors_shortly() {
        let p = Proxy::new(Duration::from_secs(12), 0.5);
        let ok = Fetched {
            status: 200,
            content_type: None,
            cache_control: None,
            body: Bytes::new(),
        };
        assert_eq!(
            p.hold("/hls/a/source/index.m3u8", &ok),
            Duration::from_millis(500)
        );
        assert_eq!(
            p.hold("/hls/a/source/index.m3u8?_HLS_msn=4&_HLS_part=1", &ok),
            Duration::from_secs(12)
        );
        assert_eq!(
            p.hold("/hls/a/source/seg4.m4s", &ok),
            Duration::from_secs(12)
        );
        assert_eq!(
            p.hold("/hls/a/source/seg4.m4s", &Fetched::bad_gateway()),
            ERROR_HOLD
        );
    }
}
