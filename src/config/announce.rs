//! The `[announce]` section: go-live posts to X, Mastodon, Bluesky and webhooks. Read by
//! `announce/`, validated from `Config::validate`.

use serde::{Deserialize, Serialize};

use super::{
    http_url, invalid, is_name, required_secret, unknown_placeholder, ConfigError, Secret,
};

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AnnounceConfig {
    /// A channel going live again within this many seconds of going offline (a broadcaster
    /// reconnecting) is not announced again.
    pub grace_seconds: u64,
    /// Go-live text; placeholders `{channel}`, `{title}`, `{url}`.
    pub template: String,
    /// Also post when a stream ends (once it has stayed offline for `grace_seconds`).
    pub ended: bool,
    /// Text of the "ended" post; same placeholders as `template`.
    pub ended_template: String,
    /// At the end of a show (once offline for `grace_seconds`), post a link to its replay;
    /// this post replaces the "ended" one.
    pub replay_post: bool,
    /// Text of the replay post; `{url}` is the replay page.
    pub replay_template: String,
    /// Seconds a go-live post waits for the broadcast's first thumbnail to attach it; 0 posts
    /// at once, with the picture only if one is already there.
    pub picture_wait_seconds: u64,
    /// Tries per post and target (the first attempt included) before giving up.
    pub tries: u32,
    /// First retry delay in milliseconds; doubled per retry, with jitter.
    pub backoff_base_ms: u64,
    /// Longest wait between two tries, in seconds (also caps Retry-After).
    pub backoff_max_seconds: u64,
    /// Seconds one HTTP request may take, connecting included.
    pub timeout_seconds: u64,
    /// Posts waiting per target; more are dropped with a warning.
    pub queue: usize,
    pub twitter: TwitterConfig,
    pub mastodon: MastodonConfig,
    pub bluesky: BlueskyConfig,
    pub webhooks: Vec<WebhookConfig>,
}

