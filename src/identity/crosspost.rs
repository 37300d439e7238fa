//! Cross-posting: a signed-in viewer's chat message, by that viewer's explicit choice, posted
//! on their own account as their words plus the broadcaster's name and the watch link
//! ([`compose`]). Posts go through the announce queue (`announce::queue`, the same retries
//! and backoff) with [`CrossPoster`] as its destination: the chat path only `try_send`s and
//! never waits. [`Limits`] caps each viewer per minute (`auth.cross_post_per_minute`) and per
//! broadcast (`auth.cross_post_per_broadcast`); [`Outcomes`] keeps each session's recent
//! results, which the watch page reads to tell the viewer whether a post went out and why not.
//!
//! The requests are the announce targets' own (`status_request`, `post_record`, the X text
//! fit), sent as the viewer: to a viewer's Mastodon server or PDS through the guarded client.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::net::{Net, NetError, Reach};
use super::{bluesky, Grant, IdentityError, Provider};
use crate::announce::message::{render, watch_url, AnnounceKind, Announcement};
use crate::announce::queue::{AttemptError, Delivery, Destination};

/// The post: the viewer's words (shortened with "…" when a network's limit demands), then
/// the broadcaster and the link.
pub const TEMPLATE: &str = "{title}\n\nWatching {channel} live: {url}";
/// Outcomes kept per session.
const OUTCOMES_PER_SESSION: usize = 20;
/// Sessions whose outcomes are kept (the oldest are forgotten first).
const OUTCOME_SESSIONS: usize = 10_000;

/// The announcement a cross-post is made of (its `title` holds the viewer's words).
pub fn compose(public_url: &str, channel: &str, words: &str, id: String) -> Announcement {
    let url = watch_url(public_url, channel);
    Announcement {
        kind: AnnounceKind::CrossPost,
        channel: channel.to_string(),
        title: words.to_string(),
        text: render(TEMPLATE, channel, words, &url),
        url,
        started_at: None,
        id,
        template: TEMPLATE.to_string(),
    }
}

/// The exact text `provider` would get (what the viewer is shown before the first post).
pub fn text_for(provider: Provider, a: &Announcement) -> String {
    match provider {
        Provider::Mastodon => crate::announce::mastodon::text(a),
        Provider::X => crate::announce::twitter::TwitterTarget::text(a),
        Provider::Bluesky => crate::announce::bluesky::post_record(a, None)["text"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    }
}

/// One queued cross-post.
pub struct CrossPost {
    /// The session it came from (its stored id, a hash), for the outcome and refreshed tokens.
    pub session: String,
    pub provider: Provider,
    /// The chat message it repeats.
    pub message_id: u64,
    pub post: Announcement,
    /// Title of the Bluesky link card.
    pub card_title: String,
    /// Mastodon visibility for this post (`None`: `auth.mastodon.cross_post_visibility`).
    pub visibility: Option<String>,
    /// The viewer's grant, opened from the database; replaced if refreshed while posting.
    /// Std mutex: read and swapped, never held across an await.
    pub grant: Mutex<Grant>,
}

/// Where a cross-post stands.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Outcome {
    pub message_id: u64,
    pub channel: String,
    pub provider: Provider,
    /// `queued`, `posted` or `failed`.
    pub state: &'static str,
    /// Why it failed, in words the viewer can act on.
    pub error: Option<String>,
}

/// Each session's recent outcomes, and the sessions in the order they first posted (the
/// oldest forgotten first).
type OutcomeMap = (HashMap<String, VecDeque<Outcome>>, VecDeque<String>);

/// Recent outcomes by session. Std mutex: short inserts and reads.
#[derive(Default)]
pub struct Outcomes {
    map: Mutex<OutcomeMap>,
}

impl Outcomes {
    pub fn set(&self, session: &str, o: Outcome) {
        let mut g = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let (map, order) = &mut *g;
        if !map.contains_key(session) {
            order.push_back(session.to_string());
            while order.len() > OUTCOME_SESSIONS {
                if let Some(old) = order.pop_front() {
                    map.remove(&old);
                }
            }
        }
        let list = map.entry(session.to_string()).or_default();
        list.retain(|x| !(x.message_id == o.message_id && x.channel == o.channel));
        list.push_back(o);
        while list.len() > OUTCOMES_PER_SESSION {
            list.pop_front();
        }
    }

    pub fn of(&self, session: &str) -> Vec<Outcome> {
        let g = self.map.lock().unwrap_or_else(|e| e.into_inner());
        g.0.get(session)
            .map(|l| l.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Forgets a session (logout).
    pub fn forget(&self, session: &str) {
        let mut g = self.map.lock().unwrap_or_else(|e| e.into_inner());
        g.0.remove(session);
    }
}

/// Why a cross-post was not queued.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum Refusal {
    #[error("you can cross-post {per_minute} messages a minute; wait a little")]
    PerMinute { per_minute: u32 },
    #[error(
        "you have cross-posted {per_broadcast} messages during this broadcast, the most allowed"
    )]
    PerBroadcast { per_broadcast: u32 },
    #[error("onair does not post to X here: use the share link instead")]
    XOff,
    #[error("you did not allow onair to post for you: sign in again and tick \"Also post to my timeline\"")]
    NoScope,
    #[error("too many posts are waiting to go out; try again in a minute")]
    QueueFull,
}

