//! The `[auth]` section: signing in with Mastodon, X or Bluesky, sessions, and cross-posting;
//! plus the identity strings of `channels[].owners` and `server.admin_identities`. Read by
//! `identity/` (providers, sessions, cross-posts) and validated from `Config::validate`.

use serde::{Deserialize, Serialize};

use super::{http_url, invalid, required_secret, ConfigError, Secret};

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Days a session lasts after sign-in; its provider tokens are dropped with it.
    pub session_days: u64,
    /// Encrypts stored provider tokens; empty: a random key kept in `{data_dir}/auth.key`.
    pub secret: Secret,
    /// Lets sign-in reach servers on private, loopback and link-local addresses (tests, LANs).
    pub allow_private_hosts: bool,
    /// Cross-posts one viewer may make per minute.
    pub cross_post_per_minute: u32,
    /// Cross-posts one viewer may make during one broadcast of a channel.
    pub cross_post_per_broadcast: u32,
    /// Seconds one request to a provider may take, connecting included.
    pub timeout_seconds: u64,
    /// Seconds a "follows the owner" answer is kept (`chat.mode = "followers"`).
    pub followers_cache_seconds: u64,
    pub mastodon: AuthMastodonConfig,
    pub x: AuthXConfig,
    pub bluesky: AuthBlueskyConfig,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            session_days: 30,
            secret: Secret::default(),
            allow_private_hosts: false,
            cross_post_per_minute: 2,
            cross_post_per_broadcast: 20,
            timeout_seconds: 10,
            followers_cache_seconds: 300,
            mastodon: AuthMastodonConfig::default(),
            x: AuthXConfig::default(),
            bluesky: AuthBlueskyConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AuthMastodonConfig {
    pub enabled: bool,
    /// Visibility of viewers' cross-posts: `public`, `unlisted`, `private`.
    pub cross_post_visibility: String,
}

impl Default for AuthMastodonConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            cross_post_visibility: "unlisted".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AuthXConfig {
    pub enabled: bool,
    /// OAuth 2.0 client id of the app registered at developer.x.com.
    pub client_id: String,
    /// Its client secret (X's "confidential client").
    pub client_secret: Secret,
    /// Where viewers are sent to approve.
    pub authorize_url: String,
    /// Base of the API: tokens at `{api_base}/2/oauth2/token`, `{api_base}/2/users/me`.
    pub api_base: String,
    /// Lets viewers post to X (billed per post by X); off: a free x.com share link instead.
    pub cross_post: bool,
}

impl Default for AuthXConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            client_id: String::new(),
            client_secret: Secret::default(),
            authorize_url: "https://x.com/i/oauth2/authorize".into(),
            api_base: "https://api.x.com".into(),
            cross_post: false,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AuthBlueskyConfig {
    pub enabled: bool,
    /// Resolves handles to DIDs (`com.atproto.identity.resolveHandle`).
    pub service: String,
    /// Serves `did:plc` documents.
    pub plc_directory: String,
    /// Public Bluesky API for profiles and follows (`app.bsky.actor.getProfile`, ...).
    pub appview: String,
}

impl Default for AuthBlueskyConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            service: "https://bsky.social".into(),
            plc_directory: "https://plc.directory".into(),
            appview: "https://public.api.bsky.app".into(),
        }
    }
}

/// A provider's name as it appears in identity strings, URLs and JSON.
pub const PROVIDERS: [&str; 3] = ["mastodon", "x", "bluesky"];

/// Checks an identity string of `channels[].owners` or `server.admin_identities`:
/// `mastodon:https://host/@name`, `x:USER_ID` (digits), `bluesky:did:plc:…` / `did:web:…`.
pub fn identity_string_ok(s: &str) -> bool {
    let Some((provider, id)) = s.split_once(':') else {
        return false;
    };
    match provider {
        "mastodon" => url::Url::parse(id).is_ok_and(|u| {
            (u.scheme() == "https" || u.scheme() == "http")
                && u.host_str().is_some()
                && u.path().len() > 1
        }),
        "x" => !id.is_empty() && id.len() <= 20 && id.bytes().all(|b| b.is_ascii_digit()),
        "bluesky" => {
            (id.starts_with("did:plc:") || id.starts_with("did:web:"))
                && id.len() <= 2048
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b":._-%".contains(&b))
        }
        _ => false,
    }
}

