//! The ingest sections: `[rtmp]` (RTMP and RTMPS), `[webrtc]` (WHIP) and `[srt]`. Read by
//! `ingest/` and `srt`, validated from `Config::validate`.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::{invalid, is_name, positive, ConfigError, HttpConfig, Secret, X264_PRESETS};

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

impl RtmpConfig {
    pub(super) fn validate(&self, http: &HttpConfig) -> Result<(), ConfigError> {
        if !is_name(&self.app) {
            return Err(invalid(
                "rtmp.app",
                format!("{:?}", self.app),
                "1-64 characters of a-z, A-Z, 0-9, '_' or '-'",
            ));
        }
        positive("rtmp.max_connections", self.max_connections as f64)?;
        positive(
            "rtmp.handshake_timeout_seconds",
            self.handshake_timeout_seconds as f64,
        )?;
        positive(
            "rtmp.no_media_timeout_seconds",
            self.no_media_timeout_seconds as f64,
        )?;
        if !(128..=16 << 20).contains(&self.max_chunk_size) {
            return Err(invalid(
                "rtmp.max_chunk_size",
                self.max_chunk_size.to_string(),
                "128 to 16777216",
            ));
        }
        if !(64 << 10..=0xff_ffff).contains(&self.max_message_bytes) {
            return Err(invalid(
                "rtmp.max_message_bytes",
                self.max_message_bytes.to_string(),
                "65536 to 16777215",
            ));
        }
        if self.tls_cert.is_empty() != self.tls_key.is_empty() {
            return Err(invalid(
                "rtmp.tls_key",
                format!("{:?}", self.tls_key),
                "set together with rtmp.tls_cert (both PEM file paths), or both empty",
            ));
        }
        if let Some(addr) = self.tls_listen {
            if self.tls_files(http).1.is_empty() {
                return Err(invalid(
                    "rtmp.tls_listen",
                    addr.to_string(),
                    "only with a certificate: rtmp.tls_cert and rtmp.tls_key, or http.tls_cert and http.tls_key",
                ));
            }
            if addr.port() != 0 && (addr == self.listen || addr == http.listen) {
                return Err(invalid(
                    "rtmp.tls_listen",
                    addr.to_string(),
                    "an address other than rtmp.listen and http.listen",
                ));
            }
        }
        Ok(())
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
    /// Bitrate of the AAC that Opus audio becomes (WHIP, and Enhanced RTMP Opus).
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

impl WebrtcConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let w = self;
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

impl SrtConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let srt = self;
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
}
