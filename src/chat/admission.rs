//! Admission of a chat message: everything [`Chat::post`] checks before a message is numbered
//! and sent. Bans, names (an anonymous nick may not take a signed-in viewer's name), the text
//! rules of `moderation`, slow mode and the two token buckets (address + nick, and a looser
//! one per address). [`Chat::admit`] runs them under the channel's lock and charges the
//! buckets only when every check passed; `shared.rs` uses it too, then sends the admitted
//! message through the cluster instead of committing it here.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use tracing::info;

use super::channel::{ChannelState, ChatChannel};
use super::moderation::{self, clean_nick, clean_text, TokenBucket};
use super::{now_rfc3339, Chat, ChatError, ChatMessage};
use crate::identity::Identity;

/// The address bucket is this many times looser than the address + nick bucket: it only stops
/// one address from dodging the limit by changing nick, while people behind one NAT still chat.
const ADDRESS_BUCKET_FACTOR: f64 = 4.0;
/// Longest slow mode an admin can set.
pub const MAX_SLOW_MODE_SECONDS: u64 = 3600;

/// Who wrote a stored message, for deletion by ban.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(super) struct Author {
    /// The nick, lowercased.
    pub(super) nick: String,
    pub(super) addr: IpAddr,
    /// `provider:id` of a signed-in author.
    pub(super) identity: Option<String>,
}

/// A message that passed every check, not yet numbered.
pub(super) struct Admitted {
    pub(super) msg: ChatMessage,
    pub(super) who: Author,
    /// For a signed-in author: the names anonymous nicks may no longer take, for the other nodes.
    pub(super) signed_names: Option<Vec<String>>,
}

/// The form in which names are compared for impersonation: lowercased, without `@`s.
pub(super) fn name_key(s: &str) -> String {
    s.trim().trim_start_matches('@').to_lowercase()
}

impl ChannelState {
    /// Turning slow mode off forgets who posted when; turning it on starts counting afresh.
    pub(super) fn set_slow_mode(&mut self, slow: Duration) {
        if slow.is_zero() || self.slow_mode.is_zero() {
            self.last_post.clear();
        }
        self.slow_mode = slow;
    }

    /// Forgets the buckets that refilled and the posts older than the slow mode (the
    /// housekeeping task, every [`super::VIEWERS_INTERVAL`]).
    pub(super) fn forget_idle(&mut self, rate: f64, burst: f64, now: Instant) {
        self.buckets.retain(|_, b| !b.is_full(rate, burst, now));
        let (ar, ab) = (rate * ADDRESS_BUCKET_FACTOR, burst * ADDRESS_BUCKET_FACTOR);
        self.address_buckets.retain(|_, b| !b.is_full(ar, ab, now));
        let slow = self.slow_mode;
        self.last_post
            .retain(|_, t| now.saturating_duration_since(*t) < slow);
    }
}

impl Chat {
    /// Posts a message from `addr`: under `nick`, or under `author`'s handle when the viewer
    /// is signed in; returns it with its id.
    pub fn post(
        &self,
        channel: &str,
        addr: IpAddr,
        nick: &str,
        text: &str,
        author: Option<&Identity>,
    ) -> Result<ChatMessage, ChatError> {
        let (ch, a) = self.admit(channel, addr, nick, text, author)?;
        Ok(ch.commit(self.cfg.history, a))
    }

