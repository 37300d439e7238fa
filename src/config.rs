//! Configuration: built-in defaults, then a TOML file, then `ONAIR__SECTION__KEY` environment
//! variables, merged by the `config` crate into one [`Config`] that is validated once at start.
//!
//! Every module receives its own section (`config.rtmp`, `config.hls`, ...). Secrets are held in
//! [`Secret`], whose `Debug` and `Serialize` never print the value, so `check-config` and logs
//! cannot leak a stream key or a token.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize, Serializer};

mod auth;
pub mod cluster;
pub use auth::{
    identity_string_ok, AuthBlueskyConfig, AuthConfig, AuthMastodonConfig, AuthXConfig, PROVIDERS,
};

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
    pub storage: StorageConfig,
    pub log: LogConfig,
    pub webrtc: WebrtcConfig,
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
#[serde(default, deny_unknown_fields)]
pub struct RtmpConfig {
    pub listen: SocketAddr,
    /// Application name in `rtmp://host/{app}/{key}`.
    pub app: String,
    /// Connections served at once; more are closed right after accept.
    pub max_connections: usize,
    /// Seconds a client has to finish the RTMP handshake and start publishing.
    pub handshake_timeout_seconds: u64,
    /// Seconds without any data from a publisher before it is disconnected.
    pub no_media_timeout_seconds: u64,
    /// Largest chunk size a client may announce, in bytes.
    pub max_chunk_size: u32,
    /// Largest RTMP message a client may declare, in bytes (a keyframe must fit).
    pub max_message_bytes: u32,
    /// RTMPS (RTMP over TLS) listener, e.g. `"0.0.0.0:1936"`; off when absent.
    pub tls_listen: Option<SocketAddr>,
    /// PEM certificate chain for RTMPS; empty: `http.tls_cert`.
    pub tls_cert: String,
    /// PEM private key for `rtmp.tls_cert`; empty: `http.tls_key`.
    pub tls_key: String,
}

impl RtmpConfig {
    /// The certificate and key files RTMPS uses, with the section that names them: its own,
    /// or else the HTTP server's.
    pub fn tls_files<'a>(&'a self, http: &'a HttpConfig) -> (&'static str, &'a str, &'a str) {
        if self.tls_cert.is_empty() {
            ("http", &http.tls_cert, &http.tls_key)
        } else {
            ("rtmp", &self.tls_cert, &self.tls_key)
        }
    }
}

impl Default for RtmpConfig {
    fn default() -> Self {
        Self {
            listen: ([0, 0, 0, 0], 1935).into(),
            app: "live".into(),
            max_connections: 256,
            handshake_timeout_seconds: 10,
            no_media_timeout_seconds: 10,
            max_chunk_size: 1 << 20,
            max_message_bytes: 8 << 20,
            tls_listen: None,
            tls_cert: String::new(),
            tls_key: String::new(),
        }
    }
}

/// `[webrtc]`: WHIP ingest (`POST /whip/{channel}`) and its UDP media port.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WebrtcConfig {
    /// The one UDP socket every WebRTC session shares (ICE, DTLS, SRTP).
    pub listen: SocketAddr,
    /// Addresses put in the ICE candidates of answers; empty: this machine's addresses.
    pub public_addresses: Vec<std::net::IpAddr>,
    /// WHIP sessions at once (connecting or live).
    pub max_sessions: usize,
    /// WHIP sessions at once from one client address.
    pub max_sessions_per_address: usize,
    /// x264 preset for browser video that is not H.264 (VP8, VP9, AV1) re-encoded to H.264.
    pub convert_preset: String,
    /// Bitrate of that re-encoded video; 0 picks one from the picture size.
    pub convert_video_kbps: u32,
    /// Bitrate of the AAC that browser Opus audio becomes.
    pub audio_kbps: u32,
}

