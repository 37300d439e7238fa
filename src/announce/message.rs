//! What gets announced: the [`Announcement`] every target turns into its own request, and the
//! pure template rendering (`{channel}`, `{title}`, `{url}`). The dispatcher in `mod.rs` builds
//! announcements from lifecycle events; the targets only read them.

use chrono::{DateTime, Utc};

/// Why a post is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnnounceKind {
    /// A channel went live.
    Live,
    /// A channel's stream ended (and stayed ended for `announce.grace_seconds`).
    Ended,
    /// `onair announce-test`.
    Test,
    /// A viewer's chat message posted on their own account (`identity::crosspost`).
    CrossPost,
}

impl AnnounceKind {
    /// The `event` field of webhook payloads.
    pub fn as_str(self) -> &'static str {
        match self {
            AnnounceKind::Live => "live",
            AnnounceKind::Ended => "ended",
            AnnounceKind::Test => "test",
            AnnounceKind::CrossPost => "cross_post",
        }
    }
}

/// One post, shared by every target (each builds its own request from it).
#[derive(Debug, Clone)]
pub struct Announcement {
    pub kind: AnnounceKind,
    pub channel: String,
    pub title: String,
    /// The watch page: `{server.public_url}/watch/{channel}`.
    pub url: String,
    /// When the stream went live (for `Ended`, the stream that ended).
    pub started_at: Option<DateTime<Utc>>,
    /// The rendered text.
    pub text: String,
    /// Stable across retries and targets for one event: used as the idempotency key.
    pub id: String,
    /// The template `text` came from, to shorten the title when a target's limit demands.
    pub template: String,
}

/// The watch page of a channel.
pub fn watch_url(public_url: &str, channel: &str) -> String {
    format!("{}/watch/{channel}", public_url.trim_end_matches('/'))
}

/// The replay page of a channel's recording.
pub fn replay_url(public_url: &str, channel: &str, recording: &str) -> String {
    format!(
        "{}/replay/{channel}/{recording}",
        public_url.trim_end_matches('/')
    )
}

/// Length in characters with every occurrence of `url` counted as `url_weight` (X and
/// Mastodon count any link as 23 characters).
pub fn length_with_links(text: &str, url: &str, url_weight: usize) -> usize {
    if url.is_empty() {
        return text.chars().count();
    }
    let n = text.matches(url).count();
    text.chars().count() - n * url.chars().count() + n * url_weight
}