/// Per-viewer limits. Std mutex: short sections, no awaits.
pub struct Limits {
    per_minute: u32,
    per_broadcast: u32,
    map: Mutex<HashMap<String, Counts>>,
}

#[derive(Default)]
struct Counts {
    recent: VecDeque<Instant>,
    /// Posts per broadcast (channel and start time).
    broadcasts: HashMap<(String, i64), u32>,
}

impl Limits {
    pub fn new(per_minute: u32, per_broadcast: u32) -> Self {
        Self {
            per_minute,
            per_broadcast,
            map: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one post of `viewer` in the broadcast `(channel, started_at)`, or says why not.
    pub fn take(
        &self,
        viewer: &str,
        channel: &str,
        started_at: i64,
        now: Instant,
    ) -> Result<(), Refusal> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let c = map.entry(viewer.to_string()).or_default();
        while c
            .recent
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= Duration::from_secs(60))
        {
            c.recent.pop_front();
        }
        if c.recent.len() >= self.per_minute as usize {
            return Err(Refusal::PerMinute {
                per_minute: self.per_minute,
            });
        }
        let key = (channel.to_string(), started_at);
        let n = c.broadcasts.get(&key).copied().unwrap_or(0);
        if n >= self.per_broadcast {
            return Err(Refusal::PerBroadcast {
                per_broadcast: self.per_broadcast,
            });
        }
        c.recent.push_back(now);
        // Only the current broadcast of each channel matters.
        c.broadcasts.retain(|(ch, _), _| ch != channel);
        c.broadcasts.insert(key, n + 1);
        Ok(())
    }

    /// Forgets viewers with nothing in the last minute and no broadcast counts worth keeping
    /// (called now and then).
    pub fn tidy(&self, now: Instant) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, c| {
            c.recent
                .back()
                .is_some_and(|t| now.saturating_duration_since(*t) < Duration::from_secs(3600))
        });
    }
}

/// Called when a grant was refreshed while posting, to store it again (sealed).
pub type Refreshed = Arc<dyn Fn(&str, &Grant) + Send + Sync>;

/// The queue's destination for cross-posts.
pub struct CrossPoster {
    pub net: Net,
    pub visibility: String,
    pub outcomes: Arc<Outcomes>,
    pub refreshed: Refreshed,
}

/// A request failure as the queue sees it: answers keep their status (so 429/5xx retry),
/// refusals by our own rules are final.
pub fn attempt_error(e: NetError) -> AttemptError {
    match e {
        NetError::Status {
            status,
            detail,
            headers,
            ..
        } => AttemptError::Status {
            status,
            retry_after: crate::announce::queue::retry_after(status, &headers, chrono::Utc::now()),
            detail,
        },
        NetError::Network { detail, .. } => AttemptError::Network { detail },
        other => AttemptError::fatal(other.to_string()),
    }
}

fn identity_attempt_error(e: IdentityError) -> AttemptError {
    match e {
        IdentityError::Net { source } => attempt_error(source),
        other => AttemptError::fatal(other.to_string()),
    }
}

impl CrossPoster {
    fn grant(p: &CrossPost) -> Grant {
        p.grant.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    async fn post(&self, p: &CrossPost) -> Result<(), AttemptError> {
        let grant = Self::grant(p);
        match p.provider {
            Provider::Mastodon => {
                let req = crate::announce::mastodon::status_request(
                    self.net.client(Reach::Viewer),
                    &grant.api_base,
                    &grant.access_token,
                    &p.post,
                    p.visibility.as_deref().unwrap_or(&self.visibility),
                    &[],
                )
                .build()
                .map_err(|e| AttemptError::fatal(e.without_url().to_string()))?;
                self.net
                    .execute(Reach::Viewer, req)
                    .await
                    .and_then(|a| a.ok())
                    .map_err(attempt_error)?;
                Ok(())
            }
            Provider::X => {
                let req = self
                    .net
                    .client(Reach::Configured)
                    .post(format!("{}/2/tweets", grant.api_base.trim_end_matches('/')))
                    .bearer_auth(&grant.access_token)
                    .json(&serde_json::json!({
                        "text": crate::announce::twitter::TwitterTarget::text(&p.post)
                    }))
                    .build()
                    .map_err(|e| AttemptError::fatal(e.without_url().to_string()))?;
                self.net
                    .execute(Reach::Configured, req)
                    .await
                    .and_then(|a| a.ok())
                    .map_err(attempt_error)?;
                Ok(())
            }
            Provider::Bluesky => {
                let grant = match bluesky::fresh(&self.net, &grant)
                    .await
                    .map_err(identity_attempt_error)?
                {
                    Some(g) => {
                        *p.grant.lock().unwrap_or_else(|e| e.into_inner()) = g.clone();
                        (self.refreshed)(&p.session, &g);
                        g
                    }
                    None => grant,
                };
                let did = grant.did.clone().unwrap_or_default();
                let record = crate::announce::bluesky::post_record(
                    &p.post,
                    Some((&p.card_title, "Live on onair: watch and chat")),
                );
                bluesky::call_pds(
                    &self.net,
                    &grant,
                    "com.atproto.repo.createRecord",
                    &serde_json::json!({
                        "repo": did,
                        "collection": "app.bsky.feed.post",
                        "record": record,
                    }),
                )
                .await
                .map_err(identity_attempt_error)?;
                Ok(())
            }
        }
    }
}

impl Destination for CrossPoster {
    type Post = CrossPost;

