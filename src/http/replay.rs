//! The replay page (`GET`/`HEAD /replay/{c}/{id}`): the recording's video with its chat and
//! pinned questions as they happened (the logic is `assets/replay.js`), and its share card
//! (`super::cards::replay_card`: the recording's poster, absolute under `server.public_url`).
//!
//! A posted replay link is fetched by every server that shows the post within a minute, so
//! rendered pages are kept in memory ([`ReplayPages`]) for a short while: a crawler stampede
//! costs one index lookup and one poster check per page, not one per request. Entries expire
//! quickly while the show is still being recorded (its poster comes within seconds), and the
//! admin delete forgets them at once.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Response, StatusCode};

use super::cards::{self, ReplayFacts};
use super::pages::html_escape;
use super::response::{html, not_found};
use super::{Body, HttpState};
use crate::record::disk::POSTER;

const TEMPLATE: &str = include_str!("../../assets/replay.html");
/// How long a page of a finished recording is served from memory.
const FINAL_TTL: Duration = Duration::from_secs(60);
/// ... and of one still being recorded (its card changes: the poster arrives).
const LIVE_TTL: Duration = Duration::from_secs(5);
/// Pages kept at most (a few kilobytes each).
const MAX_PAGES: usize = 512;

struct Cached {
    page: Bytes,
    until: Instant,
}

/// Rendered replay pages by channel and recording. Std mutex: held to look up, insert or
/// remove, never across an await.
#[derive(Default)]
pub struct ReplayPages(Mutex<HashMap<(String, String), Cached>>);

impl ReplayPages {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Cached>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn get(&self, channel: &str, id: &str) -> Option<Bytes> {
        let map = self.map();
        let c = map.get(&(channel.to_string(), id.to_string()))?;
        (c.until > Instant::now()).then(|| c.page.clone())
    }

    fn put(&self, channel: &str, id: &str, page: Bytes, ttl: Duration) {
        let now = Instant::now();
        let mut map = self.map();
        if map.len() >= MAX_PAGES {
            map.retain(|_, c| c.until > now);
            if map.len() >= MAX_PAGES {
                map.clear();
            }
        }
        map.insert(
            (channel.to_string(), id.to_string()),
            Cached {
                page,
                until: now + ttl,
            },
        );
    }

    /// A recording was deleted: its page goes at once.
    pub fn forget(&self, channel: &str, id: &str) {
        self.map().remove(&(channel.to_string(), id.to_string()));
    }
}

/// `GET /replay/{c}/{id}`: 404 for an unknown channel or recording.
pub async fn handle(state: &HttpState, channel: &str, id: &str) -> Response<Body> {
    if state.bus.get(channel).is_none() {
        return not_found();
    }
    if let Some(page) = state.replay_pages.get(channel, id) {
        return html(StatusCode::OK, page);
    }
    let rec = match super::vod::find(state, channel, id).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let path = state.recorder.file_path(channel, id, None, POSTER);
    let poster = tokio::task::spawn_blocking(move || path.is_file())
        .await
        .unwrap_or(false);
    let card = cards::replay_card(
        &state.public_url,
        &ReplayFacts {
            channel,
            id,
            title: rec.title.as_deref(),
            started_at: &rec.started_at,
            duration_seconds: rec.duration_seconds(),
            live: rec.live(),
            poster,
        },
    );
    let page = Bytes::from(page(channel, id, &cards::card_tags(&card)));
    let ttl = if rec.live() || !poster {
        LIVE_TTL
    } else {
        FINAL_TTL
    };
    state.replay_pages.put(channel, id, page.clone(), ttl);
    html(StatusCode::OK, page)
}

fn page(channel: &str, id: &str, card: &str) -> String {
    // The card last: its text (titles) is never taken for a placeholder.
    TEMPLATE
        .replace("{{channel}}", &html_escape(channel))
        .replace("{{id}}", &html_escape(id))
        .replace("{{card}}", card)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_carries_its_card_and_names_escaped() {
        let p = page(
            "alice",
            "20261202T170000Z",
            "<meta name=\"x\" content=\"{{id}}\">\n",
        );
        assert!(p.contains("data-recording=\"20261202T170000Z\""));
        assert!(
            p.contains("<meta name=\"x\" content=\"{{id}}\">"),
            "card text kept as is"
        );
        assert!(!p.contains("{{card}}") && !p.contains("{{channel}}"));
        assert!(p.contains("id=\"pinned\""), "the pinned question's banner");
    }

    #[test]
    fn pages_expire_and_are_forgotten() {
        let pages = ReplayPages::default();
        pages.put(
            "alice",
            "a",
            Bytes::from_static(b"x"),
            Duration::from_secs(60),
        );
        pages.put("alice", "b", Bytes::from_static(b"y"), Duration::ZERO);
        assert_eq!(pages.get("alice", "a").as_deref(), Some(&b"x"[..]));
        assert!(pages.get("alice", "b").is_none(), "expired");
        pages.forget("alice", "a");
        assert!(pages.get("alice", "a").is_none());
        for i in 0..MAX_PAGES + 5 {
            pages.put("bob", &i.to_string(), Bytes::new(), Duration::from_secs(60));
        }
        assert!(pages.map().len() <= MAX_PAGES);
    }
}