impl Default for WebrtcConfig {
    fn default() -> Self {
        Self {
            listen: ([0, 0, 0, 0], 8189).into(),
            public_addresses: Vec::new(),
            max_sessions: 32,
            max_sessions_per_address: 4,
            convert_preset: "veryfast".into(),
            convert_video_kbps: 0,
            audio_kbps: 128,
        }
    }
}

/// SRT ingest (`srt://host:port?streamid=publish:KEY`, MPEG-TS payload).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SrtConfig {
    /// UDP address of the SRT listener, e.g. `"0.0.0.0:8890"`; empty turns SRT off.
    pub listen: String,
    /// Receiver latency in milliseconds (libsrt uses the larger of this and the caller's).
    pub latency_ms: u32,
    /// AES passphrase (10 to 79 characters) callers must use; empty: unencrypted.
    pub passphrase: Secret,
    /// SRT connections served at once; more are refused at handshake.
    pub max_connections: usize,
    /// Seconds an accepted caller has to send its first audio or video frame.
    pub handshake_timeout_seconds: u64,
    /// Seconds without audio or video from a caller before it is disconnected.
    pub no_media_timeout_seconds: u64,
}

impl SrtConfig {
    /// The listener's address; `None` when SRT is off (or the value is invalid, which
    /// [`Config::validate`] refuses).
    pub fn listen_addr(&self) -> Option<SocketAddr> {
        self.listen.trim().parse().ok()
    }
}

impl Default for SrtConfig {
    fn default() -> Self {
        Self {
            listen: "0.0.0.0:8890".into(),
            latency_ms: 120,
            passphrase: Secret::default(),
            max_connections: 64,
            handshake_timeout_seconds: 10,
            no_media_timeout_seconds: 10,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    /// Connections served at once; more wait in the kernel's backlog. Event streams do not
    /// count here once they are open (see `max_event_streams`).
    pub max_connections: usize,
    /// Chat event streams held open at once, all channels together: a budget of their own,
    /// so that idle subscribers cannot starve playlists, segments, chat posts and the API.
    pub max_event_streams: usize,
    /// Seconds a client has to send its request headers.
    pub header_timeout_seconds: u64,
    /// PEM certificate chain; with `tls_key`, HTTP is served over TLS (HTTP/2 by ALPN).
    pub tls_cert: String,
    /// PEM private key for `tls_cert`.
    pub tls_key: String,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: ([0, 0, 0, 0], 8080).into(),
            max_connections: 4096,
            max_event_streams: 20_000,
            header_timeout_seconds: 10,
            tls_cert: String::new(),
            tls_key: String::new(),
        }
    }
}

/// Segment container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Container {
    Ts,
    Fmp4,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct HlsConfig {
    /// A segment is cut at the first keyframe after this many seconds.
    pub segment_seconds: f64,
    /// Segments listed in a live media playlist.
    pub playlist_window: usize,
    pub container: Container,
    /// Length of low-latency parts.
    pub part_seconds: f64,
    /// Seconds a finished stream's playlists stay served (with ENDLIST) before they are freed.
    pub linger_seconds: u64,
}