    /// Every check of [`Chat::post`] (bans, names, slow mode, rate limits, which it charges):
    /// the message is accepted, and not yet numbered or sent.
    pub(super) fn admit(
        &self,
        channel: &str,
        addr: IpAddr,
        nick: &str,
        text: &str,
        author: Option<&Identity>,
    ) -> Result<(Arc<ChatChannel>, Admitted), ChatError> {
        let ch = self.channel(channel).ok_or(ChatError::NoChannel)?;
        // A signed-in viewer's name is the provider's, not typed: no nick rules apply to it.
        let nick = match author {
            Some(a) => a.handle.clone(),
            None => clean_nick(nick, self.cfg.max_nick_chars, &self.cfg.blocked_words)?,
        };
        let text = clean_text(text, self.cfg.max_message_chars, &self.cfg.blocked_words)?;
        let nick_key = nick.to_lowercase();
        let identity = author.map(Identity::key);
        let now = Instant::now();
        let rate = self.cfg.rate_per_second;
        let burst = self.cfg.burst as f64;
        let mut st = ch.lock();
        if st.bans.nicks.contains(&nick_key)
            || st.bans.addresses.contains(&addr)
            || identity
                .as_ref()
                .is_some_and(|i| st.bans.identities.contains(i))
        {
            return Err(ChatError::Banned);
        }
        if author.is_none() && st.signed_names.contains(&name_key(&nick)) {
            return Err(ChatError::Invalid {
                reason:
                    "this name belongs to a signed-in viewer here: pick another nick, or sign in"
                        .into(),
            });
        }
        if !st.slow_mode.is_zero() {
            if let Some(last) = st.last_post.get(&addr) {
                let next = *last + st.slow_mode;
                if next > now {
                    return Err(ChatError::SlowMode {
                        retry_after: moderation::retry_after_seconds(next - now),
                    });
                }
            }
        }
        let (arate, aburst) = (rate * ADDRESS_BUCKET_FACTOR, burst * ADDRESS_BUCKET_FACTOR);
        let user = st
            .buckets
            .entry((addr, nick_key.clone()))
            .or_insert_with(|| TokenBucket::full(burst, now))
            .check(rate, burst, now);
        let whole = st
            .address_buckets
            .entry(addr)
            .or_insert_with(|| TokenBucket::full(aburst, now))
            .check(arate, aburst, now);
        if let Err(wait) = user.and(whole) {
            return Err(ChatError::RateLimited {
                retry_after: moderation::retry_after_seconds(wait),
            });
        }
        if let Some(b) = st.buckets.get_mut(&(addr, nick_key.clone())) {
            b.take();
        }
        if let Some(b) = st.address_buckets.get_mut(&addr) {
            b.take();
        }
        if !st.slow_mode.is_zero() {
            st.last_post.insert(addr, now);
        }
        let mut signed_names = None;
        if let Some(a) = author {
            // The handle, its name part (`bob` of `@bob@host`) and the display name.
            let handle = name_key(&a.handle);
            let user = handle.split('@').next().unwrap_or_default().to_string();
            let names: Vec<String> = [handle, user, name_key(&a.display_name)]
                .into_iter()
                .filter(|n| !n.is_empty())
                .collect();
            st.signed_names.extend(names.iter().cloned());
            signed_names = Some(names);
        }
        drop(st);
        Ok((
            ch,
            Admitted {
                msg: ChatMessage {
                    id: 0,
                    nick,
                    text,
                    ts: now_rfc3339(Utc::now()),
                    author: author.cloned(),
                },
                who: Author {
                    nick: nick_key,
                    addr,
                    identity,
                },
                signed_names,
            },
        ))
    }

    /// `chat.max_message_chars`.
    pub fn max_message_chars(&self) -> usize {
        self.cfg.max_message_chars
    }

    /// `chat.blocked_words`.
    pub fn blocked_words(&self) -> &[String] {
        &self.cfg.blocked_words
    }

    /// The slow mode in force, in seconds (0: off).
    pub fn slow_mode(&self, channel: &str) -> Result<u64, ChatError> {
        let ch = self.channel(channel).ok_or(ChatError::NoChannel)?;
        let seconds = ch.lock().slow_mode.as_secs();
        Ok(seconds)
    }

    /// Sets slow mode (0 turns it off).
    pub fn set_slow_mode(&self, channel: &str, seconds: u64) -> Result<(), ChatError> {
        if seconds > MAX_SLOW_MODE_SECONDS {
            return Err(ChatError::SlowModeTooLong { seconds });
        }
        let ch = self.channel(channel).ok_or(ChatError::NoChannel)?;
        ch.lock().set_slow_mode(Duration::from_secs(seconds));
        info!(channel = %ch.name, seconds, "chat slow mode set");
        Ok(())
    }
}
