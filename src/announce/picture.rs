//! The picture of a post: the channel's live thumbnail (`crate::transcode::thumbnails`), as
//! bytes for the targets that upload it (Mastodon media, Bluesky blobs) and as its absolute URL
//! for those that link it (webhooks, Discord embeds). A go-live post waits for the broadcast's
//! first thumbnail up to `announce.picture_wait_seconds` after going live (counted from the
//! go-live, so retries do not wait again); an "ended" or replay post takes the latest one.
//! No picture is never an error: the text goes out alone.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};

use super::message::{AnnounceKind, Announcement};
use crate::http::cards::thumb_url;
use crate::transcode::thumbnails::Thumbnails;

/// A post's picture.
#[derive(Debug, Clone)]
pub struct Picture {
    pub jpeg: Bytes,
    /// Absolute, under `server.public_url` (with the picture's version, so it is this one).
    pub url: String,
    /// Alt text for uploads.
    pub alt: String,
    pub width: u32,
    pub height: u32,
}

/// Where pictures come from: set once the thumbnails exist (after the announcer starts).
#[derive(Clone, Default)]
pub struct Pictures {
    thumbnails: Arc<OnceLock<Arc<Thumbnails>>>,
    public_url: Arc<str>,
    wait: Duration,
}

impl Pictures {
    pub fn new(public_url: &str, wait: Duration) -> Self {
        Self {
            thumbnails: Arc::default(),
            public_url: Arc::from(public_url.trim_end_matches('/')),
            wait,
        }
    }

    pub fn set(&self, t: Arc<Thumbnails>) {
        let _ = self.thumbnails.set(t);
    }

    /// The picture for `a`, if there is one (in time).
    pub async fn for_post(&self, a: &Announcement) -> Option<Picture> {
        let thumbs = self.thumbnails.get()?;
        let t = match a.kind {
            AnnounceKind::Live => {
                let since = a.started_at?;
                let within = remaining(since, self.wait, Utc::now());
                thumbs.wait_since(&a.channel, since, within).await?
            }
            AnnounceKind::Ended => thumbs.latest(&a.channel)?,
            AnnounceKind::Test | AnnounceKind::CrossPost => return None,
        };
        Some(Picture {
            jpeg: t.jpeg.clone(),
            url: thumb_url(&self.public_url, &a.channel, Some(&t.etag)),
            alt: a.picture_alt(),
            width: t.width,
            height: t.height,
        })
    }
}

/// What is left of `wait` after `since`, at `now`.
fn remaining(since: DateTime<Utc>, wait: Duration, now: DateTime<Utc>) -> Duration {
    let elapsed = (now - since).to_std().unwrap_or(Duration::ZERO);
    wait.saturating_sub(elapsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_counts_from_the_go_live() {
        let t0 = DateTime::from_timestamp(1_700_000_000, 0).expect("time");
        let w = Duration::from_secs(8);
        assert_eq!(remaining(t0, w, t0), w);
        assert_eq!(
            remaining(t0, w, t0 + chrono::Duration::seconds(3)),
            Duration::from_secs(5)
        );
        assert_eq!(
            remaining(t0, w, t0 + chrono::Duration::seconds(30)),
            Duration::ZERO
        );
        // A clock step backwards never waits longer than the whole wait.
        assert_eq!(remaining(t0, w, t0 - chrono::Duration::seconds(5)), w);
    }
}
