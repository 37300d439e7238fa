//! What the chat asks of [`Auth`]: may this request post in this channel (`chat.mode`:
//! `open`, `signed_in`, `followers`), what would a cross-post say, and queue one. Follower
//! answers come from the viewer's provider (Mastodon relationships with the viewer's token,
//! Bluesky's public `getRelationships`, X's following list) and are kept
//! `auth.followers_cache_seconds`, so a busy chat asks each provider once per viewer and owner
//! in that time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::crosspost::{compose, text_for, CrossPost, Outcome, Refusal};
use super::service::{Auth, Session};
use super::{bluesky, mastodon, x, IdentityError, Provider};
use crate::config::ChatMode;

/// Why a request may not post.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChatGate {
    /// 401: sign in first.
    #[error("{0}")]
    SignIn(String),
    /// 403: signed in, but not allowed (not a follower).
    #[error("{0}")]
    Forbidden(String),
    /// 503: the provider could not be asked.
    #[error("{0}")]
    Unavailable(String),
}

/// Follow answers by (viewer, owner) identity keys. Std mutex: short lookups.
pub struct FollowCache {
    ttl: Duration,
    map: Mutex<HashMap<(String, String), (bool, Instant)>>,
}

impl FollowCache {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            map: Mutex::new(HashMap::new()),
        }
    }

    fn get(&self, viewer: &str, owner: &str) -> Option<bool> {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&(viewer.to_string(), owner.to_string()))
            .filter(|(_, at)| at.elapsed() < self.ttl)
            .map(|(v, _)| *v)
    }

    fn put(&self, viewer: &str, owner: &str, follows: bool) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.insert(
            (viewer.to_string(), owner.to_string()),
            (follows, Instant::now()),
        );
    }

    pub fn tidy(&self) {
        let ttl = self.ttl;
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, (_, at)| at.elapsed() < ttl);
    }
}

/// What became of a message's cross-post request.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CrossPostAnswer {
    /// `queued` or `refused`.
    pub state: &'static str,
    pub error: Option<String>,
}

impl Auth {
    pub fn chat_mode(&self) -> ChatMode {
        self.chat_mode
    }

    /// Whether `session` (or an anonymous viewer) may post in `channel` under `chat.mode`.
    pub async fn may_chat(&self, channel: &str, session: Option<&Session>) -> Result<(), ChatGate> {
        if self.chat_mode == ChatMode::Open {
            return Ok(());
        }
        let Some(s) = session else {
            return Err(ChatGate::SignIn("sign in to chat in this channel".into()));
        };
        if self.chat_mode == ChatMode::SignedIn {
            return Ok(());
        }
        let me = &s.identity;
        if self.is_owner(channel, me) || self.is_admin(me) {
            return Ok(());
        }
        let prefix = format!("{}:", me.provider);
        let owners: Vec<String> = self
            .roles()
            .owners(channel)
            .iter()
            .filter(|o| o.starts_with(&prefix))
            .cloned()
            .collect();
        if owners.is_empty() {
            return Err(ChatGate::Forbidden(format!(
                "this chat is for followers of {channel}'s owner, who is not on {}",
                me.provider.label()
            )));
        }
        let viewer = me.key();
        for owner in &owners {
            if self.follows.get(&viewer, owner) == Some(true) {
                return Ok(());
            }
        }
        let grant = self.grant(s).await;
        let mut failure = None;
        for owner in &owners {
            let owner_id = owner[prefix.len()..].to_string();
            let answer = match me.provider {
                Provider::Bluesky => {
                    bluesky::follows(&self.net, &self.cfg.bluesky, &me.id, &owner_id).await
                }
                Provider::Mastodon => match &grant {
                    Some(g) if g.has_scope("read:follows") || g.has_scope("read") => {
                        mastodon::follows(&self.net, g, &owner_id).await
                    }
                    _ => Err(IdentityError::Refused {
                        provider: Provider::Mastodon,
                        detail: "sign in again so onair can check that you follow the owner".into(),
                    }),
                },
                Provider::X => match &grant {
                    Some(g) if g.has_scope("follows.read") => {
                        x::follows(&self.net, g, &me.id, &owner_id).await
                    }
                    _ => Err(IdentityError::Refused {
                        provider: Provider::X,
                        detail: "sign in again so onair can check that you follow the owner".into(),
                    }),
                },
            };
            match answer {
                Ok(f) => {
                    self.follows.put(&viewer, owner, f);
                    if f {
                        return Ok(());
                    }
                }
                Err(e) => failure = Some(e),
            }
        }
        match failure {
            Some(IdentityError::Refused { detail, .. }) => Err(ChatGate::Forbidden(detail)),
            Some(e) => {
                tracing::warn!(error = %e, "could not check a follow");
                Err(ChatGate::Unavailable(format!(
                    "could not check with {} that you follow the owner; try again",
                    me.provider.label()
                )))
            }
            None => Err(ChatGate::Forbidden(format!(
                "only followers of {channel}'s owner can chat here: follow {} on {}",
                owners
                    .iter()
                    .map(|o| o[prefix.len()..].to_string())
                    .collect::<Vec<_>>()
                    .join(" or "),
                me.provider.label()
            ))),
        }
    }

