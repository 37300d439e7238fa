//! Configuration: built-in defaults, then a TOML file, then `ONAIR__SECTION__KEY` environment
//! variables, merged by the `config` crate into one [`Config`] that is validated once at start.
//!
//! Every module receives its own section (`config.rtmp`, `config.hls`, ...). Secrets are held in
//! [`Secret`], whose `Debug` and `Serialize` never print the value, so `check-config` and logs
//! cannot leak a stream key or a token.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize, Serializer};

mod announce;
mod auth;
mod chat;
pub mod cluster;
mod debate;
mod ingest;
mod media;
mod record;
#[cfg(test)]
mod tests;
mod thumbnail;

pub use announce::{AnnounceConfig, BlueskyConfig, MastodonConfig, TwitterConfig, WebhookConfig};
pub use auth::{
    identity_string_ok, AuthBlueskyConfig, AuthConfig, AuthMastodonConfig, AuthXConfig, PROVIDERS,
};
pub use chat::{ChatConfig, ChatMode};
pub use debate::{DebateConfig, MAX_TIMER_SECONDS};
pub use ingest::{RtmpConfig, SrtConfig, WebrtcConfig};
use media::X264_PRESETS;
pub use media::{Container, HlsConfig, HttpConfig, RenditionConfig, TranscodeConfig};
pub use record::{RecordConfig, RecordRenditions};
pub use thumbnail::ThumbnailConfig;

/// The file used when `--config` is not given and it exists.
pub const DEFAULT_CONFIG_PATH: &str = "config/default.toml";

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file or the environment could not be read or parsed into the expected types.
    #[error("{0}")]
    Load(#[from] config::ConfigError),
    /// A value parsed but is not allowed.
    #[error("invalid value for `{key}`: {value} (allowed: {allowed})")]
    Invalid {
        key: String,
        value: String,
        allowed: String,
    },
    #[error("config file {path} does not exist")]
    Missing { path: PathBuf },
}

/// A secret string (stream key, token). Debug and Serialize redact it.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The secret itself: only for comparing and signing, never for logging.
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() {
            "\"\""
        } else {
            "\"<redacted>\""
        })
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(if self.0.is_empty() { "" } else { "<redacted>" })
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub rtmp: RtmpConfig,
    pub srt: SrtConfig,
    pub http: HttpConfig,
    pub hls: HlsConfig,
    pub transcode: TranscodeConfig,
    pub channels: Vec<ChannelConfig>,
    pub chat: ChatConfig,
    pub announce: AnnounceConfig,
    pub auth: AuthConfig,
    pub cluster: cluster::ClusterConfig,
    pub debate: DebateConfig,
    pub storage: StorageConfig,
    pub log: LogConfig,
    pub webrtc: WebrtcConfig,
    pub record: RecordConfig,
    pub thumbnail: ThumbnailConfig,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Base of every link the server hands out (watch pages in announcements).
    pub public_url: String,
    /// Bearer token for `/api/admin/`; empty turns the admin API off.
    pub admin_token: Secret,
    /// Signed-in identities with server admin rights (same form as `channels[].owners`).
    pub admin_identities: Vec<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            public_url: "http://localhost:8080".into(),
            admin_token: Secret::default(),
            admin_identities: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelConfig {
    /// Public name, used in URLs.
    pub name: String,
    /// Secret stream key.
    #[serde(default)]
    pub key: Secret,
    /// Name of an environment variable holding the key (instead of `key`).
    #[serde(default)]
    pub key_env: Option<String>,
    /// Title used in announcements.
    #[serde(default)]
    pub title: Option<String>,
    /// Identities that broadcast and moderate without the key: `mastodon:https://host/@name`,
    /// `x:USER_ID`, `bluesky:did:plc:…`.
    #[serde(default)]
    pub owners: Vec<String>,
}

/// `[storage]`: where onair keeps what outlives the process.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// Directory of the database `onair.sqlite3` and of `recordings/`; relative paths are
    /// from the working directory. Created at start if missing; must be writable.
    pub data_dir: PathBuf,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("data"),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `pretty` or `json`.
    pub format: String,
    /// Filter directive (`info`, `onair=debug`, ...); `RUST_LOG` wins when set.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: "pretty".into(),
            level: "info".into(),
        }
    }
}