/// Renders a template in one pass: a title that itself contains `{url}` stays as typed.
/// Unknown `{...}` are kept verbatim (the config refuses them anyway). Runs of spaces left by
/// an empty title collapse to one, and the ends are trimmed.
pub fn render(template: &str, channel: &str, title: &str, url: &str) -> String {
    let mut out = String::with_capacity(template.len() + url.len() + title.len());
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let after = &rest[start..];
        let end = after.find('}').map(|e| e + 1).unwrap_or(after.len());
        match &after[..end] {
            "{channel}" => out.push_str(channel),
            "{title}" => out.push_str(title),
            "{url}" => out.push_str(url),
            other => out.push_str(other),
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    let mut collapsed = String::with_capacity(out.len());
    for c in out.chars() {
        if c == ' ' && collapsed.ends_with(' ') {
            continue;
        }
        collapsed.push(c);
    }
    collapsed.trim().to_string()
}

impl Announcement {
    /// The go-live (or ended) post of a channel.
    pub fn for_channel(
        kind: AnnounceKind,
        template: &str,
        public_url: &str,
        channel: &str,
        title: &str,
        started_at: DateTime<Utc>,
    ) -> Self {
        let url = watch_url(public_url, channel);
        Self {
            kind,
            text: render(template, channel, title, &url),
            id: format!(
                "onair-{}-{channel}-{}",
                kind.as_str(),
                started_at.timestamp_millis()
            ),
            channel: channel.to_string(),
            title: title.to_string(),
            url,
            started_at: Some(started_at),
            template: template.to_string(),
        }
    }

    /// The end-of-show post pointing at the replay page `replay_url` (absolute).
    pub fn for_replay(
        template: &str,
        channel: &str,
        title: &str,
        started_at: DateTime<Utc>,
        replay_url: &str,
    ) -> Self {
        Self {
            kind: AnnounceKind::Ended,
            text: render(template, channel, title, replay_url),
            id: format!("onair-replay-{channel}-{}", started_at.timestamp_millis()),
            channel: channel.to_string(),
            title: title.to_string(),
            url: replay_url.to_string(),
            started_at: Some(started_at),
            template: template.to_string(),
        }
    }

    /// The link card's title: the channel's title, else its name.
    pub fn card_title(&self) -> String {
        if self.title.trim().is_empty() {
            self.channel.clone()
        } else {
            self.title.clone()
        }
    }

    /// The link card's text.
    pub fn card_description(&self) -> String {
        match self.kind {
            AnnounceKind::Ended => format!("A past show of {} on onair", self.channel),
            _ => format!("{} is live now: watch and join the chat", self.channel),
        }
    }

    /// Alt text of the post's picture (a frame of the stream).
    pub fn picture_alt(&self) -> String {
        let what = if self.title.trim().is_empty() {
            String::new()
        } else {
            format!(": {}", self.title.chars().take(200).collect::<String>())
        };
        format!("A frame of {}'s live stream{what}", self.channel)
    }

    /// The post of `onair announce-test`: no link (X bills posts with links).
    pub fn test(public_url: &str) -> Self {
        let now = Utc::now();
        Self {
            kind: AnnounceKind::Test,
            channel: String::new(),
            title: String::new(),
            url: public_url.to_string(),
            started_at: None,
            text: format!(
                "Test post from onair ({}): go-live announcements reach this account.",
                now.format("%Y-%m-%d %H:%M:%S UTC")
            ),
            id: format!("onair-test-{}", now.timestamp_millis()),
            template: String::new(),
        }
    }

    /// The text, with the title shortened (ending in "…") until it fits `limit` characters as
    /// `length` counts them. The link and the rest of the template are never cut; if they alone
    /// are too long the text is returned whole and the target will say so.
    pub fn fit(&self, limit: usize, length: impl Fn(&str, &str) -> usize) -> String {
        if length(&self.text, &self.url) <= limit || self.template.is_empty() {
            return self.text.clone();
        }
        let chars: Vec<char> = self.title.chars().collect();
        // Longest title prefix that fits: binary search on its length.
        let (mut lo, mut hi) = (0usize, chars.len());
        let shortened = |n: usize| -> String {
            let mut t: String = chars[..n].iter().collect();
            t = t.trim_end().to_string();
            if n > 0 {
                t.push('…');
            }
            render(&self.template, &self.channel, &t, &self.url)
        };
        if length(&shortened(0), &self.url) > limit {
            return self.text.clone();
        }
        while lo < hi {
            let mid = (lo + hi).div_ceil(2);
            if length(&shortened(mid), &self.url) <= limit {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        shortened(lo)
    }

    /// Whether anything a target may send (text, title, link) contains any of `secrets`
    /// (stream keys): such a post is never sent.
    pub fn leaks_any<'a>(&self, mut secrets: impl Iterator<Item = &'a str>) -> bool {
        secrets.any(|s| {
            !s.is_empty()
                && [&self.text, &self.title, &self.url]
                    .iter()
                    .any(|field| field.contains(s))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_placeholders_once() {
        let cases = [
            (
                "{channel} is live now: {title} {url}",
                "alice",
                "Alice's debate",
                "alice is live now: Alice's debate https://live.example.org/watch/alice",
            ),
            (
                "{channel} is live now: {title} {url}",
                "bob",
                "",
                "bob is live now: https://live.example.org/watch/bob",
            ),
            // A title is not rendered again.
            ("{title}!", "x", "see {url}", "see {url}!"),
            (
                "{url}{url}",
                "c",
                "",
                "https://live.example.org/watch/chttps://live.example.org/watch/c",
            ),
            ("odd { brace", "c", "", "odd { brace"),
            ("{nope} {channel}", "c", "", "{nope} c"),
            (
                "Live: {title}\nWatch {url}",
                "c",
                "T",
                "Live: T\nWatch https://live.example.org/watch/c",
            ),
            ("ünï {channel} ☃", "c", "", "ünï c ☃"),
        ];
        for (t, ch, title, want) in cases {
            let url = watch_url("https://live.example.org/", ch);
            assert_eq!(render(t, ch, title, &url), want, "{t:?}");
        }
    }

    #[test]
    fn announcement_has_watch_url_and_stable_id() {
        let at = DateTime::from_timestamp(1_700_000_000, 0).expect("time");
        let a = Announcement::for_channel(
            AnnounceKind::Live,
            "{channel} is live now: {title} {url}",
            "http://localhost:8080",
            "alice",
            "Alice's debate",
            at,
        );
        assert_eq!(a.url, "http://localhost:8080/watch/alice");
        assert!(a.text.ends_with("http://localhost:8080/watch/alice"));
        assert_eq!(a.id, "onair-live-alice-1700000000000");
        assert!(!a.leaks_any(["alice-secret-key"].into_iter()));
        assert!(a.leaks_any(["debate"].into_iter()));
    }

    #[test]
    fn long_titles_are_shortened_to_fit_and_the_link_survives() {
        let at = DateTime::from_timestamp(1_700_000_000, 0).expect("time");
        let title = "A very long title ".repeat(30);
        let a = Announcement::for_channel(
            AnnounceKind::Live,
            "{channel} is live now: {title} {url}",
            "https://live.example.org",
            "alice",
            &title,
            at,
        );
        let x = |t: &str, u: &str| length_with_links(t, u, 23);
        assert!(x(&a.text, &a.url) > 280);
        let fitted = a.fit(280, x);
        assert!(x(&fitted, &a.url) <= 280, "{fitted}");
        assert!(x(&fitted, &a.url) >= 270, "cut too much: {fitted}");
        assert!(
            fitted.ends_with("… https://live.example.org/watch/alice"),
            "{fitted}"
        );
        assert!(fitted.starts_with("alice is live now: A very long title"));
        // Short texts are untouched; impossible limits give the text whole.
        assert_eq!(a.fit(10_000, x), a.text);
        assert_eq!(a.fit(5, x), a.text);
        assert_eq!(
            length_with_links("see http://a/b and http://a/b", "http://a/b", 23),
            4 + 23 + 5 + 23
        );
    }
}