pub(super) fn validate_identities(key: &str, list: &[String]) -> Result<(), ConfigError> {
    for (i, s) in list.iter().enumerate() {
        if !identity_string_ok(s) {
            return Err(invalid(
                format!("{key}[{i}]"),
                format!("{s:?}"),
                "an identity: \"mastodon:https://host/@name\" (the account's URL), \"x:USER_ID\" (digits) or \"bluesky:did:plc:...\"",
            ));
        }
    }
    Ok(())
}

impl AuthConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=400).contains(&self.session_days) {
            return Err(invalid(
                "auth.session_days",
                self.session_days.to_string(),
                "1 to 400",
            ));
        }
        if !self.secret.is_empty() && self.secret.expose().len() < 16 {
            return Err(invalid(
                "auth.secret",
                "<redacted>",
                "at least 16 characters (or empty: a key file in storage.data_dir)",
            ));
        }
        if !(1..=60).contains(&self.cross_post_per_minute) {
            return Err(invalid(
                "auth.cross_post_per_minute",
                self.cross_post_per_minute.to_string(),
                "1 to 60",
            ));
        }
        if !(1..=10_000).contains(&self.cross_post_per_broadcast) {
            return Err(invalid(
                "auth.cross_post_per_broadcast",
                self.cross_post_per_broadcast.to_string(),
                "1 to 10000",
            ));
        }
        if !(1..=120).contains(&self.timeout_seconds) {
            return Err(invalid(
                "auth.timeout_seconds",
                self.timeout_seconds.to_string(),
                "1 to 120",
            ));
        }
        if !(10..=86_400).contains(&self.followers_cache_seconds) {
            return Err(invalid(
                "auth.followers_cache_seconds",
                self.followers_cache_seconds.to_string(),
                "10 to 86400",
            ));
        }
        if !["public", "unlisted", "private"]
            .contains(&self.mastodon.cross_post_visibility.as_str())
        {
            return Err(invalid(
                "auth.mastodon.cross_post_visibility",
                format!("{:?}", self.mastodon.cross_post_visibility),
                "\"public\", \"unlisted\" or \"private\"",
            ));
        }
        if self.x.enabled {
            if self.x.client_id.trim().is_empty() {
                return Err(invalid(
                    "auth.x.client_id",
                    "\"\"",
                    "the OAuth 2.0 client id of your X app while auth.x is enabled",
                ));
            }
            required_secret("auth.x.client_secret", &self.x.client_secret)?;
            http_url("auth.x.authorize_url", &self.x.authorize_url)?;
            http_url("auth.x.api_base", &self.x.api_base)?;
        }
        if self.bluesky.enabled {
            http_url("auth.bluesky.service", &self.bluesky.service)?;
            http_url("auth.bluesky.plc_directory", &self.bluesky.plc_directory)?;
            http_url("auth.bluesky.appview", &self.bluesky.appview)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_strings() {
        for ok in [
            "mastodon:https://mastodon.social/@alice",
            "mastodon:http://127.0.0.1:3000/@bob",
            "x:1234567890",
            "bluesky:did:plc:ewvi7nxzyoun6zhxrhs64oiz",
            "bluesky:did:web:example.com",
        ] {
            assert!(identity_string_ok(ok), "{ok}");
        }
        for bad in [
            "",
            "alice",
            "mastodon:@alice@mastodon.social",
            "mastodon:https://host",
            "x:@alice",
            "x:",
            "bluesky:alice.bsky.social",
            "github:123",
        ] {
            assert!(!identity_string_ok(bad), "{bad}");
        }
    }

    #[test]
    fn defaults_validate_and_bad_values_name_the_key() {
        AuthConfig::default().validate().expect("defaults");
        let mut c = AuthConfig::default();
        c.x.enabled = true;
        let e = c.validate().expect_err("x without client");
        assert!(e.to_string().contains("auth.x.client_id"), "{e}");
        let mut c = AuthConfig::default();
        c.mastodon.cross_post_visibility = "direct".into();
        let e = c.validate().expect_err("direct");
        assert!(
            e.to_string()
                .contains("auth.mastodon.cross_post_visibility"),
            "{e}"
        );
        let c = AuthConfig {
            secret: Secret::new("short"),
            ..AuthConfig::default()
        };
        let e = c.validate().expect_err("short secret");
        assert!(e.to_string().contains("auth.secret"), "{e}");
        assert!(!e.to_string().contains("short"), "{e}");
    }
}