impl Config {
    /// Loads defaults, then `path` (or `config/default.toml` if present), then the environment.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        Self::load_with_env(path, env)
    }

    /// [`Config::load`] with an explicit environment, so tests need not touch the process's.
    pub fn load_with_env(
        path: Option<&Path>,
        env: Vec<(String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut builder = config::Config::builder();
        match path {
            Some(p) => {
                if !p.exists() {
                    return Err(ConfigError::Missing {
                        path: p.to_path_buf(),
                    });
                }
                builder =
                    builder.add_source(config::File::from(p).format(config::FileFormat::Toml));
            }
            None => {
                let p = Path::new(DEFAULT_CONFIG_PATH);
                if p.exists() {
                    builder =
                        builder.add_source(config::File::from(p).format(config::FileFormat::Toml));
                }
            }
        }
        let env_map: config::Map<String, String> = env
            .iter()
            .filter(|(k, _)| k.starts_with("ONAIR__"))
            .cloned()
            .collect();
        builder = builder.add_source(
            config::Environment::with_prefix("ONAIR")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true)
                .list_separator(",")
                .with_list_parse_key("chat.trusted_proxies")
                .with_list_parse_key("chat.blocked_words")
                .with_list_parse_key("server.admin_identities")
                .with_list_parse_key("webrtc.public_addresses")
                .source(Some(env_map)),
        );
        let mut cfg: Config = builder.build()?.try_deserialize()?;
        cfg.resolve_env_keys(&env)?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Channels may name an environment variable holding their key (`key_env`).
    fn resolve_env_keys(&mut self, env: &[(String, String)]) -> Result<(), ConfigError> {
        for (i, ch) in self.channels.iter_mut().enumerate() {
            if let Some(var) = &ch.key_env {
                match env.iter().find(|(k, _)| k == var) {
                    Some((_, v)) => ch.key = Secret::new(v.clone()),
                    None => {
                        return Err(invalid(
                            format!("channels[{i}].key_env"),
                            format!("{var:?}"),
                            "the name of a set environment variable holding the stream key",
                        ))
                    }
                }
            }
        }
        for (i, w) in self.announce.webhooks.iter_mut().enumerate() {
            if let Some(var) = &w.secret_env {
                match env.iter().find(|(k, _)| k == var) {
                    Some((_, v)) => w.secret = Secret::new(v.clone()),
                    None => {
                        return Err(invalid(
                            format!("announce.webhooks[{i}].secret_env"),
                            format!("{var:?}"),
                            "the name of a set environment variable holding the webhook secret",
                        ))
                    }
                }
            }
        }
        Ok(())
    }

    /// Checks every value that parsed but may still be wrong.
    /// Checks every value that parsed but may still be wrong; each section checks its own keys.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(self.server.public_url.starts_with("http://")
            || self.server.public_url.starts_with("https://"))
        {
            return Err(invalid(
                "server.public_url",
                format!("{:?}", self.server.public_url),
                "an http:// or https:// URL",
            ));
        }
        self.rtmp.validate(&self.http)?;
        self.srt.validate()?;
        self.http.validate()?;
        self.webrtc.validate()?;
        self.hls.validate()?;
        self.transcode.validate()?;
        self.thumbnail.validate()?;
        let mut names = std::collections::HashSet::new();
        let mut keys = std::collections::HashSet::new();
        for (i, ch) in self.channels.iter().enumerate() {
            if !is_name(&ch.name) || !names.insert(ch.name.clone()) {
                return Err(invalid(
                    format!("channels[{i}].name"),
                    format!("{:?}", ch.name),
                    "a unique name of 1-64 characters of a-z, A-Z, 0-9, '_' or '-'",
                ));
            }
            if ch.key.expose().len() < 8 || !keys.insert(ch.key.expose().to_string()) {
                return Err(invalid(
                    format!("channels[{i}].key"),
                    "<redacted>".to_string(),
                    "a unique key of at least 8 characters (or key_env naming a variable that holds one)",
                ));
            }
            auth::validate_identities(&format!("channels[{i}].owners"), &ch.owners)?;
            if ch.key.expose() == ch.name {
                return Err(invalid(
                    format!("channels[{i}].key"),
                    "<redacted>".to_string(),
                    "a key different from the public channel name",
                ));
            }
        }
        self.chat.validate()?;
        if self.storage.data_dir.as_os_str().is_empty() {
            return Err(invalid(
                "storage.data_dir",
                "\"\"",
                "a directory path (relative to the working directory or absolute)",
            ));
        }
        if !["pretty", "json"].contains(&self.log.format.as_str()) {
            return Err(invalid(
                "log.format",
                format!("{:?}", self.log.format),
                "\"pretty\" or \"json\"",
            ));
        }
        auth::validate_identities("server.admin_identities", &self.server.admin_identities)?;
        self.auth.validate()?;
        self.record.validate()?;
        self.cluster.validate()?;
        self.debate.validate()?;
        self.announce.validate()
    }

    /// The effective settings as TOML, secrets redacted.
    pub fn to_redacted_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
}

fn invalid(key: impl Into<String>, value: impl Into<String>, allowed: &str) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        value: value.into(),
        allowed: allowed.into(),
    }
}

fn positive(key: &str, v: f64) -> Result<(), ConfigError> {
    if v > 0.0 {
        Ok(())
    } else {
        Err(invalid(key, v.to_string(), "a number greater than 0"))
    }
}

fn http_url(key: &str, v: &str) -> Result<(), ConfigError> {
    if v.starts_with("http://") || v.starts_with("https://") {
        Ok(())
    } else {
        Err(invalid(key, format!("{v:?}"), "an http:// or https:// URL"))
    }
}

fn required_secret(key: &str, s: &Secret) -> Result<(), ConfigError> {
    if s.expose().trim().is_empty() {
        let env = format!("ONAIR__{}", key.replace('.', "__").to_uppercase());
        Err(invalid(
            key,
            "\"\"",
            &format!("a non-empty value while the target is enabled (or set {env})"),
        ))
    } else {
        Ok(())
    }
}

/// The first `{...}` in an announcement template that is not a known placeholder.
pub fn unknown_placeholder(template: &str) -> Option<String> {
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        let after = &rest[start + 1..];
        let Some(end) = after.find('}') else {
            return Some(after.to_string());
        };
        let name = &after[..end];
        if !["channel", "title", "url"].contains(&name) {
            return Some(name.to_string());
        }
        rest = &after[end + 1..];
    }
    None
}

/// Names used in URLs: 1-64 of `[A-Za-z0-9_-]`.
pub fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}
