//! Share cards: the Open Graph and Twitter card tags that make a posted link preview the
//! stream on X, Mastodon, Bluesky and Discord (`og:title`, `og:description`, `og:url`,
//! `og:image` absolute under `server.public_url`, `twitter:card` = `summary_large_image`).
//! [`card_tags`] renders them for any page; [`watch_card`] is the watch page's card (the live
//! thumbnail), [`replay_card`] the replay page's (the recording's poster); [`Titles`] holds the
//! channel titles they name, swapped on reload. Everything here is built from memory (a few
//! microseconds), so the minute-long crawler stampede after a post costs nothing.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use super::pages::html_escape;
use crate::config::ChannelConfig;

/// What a card shows. `image` must be absolute (crawlers fetch it from elsewhere).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Card {
    pub title: String,
    pub description: String,
    /// The page's canonical absolute URL.
    pub url: String,
    /// Absolute URL of a picture, 2:1 or wider is best (X: 300x157 up to 4096x4096, < 5 MB).
    pub image: String,
    /// Alt text of the picture.
    pub image_alt: String,
    /// Pixel size of the picture, when known (lets crawlers lay out before fetching it).
    pub image_size: Option<(u32, u32)>,
}

/// The `<meta>` tags of `card`, one per line, every value HTML-escaped: goes in `<head>`.
pub fn card_tags(card: &Card) -> String {
    let mut tags: Vec<(&str, &str, String)> = vec![
        ("name", "description", card.description.clone()),
        ("property", "og:type", "website".into()),
        ("property", "og:site_name", "onair".into()),
        ("property", "og:title", card.title.clone()),
        ("property", "og:description", card.description.clone()),
        ("property", "og:url", card.url.clone()),
        ("property", "og:image", card.image.clone()),
    ];
    if card.image.starts_with("https://") {
        tags.push(("property", "og:image:secure_url", card.image.clone()));
    }
    if let Some((w, h)) = card.image_size {
        tags.push(("property", "og:image:width", w.to_string()));
        tags.push(("property", "og:image:height", h.to_string()));
    }
    tags.extend([
        ("property", "og:image:alt", card.image_alt.clone()),
        ("name", "twitter:card", "summary_large_image".into()),
        ("name", "twitter:title", card.title.clone()),
        ("name", "twitter:description", card.description.clone()),
        ("name", "twitter:image", card.image.clone()),
        ("name", "twitter:image:alt", card.image_alt.clone()),
    ]);
    let mut out = format!(
        "<link rel=\"canonical\" href=\"{}\">\n",
        html_escape(&card.url)
    );
    for (attr, key, value) in tags {
        out.push_str(&format!(
            "<meta {attr}=\"{key}\" content=\"{}\">\n",
            html_escape(&value)
        ));
    }
    out
}

/// The absolute URL of a channel's live thumbnail; `version` (its ETag's digits) makes every
/// new picture a new URL, so crawlers that cache images by URL do not show an old one.
pub fn thumb_url(public_url: &str, channel: &str, version: Option<&str>) -> String {
    let base = format!("{}/thumb/{channel}.jpg", public_url.trim_end_matches('/'));
    match version {
        Some(v) => format!("{base}?v={}", v.trim_matches('"')),
        None => base,
    }
}

/// The watch page's card. Without a thumbnail yet (never live) the picture is the embedded
/// placeholder `/assets/card.jpg`.
pub fn watch_card(
    public_url: &str,
    channel: &str,
    title: Option<&str>,
    live: bool,
    thumb: Option<(&str, u32, u32)>,
) -> Card {
    let base = public_url.trim_end_matches('/');
    let title = title.filter(|t| !t.trim().is_empty());
    let (image, image_size) = match thumb {
        Some((etag, w, h)) => (thumb_url(base, channel, Some(etag)), Some((w, h))),
        None => (format!("{base}/assets/card.jpg"), Some((1280, 720))),
    };
    let description = match (live, title) {
        (true, Some(t)) => format!("{channel} is live now: {t}. Watch and join the chat."),
        (true, None) => format!("{channel} is live now. Watch and join the chat."),
        (false, Some(t)) => format!("{t}. {channel} is offline; the stream starts here."),
        (false, None) => format!("{channel} is offline; the stream starts here."),
    };
    Card {
        title: match title {
            Some(t) => format!("{t} · {channel}"),
            None => channel.to_string(),
        },
        description,
        url: format!("{base}/watch/{channel}"),
        image,
        image_alt: format!("Live picture of {channel}'s stream"),
        image_size,
    }
}

/// What the replay page's card says of its recording.
#[derive(Debug, Clone, Copy)]
pub struct ReplayFacts<'a> {
    pub channel: &'a str,
    pub id: &'a str,
    pub title: Option<&'a str>,
    /// RFC 3339.
    pub started_at: &'a str,
    pub duration_seconds: f64,
    /// Still being recorded.
    pub live: bool,
    /// The recording has its `poster.jpg`.
    pub poster: bool,
}