    /// Whether `s` may cross-post at all here, or why not.
    fn cross_post_allowed(&self, s: &Session) -> Result<(), Refusal> {
        if !self.provider_posts(s.identity.provider) {
            return Err(Refusal::XOff);
        }
        if !s.can_cross_post {
            return Err(Refusal::NoScope);
        }
        Ok(())
    }

    /// The exact text a cross-post of `text` in `channel` would have.
    pub fn preview(
        &self,
        channel: &str,
        s: &Session,
        text: &str,
    ) -> Result<serde_json::Value, Refusal> {
        self.cross_post_allowed(s)?;
        let p = s.identity.provider;
        let a = compose(&self.public_url, channel, text, String::new());
        Ok(serde_json::json!({
            "provider": p,
            "provider_label": p.label(),
            "text": text_for(p, &a),
            "visibility": (p == Provider::Mastodon).then(|| self.cfg.mastodon.cross_post_visibility.clone()),
        }))
    }

    /// Queues the cross-post of chat message `message_id` (never waits; `started_at` names the
    /// broadcast for the per-broadcast cap).
    pub async fn cross_post(
        &self,
        channel: &str,
        s: &Session,
        message_id: u64,
        text: &str,
        started_at: i64,
    ) -> CrossPostAnswer {
        let refused = |r: Refusal| CrossPostAnswer {
            state: "refused",
            error: Some(r.to_string()),
        };
        if let Err(r) = self.cross_post_allowed(s) {
            return refused(r);
        }
        if let Err(r) = self
            .limits
            .take(&s.identity.key(), channel, started_at, Instant::now())
        {
            return refused(r);
        }
        let Some(grant) = self.grant(s).await else {
            return refused(Refusal::NoScope);
        };
        let p = s.identity.provider;
        let post = compose(
            &self.public_url,
            channel,
            text,
            format!("onair-xp-{channel}-{message_id}"),
        );
        let item = Arc::new(CrossPost {
            session: s.id_hash.clone(),
            provider: p,
            message_id,
            card_title: format!("{channel} live on onair"),
            visibility: None,
            post,
            grant: Mutex::new(grant),
        });
        match self.cross_tx.try_send(item) {
            Ok(()) => {
                self.outcomes.set(
                    &s.id_hash,
                    Outcome {
                        message_id,
                        channel: channel.to_string(),
                        provider: p,
                        state: "queued",
                        error: None,
                    },
                );
                CrossPostAnswer {
                    state: "queued",
                    error: None,
                }
            }
            Err(_) => {
                self.cross_stats
                    .dropped
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                refused(Refusal::QueueFull)
            }
        }
    }
}