impl Default for HlsConfig {
    fn default() -> Self {
        Self {
            segment_seconds: 2.0,
            playlist_window: 6,
            // Low latency by default: chat is a conversation (glass-to-glass about 1 s with
            // hls.js; docs/benchmarks.md). `ts` stays for the oldest players.
            container: Container::Fmp4,
            part_seconds: 0.2,
            linger_seconds: 60,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TranscodeConfig {
    /// Worker threads; 0 means one per core.
    pub workers: usize,
    /// How far (seconds of wall clock) a rendition may fall behind its input before the pool
    /// sheds renditions instead of stalling.
    pub max_lag_seconds: f64,
    pub ladder: Vec<RenditionConfig>,
}

impl Default for TranscodeConfig {
    fn default() -> Self {
        Self {
            workers: 0,
            max_lag_seconds: 3.0,
            ladder: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RenditionConfig {
    pub name: String,
    pub height: u32,
    pub video_kbps: u32,
    pub audio_kbps: u32,
    #[serde(default = "default_preset")]
    pub preset: String,
    #[serde(default)]
    pub max_fps: Option<f64>,
    #[serde(default)]
    pub profile: Option<String>,
}

fn default_preset() -> String {
    "veryfast".into()
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

/// `[storage]`: where onair keeps what outlives the process.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// Directory of the database `onair.sqlite3` (and, next, recordings); relative paths are
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
        if !is_name(&self.rtmp.app) {
            return Err(invalid(
                "rtmp.app",
                format!("{:?}", self.rtmp.app),
                "1-64 characters of a-z, A-Z, 0-9, '_' or '-'",
            ));
        }
        positive("rtmp.max_connections", self.rtmp.max_connections as f64)?;
        positive(
            "rtmp.handshake_timeout_seconds",
            self.rtmp.handshake_timeout_seconds as f64,
        )?;
        positive(
            "rtmp.no_media_timeout_seconds",
            self.rtmp.no_media_timeout_seconds as f64,
        )?;
        if !(128..=16 << 20).contains(&self.rtmp.max_chunk_size) {
            return Err(invalid(
                "rtmp.max_chunk_size",
                self.rtmp.max_chunk_size.to_string(),
                "128 to 16777216",
            ));
        }
        if !(64 << 10..=0xff_ffff).contains(&self.rtmp.max_message_bytes) {
            return Err(invalid(
                "rtmp.max_message_bytes",
                self.rtmp.max_message_bytes.to_string(),
                "65536 to 16777215",
            ));
        }
        self.validate_srt()?;
        positive("http.max_connections", self.http.max_connections as f64)?;
        positive("http.max_event_streams", self.http.max_event_streams as f64)?;
        positive(
            "http.header_timeout_seconds",
            self.http.header_timeout_seconds as f64,
        )?;
        self.validate_webrtc()?;
        if self.http.tls_cert.is_empty() != self.http.tls_key.is_empty() {
            return Err(invalid(
                "http.tls_key",
                format!("{:?}", self.http.tls_key),
                "set together with http.tls_cert (both PEM file paths), or both empty",
            ));
        }
        if self.rtmp.tls_cert.is_empty() != self.rtmp.tls_key.is_empty() {
            return Err(invalid(
                "rtmp.tls_key",
                format!("{:?}", self.rtmp.tls_key),
                "set together with rtmp.tls_cert (both PEM file paths), or both empty",
            ));
        }
        if let Some(addr) = self.rtmp.tls_listen {
            if self.rtmp.tls_files(&self.http).1.is_empty() {
                return Err(invalid(
                    "rtmp.tls_listen",
                    addr.to_string(),
                    "only with a certificate: rtmp.tls_cert and rtmp.tls_key, or http.tls_cert and http.tls_key",
                ));
            }
            if addr.port() != 0 && (addr == self.rtmp.listen || addr == self.http.listen) {
                return Err(invalid(
                    "rtmp.tls_listen",
                    addr.to_string(),
                    "an address other than rtmp.listen and http.listen",
                ));
            }
        }
        if !(0.5..=30.0).contains(&self.hls.segment_seconds) {
            return Err(invalid(
                "hls.segment_seconds",
                self.hls.segment_seconds.to_string(),
                "0.5 to 30",
            ));
        }
        if !(2..=100).contains(&self.hls.playlist_window) {
            return Err(invalid(
                "hls.playlist_window",
                self.hls.playlist_window.to_string(),
                "2 to 100",
            ));
        }
        if !(0.1..=self.hls.segment_seconds).contains(&self.hls.part_seconds) {
            return Err(invalid(
                "hls.part_seconds",
                self.hls.part_seconds.to_string(),
                "0.1 up to hls.segment_seconds",
            ));
        }
        if !(0.5..=60.0).contains(&self.transcode.max_lag_seconds) {
            return Err(invalid(
                "transcode.max_lag_seconds",
                self.transcode.max_lag_seconds.to_string(),
                "0.5 to 60",
            ));
        }
        if self.transcode.workers > 256 {
            return Err(invalid(
                "transcode.workers",
                self.transcode.workers.to_string(),
                "0 (one per core) to 256",
            ));
        }
        let mut seen_names = std::collections::HashSet::new();
        for (i, r) in self.transcode.ladder.iter().enumerate() {
            if !is_name(&r.name) || r.name == "source" || !seen_names.insert(r.name.clone()) {
                return Err(invalid(
                    format!("transcode.ladder[{i}].name"),
                    format!("{:?}", r.name),
                    "a unique name of a-z, A-Z, 0-9, '_' or '-', not \"source\"",
                ));
            }
            if !(64..=4320).contains(&r.height) || r.height % 2 != 0 {
                return Err(invalid(
                    format!("transcode.ladder[{i}].height"),
                    r.height.to_string(),
                    "an even number from 64 to 4320",
                ));
            }
            if !(50..=100_000).contains(&r.video_kbps) {
                return Err(invalid(
                    format!("transcode.ladder[{i}].video_kbps"),
                    r.video_kbps.to_string(),
                    "50 to 100000",
                ));
            }
            if !(16..=512).contains(&r.audio_kbps) {
                return Err(invalid(
                    format!("transcode.ladder[{i}].audio_kbps"),
                    r.audio_kbps.to_string(),
                    "16 to 512",
                ));
            }
            if !X264_PRESETS.contains(&r.preset.as_str()) {
                return Err(invalid(
                    format!("transcode.ladder[{i}].preset"),
                    format!("{:?}", r.preset),
                    "an x264 preset: ultrafast, superfast, veryfast, faster, fast, medium, slow, slower, veryslow",
                ));
            }
            if let Some(fps) = r.max_fps {
                if !(1.0..=240.0).contains(&fps) {
                    return Err(invalid(
                        format!("transcode.ladder[{i}].max_fps"),
                        fps.to_string(),
                        "1 to 240",
                    ));
                }
            }
            if let Some(p) = &r.profile {
                // Profiles every browser's hardware decoder handles (no 4:2:2, no 10-bit).
                if !["baseline", "main", "high"].contains(&p.as_str()) {
                    return Err(invalid(
                        format!("transcode.ladder[{i}].profile"),
                        format!("{p:?}"),
                        "baseline, main or high",
                    ));
                }
            }
        }
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
        positive("chat.history", self.chat.history as f64)?;
        positive("chat.max_message_chars", self.chat.max_message_chars as f64)?;
        positive("chat.max_nick_chars", self.chat.max_nick_chars as f64)?;
        positive("chat.rate_per_second", self.chat.rate_per_second)?;
        positive("chat.burst", self.chat.burst as f64)?;
        positive("chat.max_subscribers", self.chat.max_subscribers as f64)?;
        positive(
            "chat.max_subscribers_per_address",
            self.chat.max_subscribers_per_address as f64,
        )?;
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
        self.cluster.validate()?;
        self.validate_announce()
    }

    fn validate_srt(&self) -> Result<(), ConfigError> {
        let srt = &self.srt;
        if !srt.listen.trim().is_empty() && srt.listen_addr().is_none() {
            return Err(invalid(
                "srt.listen",
                format!("{:?}", srt.listen),
                "a UDP address such as \"0.0.0.0:8890\", or empty to turn SRT off",
            ));
        }
        if srt.latency_ms > 30_000 {
            return Err(invalid(
                "srt.latency_ms",
                srt.latency_ms.to_string(),
                "0 to 30000",
            ));
        }
        let p = srt.passphrase.expose();
        if !p.is_empty() && !crate::srt::passphrase_ok(p) {
            return Err(invalid(
                "srt.passphrase",
                format!("<{} characters>", p.len()),
                "empty, or 10 to 79 characters (libsrt's AES passphrase)",
            ));
        }
        positive("srt.max_connections", srt.max_connections as f64)?;
        positive(
            "srt.handshake_timeout_seconds",
            srt.handshake_timeout_seconds as f64,
        )?;
        positive(
            "srt.no_media_timeout_seconds",
            srt.no_media_timeout_seconds as f64,
        )
    }

    fn validate_announce(&self) -> Result<(), ConfigError> {
        let a = &self.announce;
        for (key, t) in [
            ("announce.template", &a.template),
            ("announce.ended_template", &a.ended_template),
        ] {
            if t.trim().is_empty() || unknown_placeholder(t).is_some() {
                return Err(invalid(
                    key,
                    format!("{t:?}"),
                    "non-empty text whose only placeholders are {channel}, {title} and {url}",
                ));
            }
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

    fn validate_webrtc(&self) -> Result<(), ConfigError> {
        let w = &self.webrtc;
        positive("webrtc.max_sessions", w.max_sessions as f64)?;
        positive(
            "webrtc.max_sessions_per_address",
            w.max_sessions_per_address as f64,
        )?;
        if let Some(ip) = w
            .public_addresses
            .iter()
            .find(|ip| ip.is_unspecified() || ip.is_multicast())
        {
            return Err(invalid(
                "webrtc.public_addresses",
                ip.to_string(),
                "addresses browsers can reach (not 0.0.0.0, ::, or multicast)",
            ));
        }
        if !X264_PRESETS.contains(&w.convert_preset.as_str()) {
            return Err(invalid(
                "webrtc.convert_preset",
                format!("{:?}", w.convert_preset),
                "an x264 preset: ultrafast, superfast, veryfast, faster, fast, medium, slow, slower, veryslow",
            ));
        }
        if !(16..=512).contains(&w.audio_kbps) {
            return Err(invalid(
                "webrtc.audio_kbps",
                w.audio_kbps.to_string(),
                "16 to 512",
            ));
        }
        Ok(())
    }

    /// The effective settings as TOML, secrets redacted.
    pub fn to_redacted_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
}

/// The x264 presets, fastest first.
const X264_PRESETS: [&str; 9] = [
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
];

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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file(text: &str) -> tempfile_like::TempToml {
        tempfile_like::TempToml::new(text)
    }

    /// A tiny temp-file helper; the std library has none and a dev-dependency is not worth it.
    mod tempfile_like {
        use super::*;
        pub struct TempToml(pub PathBuf);
        impl TempToml {
            pub fn new(text: &str) -> Self {
                static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
                let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let p =
                    std::env::temp_dir().join(format!("onair-cfg-{}-{n}.toml", std::process::id()));
                let mut f = std::fs::File::create(&p).expect("temp file");
                f.write_all(text.as_bytes()).expect("write temp file");
                Self(p)
            }
        }
        impl Drop for TempToml {
            fn drop(&mut self) {
                let _ = std::fs::remove_file(&self.0);
            }
        }
    }

    #[test]
    fn defaults_are_valid() {
        Config::default().validate().expect("defaults validate");
    }

    #[test]
    fn shipped_config_is_valid() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/default.toml");
        let cfg = Config::load_with_env(Some(&p), vec![]).expect("shipped config loads");
        assert!(!cfg.channels.is_empty());
    }

    #[test]
    fn env_overrides_file() {
        let f = file("[http]\nlisten = \"127.0.0.1:1000\"\n");
        let cfg = Config::load_with_env(
            Some(&f.0),
            vec![
                ("ONAIR__HTTP__LISTEN".into(), "127.0.0.1:9000".into()),
                ("ONAIR__HLS__SEGMENT_SECONDS".into(), "4".into()),
                (
                    "ONAIR__WEBRTC__PUBLIC_ADDRESSES".into(),
                    "203.0.113.7,2001:db8::1".into(),
                ),
            ],
        )
        .expect("loads");
        assert_eq!(cfg.http.listen, "127.0.0.1:9000".parse().unwrap());
        assert_eq!(cfg.hls.segment_seconds, 4.0);
        // A container sets the address browsers reach from its environment.
        let want: Vec<std::net::IpAddr> = vec![
            "203.0.113.7".parse().unwrap(),
            "2001:db8::1".parse().unwrap(),
        ];
        assert_eq!(cfg.webrtc.public_addresses, want);
    }

    #[test]
    fn errors_name_key_value_and_allowed() {
        let cases = [
            ("[hls]\nsegment_seconds = 100\n", "hls.segment_seconds"),
            ("[hls]\ncontainer = \"mkv\"\n", "container"),
            (
                "[[channels]]\nname = \"a b\"\nkey = \"0123456789\"\n",
                "channels[0].name",
            ),
            (
                "[[channels]]\nname = \"ab\"\nkey = \"short\"\n",
                "channels[0].key",
            ),
            ("[rtmp]\nlisten = \"nowhere\"\n", "rtmp.listen"),
            ("[webrtc]\nmax_sessions = 0\n", "webrtc.max_sessions"),
            (
                "[webrtc]\npublic_addresses = [\"0.0.0.0\"]\n",
                "webrtc.public_addresses",
            ),
            (
                "[webrtc]\nconvert_preset = \"turbo\"\n",
                "webrtc.convert_preset",
            ),
            ("[webrtc]\naudio_kbps = 4\n", "webrtc.audio_kbps"),
            ("[srt]\nlisten = \"8890\"\n", "srt.listen"),
            ("[srt]\nlatency_ms = 60000\n", "srt.latency_ms"),
            ("[srt]\npassphrase = \"short\"\n", "srt.passphrase"),
            ("[srt]\nno_media_timeout_seconds = 0\n", "srt.no_media_timeout_seconds"),
            ("[bogus]\nx = 1\n", "bogus"),
            (
                "[transcode]\nmax_lag_seconds = 0\n",
                "transcode.max_lag_seconds",
            ),
            (
                "[[transcode.ladder]]\nname = \"a\"\nheight = 360\nvideo_kbps = 800\naudio_kbps = 64\nprofile = \"high10\"\n",
                "transcode.ladder[0].profile",
            ),
            (
                "[[transcode.ladder]]\nname = \"a\"\nheight = 360\nvideo_kbps = 800\naudio_kbps = 64\nmax_fps = 0\n",
                "transcode.ladder[0].max_fps",
            ),
            ("[storage]\ndata_dir = \"\"\n", "storage.data_dir"),
        ];
        for (text, key) in cases {
            let f = file(text);
            let err = Config::load_with_env(Some(&f.0), vec![]).expect_err(text);
            let msg = err.to_string();
            assert!(msg.contains(key), "{text:?} gave {msg:?}");
        }
    }

    #[test]
    fn srt_can_be_turned_off_and_its_passphrase_is_redacted() {
        let f = file("[srt]\nlisten = \"\"\npassphrase = \"a-long-passphrase\"\n");
        let cfg = Config::load_with_env(Some(&f.0), vec![]).expect("loads");
        assert_eq!(cfg.srt.listen_addr(), None);
        assert!(!cfg.to_redacted_toml().contains("a-long-passphrase"));
        assert_eq!(
            Config::default().srt.listen_addr(),
            Some(([0, 0, 0, 0], 8890).into())
        );
    }

    #[test]
    fn key_from_environment_and_redaction() {
        let f = file("[[channels]]\nname = \"alice\"\nkey_env = \"ALICE_KEY\"\n");
        let cfg = Config::load_with_env(
            Some(&f.0),
            vec![("ALICE_KEY".into(), "supersecretkey".into())],
        )
        .expect("loads");
        assert_eq!(cfg.channels[0].key.expose(), "supersecretkey");
        let shown = cfg.to_redacted_toml();
        assert!(!shown.contains("supersecretkey"));
        assert!(shown.contains("<redacted>"));
        assert!(!format!("{cfg:?}").contains("supersecretkey"));
    }

    #[test]
    fn announce_secrets_from_environment_are_redacted() {
        let f = file(
            "[announce.twitter]\nenabled = true\nconsumer_key = \"ck-from-file\"\n\
             [[announce.webhooks]]\nurl = \"https://discord.example/api/webhooks/1/tok3n\"\n\
             secret_env = \"HOOK_SECRET\"\n",
        );
        let cfg = Config::load_with_env(
            Some(&f.0),
            vec![
                (
                    "ONAIR__ANNOUNCE__TWITTER__CONSUMER_SECRET".into(),
                    "cs-from-env".into(),
                ),
                (
                    "ONAIR__ANNOUNCE__TWITTER__ACCESS_TOKEN".into(),
                    "1234567".into(),
                ),
                (
                    "ONAIR__ANNOUNCE__TWITTER__ACCESS_TOKEN_SECRET".into(),
                    "ats-from-env".into(),
                ),
                ("HOOK_SECRET".into(), "hook-secret-value".into()),
            ],
        )
        .expect("loads");
        let t = &cfg.announce.twitter;
        assert_eq!(t.consumer_key.expose(), "ck-from-file");
        assert_eq!(t.consumer_secret.expose(), "cs-from-env");
        assert_eq!(t.access_token.expose(), "1234567");
        assert_eq!(
            cfg.announce.webhooks[0].secret.expose(),
            "hook-secret-value"
        );
        let shown = format!("{}{cfg:?}", cfg.to_redacted_toml());
        for secret in [
            "ck-from-file",
            "cs-from-env",
            "1234567",
            "ats-from-env",
            "hook-secret-value",
            "tok3n",
        ] {
            assert!(!shown.contains(secret), "{secret} shown");
        }
    }

    #[test]
    fn announce_errors_name_the_key() {
        let cases = [
            (
                "[announce.twitter]\nenabled = true\n",
                "announce.twitter.consumer_key",
            ),
            (
                "[announce.mastodon]\nenabled = true\ninstance_url = \"mastodon.social\"\n",
                "announce.mastodon.instance_url",
            ),
            (
                "[announce.mastodon]\nenabled = true\ninstance_url = \"https://m.example\"\n",
                "ONAIR__ANNOUNCE__MASTODON__ACCESS_TOKEN",
            ),
            (
                "[announce.mastodon]\nvisibility = \"everyone\"\n",
                "announce.mastodon.visibility",
            ),
            (
                "[announce]\ntemplate = \"{channel} {key}\"\n",
                "announce.template",
            ),
            ("[announce]\ntries = 0\n", "announce.tries"),
            (
                "[announce]\ntimeout_seconds = 0\n",
                "announce.timeout_seconds",
            ),
            (
                "[announce.bluesky]\nenabled = true\napp_password = \"x\"\n",
                "announce.bluesky.identifier",
            ),
            (
                "[[announce.webhooks]]\nurl = \"ftp://x\"\n",
                "announce.webhooks[0].url",
            ),
            (
                "[[announce.webhooks]]\nurl = \"http://x\"\nformat = \"slack\"\n",
                "announce.webhooks[0].format",
            ),
            (
                "[[announce.webhooks]]\nurl = \"http://x\"\nname = \"twitter\"\n",
                "announce.webhooks[0].name",
            ),
            (
                "[[announce.webhooks]]\nurl = \"http://x\"\nsecret_env = \"NOPE_UNSET\"\n",
                "announce.webhooks[0].secret_env",
            ),
        ];
        for (text, key) in cases {
            let f = file(text);
            let err = Config::load_with_env(Some(&f.0), vec![]).expect_err(text);
            let msg = err.to_string();
            assert!(msg.contains(key), "{text:?} gave {msg:?}");
        }
        assert_eq!(unknown_placeholder("{channel} {title} {url}"), None);
        assert_eq!(
            unknown_placeholder("{stream_key}"),
            Some("stream_key".into())
        );
        assert_eq!(unknown_placeholder("open {brace"), Some("brace".into()));
    }
}
