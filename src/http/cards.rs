//! Share cards: the Open Graph and Twitter card tags that make a posted link preview the
//! stream on X, Mastodon, Bluesky and Discord (`og:title`, `og:description`, `og:url`,
//! `og:image` absolute under `server.public_url`, `twitter:card` = `summary_large_image`).
//! [`card_tags`] renders them for any page (the watch page now, the replay page with its
//! recording's poster); [`watch_card`] is the watch page's card; [`Titles`] holds the channel
//! titles it names, swapped on reload. Everything here is built from memory per request (a
//! few microseconds), so the minute-long crawler stampede after a go-live post costs nothing.

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
}
