//! The `[chat]` section: history, limits, filters and who may post (`chat.mode`). Read by
//! `chat/` and `http/chat`, validated from `Config::validate`.

use serde::{Deserialize, Serialize};

use super::{positive, ConfigError};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChatConfig {
    pub history: usize,
    pub max_message_chars: usize,
    pub max_nick_chars: usize,
    pub rate_per_second: f64,
    pub burst: u32,
    pub slow_mode_seconds: u64,
    pub max_subscribers: usize,
    pub max_subscribers_per_address: usize,
    pub trusted_proxies: Vec<std::net::IpAddr>,
    pub blocked_words: Vec<String>,
    /// Deprecated: bans live in the database. A bans file of an older version is imported
    /// once at start, then rewritten after every change while this is set.
    pub bans_file: String,
    /// Who may post: anyone, signed-in viewers, or signed-in followers of the owner.
    pub mode: ChatMode,
}

/// `chat.mode`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChatMode {
    /// Anyone, under a free nick (signed-in viewers under their identity).
    #[default]
    Open,
    /// Signed-in viewers only (401 for anonymous posts).
    SignedIn,
    /// Signed-in followers of the channel's owner on the viewer's provider (403 otherwise).
    Followers,
}

impl Default for ChatConfig {
    fn default() -> Self {
        Self {
            history: 200,
            max_message_chars: 500,
            max_nick_chars: 32,
            rate_per_second: 1.5,
            burst: 3,
            slow_mode_seconds: 0,
            max_subscribers: 20_000,
            max_subscribers_per_address: 20,
            trusted_proxies: Vec::new(),
            blocked_words: Vec::new(),
            bans_file: String::new(),
            mode: ChatMode::Open,
        }
    }
}

impl ChatConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        positive("chat.history", self.history as f64)?;
        positive("chat.max_message_chars", self.max_message_chars as f64)?;
        positive("chat.max_nick_chars", self.max_nick_chars as f64)?;
        positive("chat.rate_per_second", self.rate_per_second)?;
        positive("chat.burst", self.burst as f64)?;
        positive("chat.max_subscribers", self.max_subscribers as f64)?;
        positive(
            "chat.max_subscribers_per_address",
            self.max_subscribers_per_address as f64,
        )?;
        Ok(())
    }
}