    fn name(&self) -> &str {
        "cross_post"
    }

    fn noun(&self) -> &'static str {
        "cross-post"
    }

    fn credentials_hint(&self) -> &'static str {
        "nothing on this server: the viewer's grant was refused (revoked at the provider, or expired)"
    }

    fn about<'p>(&self, p: &'p CrossPost) -> (&'p str, &'static str) {
        (&p.post.channel, p.provider.as_str())
    }

    async fn attempt(&self, p: &CrossPost) -> Result<(), AttemptError> {
        self.post(p).await
    }

    fn finished(&self, p: &CrossPost, d: &Delivery) {
        let (state, error) = match d {
            Delivery::Delivered { .. } => ("posted", None),
            Delivery::GaveUp { error, .. } => ("failed", Some(viewer_reason(p.provider, error))),
            Delivery::Cancelled => return,
        };
        self.outcomes.set(
            &p.session,
            Outcome {
                message_id: p.message_id,
                channel: p.post.channel.clone(),
                provider: p.provider,
                state,
                error,
            },
        );
    }
}

/// Why a post failed, for the viewer.
fn viewer_reason(provider: Provider, e: &AttemptError) -> String {
    let who = provider.label();
    match e {
        AttemptError::Status { status, detail, .. } => match status.as_u16() {
            401 | 403 => {
                format!("{who} refused onair's access ({status}): sign in again to allow posting")
            }
            422 | 400 => format!("{who} refused the post: {detail}"),
            429 => format!("{who} says you are posting too fast; try again later"),
            _ => format!("{who} did not take the post ({status})"),
        },
        AttemptError::Network { .. } => format!("{who} could not be reached"),
        AttemptError::Fatal { detail } => format!("{who}: {detail}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_post_is_words_broadcaster_and_link() {
        let a = compose(
            "https://live.example.org",
            "alice",
            "Great point!",
            "id".into(),
        );
        assert_eq!(
            a.text,
            "Great point!\n\nWatching alice live: https://live.example.org/watch/alice"
        );
        assert_eq!(text_for(Provider::Mastodon, &a), a.text);
        // Long words are shortened, the link kept, for each network's limit.
        let long = "word ".repeat(200);
        let a = compose("https://live.example.org", "alice", &long, "id".into());
        for (p, fits) in [
            (Provider::X, 280usize),
            (Provider::Mastodon, 500),
            (Provider::Bluesky, 300),
        ] {
            let t = text_for(p, &a);
            assert!(
                t.ends_with("…\n\nWatching alice live: https://live.example.org/watch/alice"),
                "{p}: {t}"
            );
            let len = crate::announce::message::length_with_links(&t, &a.url, 23);
            let len = if p == Provider::Bluesky {
                t.chars().count()
            } else {
                len
            };
            assert!(len <= fits, "{p}: {len}");
        }
        // Words that look like placeholders stay as typed.
        let a = compose("http://h", "c", "{url} {channel}", "id".into());
        assert!(a.text.starts_with("{url} {channel}\n\n"));
    }

    #[test]
    fn limits_per_minute_and_per_broadcast() {
        let l = Limits::new(2, 3);
        let t0 = Instant::now();
        l.take("v", "alice", 1, t0).expect("1");
        l.take("v", "alice", 1, t0).expect("2");
        assert_eq!(
            l.take("v", "alice", 1, t0),
            Err(Refusal::PerMinute { per_minute: 2 })
        );
        l.take("other", "alice", 1, t0)
            .expect("other viewers are apart");
        let t1 = t0 + Duration::from_secs(61);
        l.take("v", "alice", 1, t1).expect("3");
        assert_eq!(
            l.take("v", "alice", 1, t1),
            Err(Refusal::PerBroadcast { per_broadcast: 3 })
        );
        l.take("v", "alice", 2, t1)
            .expect("a new broadcast starts afresh");
    }

    #[test]
    fn outcomes_are_bounded_and_replaced() {
        let o = Outcomes::default();
        let out = |id, state| Outcome {
            message_id: id,
            channel: "alice".into(),
            provider: Provider::Mastodon,
            state,
            error: None,
        };
        o.set("s", out(1, "queued"));
        o.set("s", out(1, "posted"));
        assert_eq!(o.of("s"), vec![out(1, "posted")]);
        for i in 0..50 {
            o.set("s", out(i, "queued"));
        }
        assert_eq!(o.of("s").len(), OUTCOMES_PER_SESSION);
        o.forget("s");
        assert!(o.of("s").is_empty());
    }
}
