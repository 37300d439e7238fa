//! The serving sections: `[http]` (listeners and limits), `[hls]` (segments, parts, playlists)
//! and `[transcode]` (the worker pool and the ladder). Read by `http/`, `hls/` and `transcode/`,
//! validated from `Config::validate`.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::{invalid, is_name, positive, ConfigError};

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

impl HttpConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        positive("http.max_connections", self.max_connections as f64)?;
        positive("http.max_event_streams", self.max_event_streams as f64)?;
        positive(
            "http.header_timeout_seconds",
            self.header_timeout_seconds as f64,
        )?;
        if self.tls_cert.is_empty() != self.tls_key.is_empty() {
            return Err(invalid(
                "http.tls_key",
                format!("{:?}", self.tls_key),
                "set together with http.tls_cert (both PEM file paths), or both empty",
            ));
        }
        Ok(())
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

impl HlsConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if !(0.5..=30.0).contains(&self.segment_seconds) {
            return Err(invalid(
                "hls.segment_seconds",
                self.segment_seconds.to_string(),
                "0.5 to 30",
            ));
        }
        if !(2..=100).contains(&self.playlist_window) {
            return Err(invalid(
                "hls.playlist_window",
                self.playlist_window.to_string(),
                "2 to 100",
            ));
        }
        if !(0.1..=self.segment_seconds).contains(&self.part_seconds) {
            return Err(invalid(
                "hls.part_seconds",
                self.part_seconds.to_string(),
                "0.1 up to hls.segment_seconds",
            ));
        }
        Ok(())
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

impl TranscodeConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if !(0.5..=60.0).contains(&self.max_lag_seconds) {
            return Err(invalid(
                "transcode.max_lag_seconds",
                self.max_lag_seconds.to_string(),
                "0.5 to 60",
            ));
        }
        if self.workers > 256 {
            return Err(invalid(
                "transcode.workers",
                self.workers.to_string(),
                "0 (one per core) to 256",
            ));
        }
        let mut seen_names = std::collections::HashSet::new();
        for (i, r) in self.ladder.iter().enumerate() {
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
        Ok(())
    }
}

/// The x264 presets, fastest first.
pub(super) const X264_PRESETS: [&str; 9] = [
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