impl Default for AnnounceConfig {
    fn default() -> Self {
        Self {
            grace_seconds: 300,
            template: "{channel} is live now: {title} {url}".into(),
            ended: false,
            ended_template: "{channel}'s stream has ended. Thanks for watching!".into(),
            replay_post: false,
            replay_template: "{channel}'s show has ended. Watch the replay: {url}".into(),
            picture_wait_seconds: 8,
            tries: 5,
            backoff_base_ms: 2000,
            backoff_max_seconds: 300,
            timeout_seconds: 10,
            queue: 32,
            twitter: TwitterConfig::default(),
            mastodon: MastodonConfig::default(),
            bluesky: BlueskyConfig::default(),
            webhooks: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TwitterConfig {
    pub enabled: bool,
    /// Base of the X API; posts go to `{api_base}/2/tweets`.
    pub api_base: String,
    pub consumer_key: Secret,
    pub consumer_secret: Secret,
    pub access_token: Secret,
    pub access_token_secret: Secret,
}

impl Default for TwitterConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            api_base: "https://api.twitter.com".into(),
            consumer_key: Secret::default(),
            consumer_secret: Secret::default(),
            access_token: Secret::default(),
            access_token_secret: Secret::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MastodonConfig {
    pub enabled: bool,
    /// The account's server, e.g. `https://mastodon.social`.
    pub instance_url: String,
    pub access_token: Secret,
    pub visibility: String,
}

impl Default for MastodonConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            instance_url: String::new(),
            access_token: Secret::default(),
            visibility: "public".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct BlueskyConfig {
    pub enabled: bool,
    /// The account's PDS (`https://bsky.social` for most accounts).
    pub service: String,
    /// Handle or DID, e.g. `alice.bsky.social`.
    pub identifier: String,
    /// An app password (Settings > Privacy and security > App passwords), never the main one.
    pub app_password: Secret,
}

impl Default for BlueskyConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            service: "https://bsky.social".into(),
            identifier: String::new(),
            app_password: Secret::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Name in logs, metrics and `announce-test --target` (default `webhook-{index}`).
    #[serde(default)]
    pub name: Option<String>,
    /// Where to POST. A secret: Discord and Slack webhook URLs carry their token.
    pub url: Secret,
    /// HMAC-SHA256 key for the `X-Onair-Signature` header; empty sends no signature.
    #[serde(default)]
    pub secret: Secret,
    /// Name of an environment variable holding `secret` (instead of `secret`).
    #[serde(default)]
    pub secret_env: Option<String>,
    /// `json` (onair's signed event) or `discord` (`{"content": ...}`).
    #[serde(default = "default_webhook_format")]
    pub format: String,
    #[serde(default = "default_true")]
    pub enabled: bool,
}

fn default_webhook_format() -> String {
    "json".into()
}
fn default_true() -> bool {
    true
}

impl AnnounceConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let a = self;
        for (key, t) in [
            ("announce.template", &a.template),
            ("announce.ended_template", &a.ended_template),
            ("announce.replay_template", &a.replay_template),
        ] {
            if t.trim().is_empty() || unknown_placeholder(t).is_some() {
                return Err(invalid(
                    key,
                    format!("{t:?}"),
                    "non-empty text whose only placeholders are {channel}, {title} and {url}",
                ));
            }
        }
        if a.picture_wait_seconds > 60 {
            return Err(invalid(
                "announce.picture_wait_seconds",
                a.picture_wait_seconds.to_string(),
                "0 to 60",
            ));
        }
        if !(1..=20).contains(&a.tries) {
            return Err(invalid("announce.tries", a.tries.to_string(), "1 to 20"));
        }
        if !(1..=600_000).contains(&a.backoff_base_ms) {
            return Err(invalid(
                "announce.backoff_base_ms",
                a.backoff_base_ms.to_string(),
                "1 to 600000",
            ));
        }
        if !(1..=3600).contains(&a.backoff_max_seconds) {
            return Err(invalid(
                "announce.backoff_max_seconds",
                a.backoff_max_seconds.to_string(),
                "1 to 3600",
            ));
        }
        if !(1..=300).contains(&a.timeout_seconds) {
            return Err(invalid(
                "announce.timeout_seconds",
                a.timeout_seconds.to_string(),
                "1 to 300",
            ));
        }
        if !(1..=10_000).contains(&a.queue) {
            return Err(invalid("announce.queue", a.queue.to_string(), "1 to 10000"));
        }
        if a.twitter.enabled {
            http_url("announce.twitter.api_base", &a.twitter.api_base)?;
            for (key, s) in [
                ("announce.twitter.consumer_key", &a.twitter.consumer_key),
                (
                    "announce.twitter.consumer_secret",
                    &a.twitter.consumer_secret,
                ),
                ("announce.twitter.access_token", &a.twitter.access_token),
                (
                    "announce.twitter.access_token_secret",
                    &a.twitter.access_token_secret,
                ),
            ] {
                required_secret(key, s)?;
            }
        }
        if a.mastodon.enabled {
            http_url("announce.mastodon.instance_url", &a.mastodon.instance_url)?;
            required_secret("announce.mastodon.access_token", &a.mastodon.access_token)?;
        }
        if !["public", "unlisted", "private", "direct"].contains(&a.mastodon.visibility.as_str()) {
            return Err(invalid(
                "announce.mastodon.visibility",
                format!("{:?}", a.mastodon.visibility),
                "\"public\", \"unlisted\", \"private\" or \"direct\"",
            ));
        }
        if a.bluesky.enabled {
            http_url("announce.bluesky.service", &a.bluesky.service)?;
            if a.bluesky.identifier.trim().is_empty() {
                return Err(invalid(
                    "announce.bluesky.identifier",
                    "\"\"",
                    "the account's handle or DID, e.g. \"alice.bsky.social\"",
                ));
            }
            required_secret("announce.bluesky.app_password", &a.bluesky.app_password)?;
        }
        let mut names =
            std::collections::HashSet::from(["twitter", "mastodon", "bluesky"].map(String::from));
        for (i, w) in a.webhooks.iter().enumerate() {
            let u = w.url.expose();
            if !(u.starts_with("http://") || u.starts_with("https://")) {
                return Err(invalid(
                    format!("announce.webhooks[{i}].url"),
                    "<redacted>",
                    "an http:// or https:// URL",
                ));
            }
            if !["json", "discord"].contains(&w.format.as_str()) {
                return Err(invalid(
                    format!("announce.webhooks[{i}].format"),
                    format!("{:?}", w.format),
                    "\"json\" or \"discord\"",
                ));
            }
            let name = w.name.clone().unwrap_or_else(|| format!("webhook-{i}"));
            if !is_name(&name) || !names.insert(name.clone()) {
                return Err(invalid(
                    format!("announce.webhooks[{i}].name"),
                    format!("{name:?}"),
                    "a unique name of a-z, A-Z, 0-9, '_' or '-', not twitter, mastodon or bluesky",
                ));
            }
        }
        Ok(())
    }
}