/// The replay page's card: the recording's poster as the picture (the placeholder
/// `/assets/card.jpg` until it has one), its date and length in the text.
pub fn replay_card(public_url: &str, r: &ReplayFacts<'_>) -> Card {
    let base = public_url.trim_end_matches('/');
    let (channel, id) = (r.channel, r.id);
    let title = r.title.filter(|t| !t.trim().is_empty());
    let when = chrono::DateTime::parse_from_rfc3339(r.started_at)
        .map(|t| {
            t.with_timezone(&chrono::Utc)
                .format("%-d %B %Y, %H:%M UTC")
                .to_string()
        })
        .ok();
    let show = match &when {
        Some(w) => format!("{channel}'s show of {w}"),
        None => format!("{channel}'s show"),
    };
    let description = if r.live {
        format!("{channel} is live now and this show is recorded: watch it from the start, with its chat.")
    } else {
        format!(
            "Replay of {show} ({}), with its chat and questions as they happened.",
            length(r.duration_seconds)
        )
    };
    let (image, image_size) = if r.poster {
        (format!("{base}/vod/{channel}/{id}/poster.jpg"), None)
    } else {
        (format!("{base}/assets/card.jpg"), Some((1280, 720)))
    };
    Card {
        title: match title {
            Some(t) => format!("{t} · {channel} · replay"),
            None => format!("{channel} · replay"),
        },
        description,
        url: format!("{base}/replay/{channel}/{id}"),
        image,
        image_alt: format!("Picture of {show}"),
        image_size,
    }
}

/// A show's length for people: `45 s`, `12 min`, `1 h 05 min`.
fn length(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min", s / 60),
        _ => format!("{} h {:02} min", s / 3600, s % 3600 / 60),
    }
}

/// Channel titles (`channels[].title`), for cards. Std lock: held only to read or swap.
#[derive(Default)]
pub struct Titles(RwLock<HashMap<String, String>>);

impl Titles {
    pub fn new(channels: &[ChannelConfig]) -> Arc<Self> {
        let t = Arc::new(Self::default());
        t.set(channels);
        t
    }

    /// Takes a reload's channels.
    pub fn set(&self, channels: &[ChannelConfig]) {
        let map = channels
            .iter()
            .filter_map(|c| c.title.clone().map(|t| (c.name.clone(), t)))
            .collect();
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = map;
    }

    pub fn get(&self, channel: &str) -> Option<String> {
        self.0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(channel)
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(tags: &str, key: &str) -> Option<String> {
        tags.lines().find_map(|l| {
            let rest = l
                .strip_prefix(&format!("<meta property=\"{key}\" content=\""))
                .or_else(|| l.strip_prefix(&format!("<meta name=\"{key}\" content=\"")))?;
            rest.strip_suffix("\">").map(String::from)
        })
    }

    #[test]
    fn watch_card_tags_are_absolute_and_escaped() {
        let card = watch_card(
            "https://live.example.org/",
            "alice",
            Some("Alice's <debate>"),
            true,
            Some(("\"0123abcd\"", 1280, 720)),
        );
        let tags = card_tags(&card);
        assert_eq!(
            meta(&tags, "og:image").as_deref(),
            Some("https://live.example.org/thumb/alice.jpg?v=0123abcd")
        );
        assert_eq!(
            meta(&tags, "og:url").as_deref(),
            Some("https://live.example.org/watch/alice")
        );
        assert_eq!(
            meta(&tags, "twitter:card").as_deref(),
            Some("summary_large_image")
        );
        assert_eq!(
            meta(&tags, "og:title").as_deref(),
            Some("Alice&#39;s &lt;debate&gt; · alice")
        );
        assert_eq!(meta(&tags, "og:image:width").as_deref(), Some("1280"));
        assert!(meta(&tags, "og:image:secure_url").is_some());
        assert!(meta(&tags, "og:description")
            .is_some_and(|d| d.contains("live now") && d.contains("&lt;debate&gt;")));
        assert!(!tags.contains("<debate>"), "{tags}");
        // Never live: the placeholder, still absolute.
        let card = watch_card("http://localhost:8080", "bob", None, false, None);
        assert_eq!(card.image, "http://localhost:8080/assets/card.jpg");
        assert_eq!(card.title, "bob");
        assert!(card.description.contains("offline"));
        assert!(meta(&card_tags(&card), "og:image:secure_url").is_none());
    }

    #[test]
    fn replay_card_names_the_poster_the_date_and_the_length() {
        let facts = ReplayFacts {
            channel: "alice",
            id: "20261202T170000Z",
            title: Some("Alice's <debate>"),
            started_at: "2026-12-02T17:00:00.000Z",
            duration_seconds: 3900.4,
            live: false,
            poster: true,
        };
        let tags = card_tags(&replay_card("https://live.example.org/", &facts));
        assert_eq!(
            meta(&tags, "og:image").as_deref(),
            Some("https://live.example.org/vod/alice/20261202T170000Z/poster.jpg")
        );
        assert_eq!(
            meta(&tags, "og:url").as_deref(),
            Some("https://live.example.org/replay/alice/20261202T170000Z")
        );
        assert_eq!(
            meta(&tags, "twitter:card").as_deref(),
            Some("summary_large_image")
        );
        assert_eq!(
            meta(&tags, "og:title").as_deref(),
            Some("Alice&#39;s &lt;debate&gt; · alice · replay")
        );
        let d = meta(&tags, "og:description").expect("description");
        assert!(
            d.contains("2 December 2026, 17:00 UTC") && d.contains("1 h 05 min"),
            "{d}"
        );
        assert!(
            meta(&tags, "og:image:width").is_none(),
            "poster size unknown"
        );
        // Still recording, no poster yet: the placeholder, still absolute.
        let live = ReplayFacts {
            live: true,
            poster: false,
            title: None,
            ..facts
        };
        let card = replay_card("http://localhost:8080", &live);
        assert_eq!(card.image, "http://localhost:8080/assets/card.jpg");
        assert_eq!(card.title, "alice · replay");
        assert!(card.description.contains("live now"));
        assert_eq!(
            (length(45.2), length(720.0)),
            ("45 s".into(), "12 min".into())
        );
    }
}
