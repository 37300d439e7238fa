//! WHIP ingest (RFC 9725): browsers and OBS 30+ publish over WebRTC. The HTTP side
//! (`http::whip`) hands offers, trickled candidates and deletes to [`WhipIngest`]; the
//! sessions themselves live in one socket task ([`udp`]) that owns the UDP port
//! `webrtc.listen`, shared by every session.
//!
//! An offer is screened first ([`crate::proto::sdp::screen_offer`]: size, media sections, one
//! video codec chosen, H.264 first since it passes through), then answered by str0m as an
//! ICE-lite peer with host candidates on `webrtc.public_addresses` (empty: this machine's
//! addresses) and the one DTLS certificate made at start. A session publishes on its channel
//! once DTLS is up, through the bus's publish, so it takes over from RTMP (or another WHIP
//! session) and RTMP takes over from it the same way.
//!
//! Limits: `webrtc.max_sessions` at once and `webrtc.max_sessions_per_address`; the RTMP
//! timeouts apply (`rtmp.handshake_timeout_seconds` for DTLS to come up,
//! `rtmp.no_media_timeout_seconds` of silence). The stream key is read from the
//! `Authorization` header and compared in constant time; it is never logged.

pub mod feed;
pub mod media;
pub mod session;
mod udp;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use str0m::config::{CryptoProvider, DtlsCert};
use str0m::{Candidate, IceCreds, RtcConfig};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::bus::Bus;
use crate::config::Secret;
use crate::config::{Config, WebrtcConfig};
use crate::ingest::Ingest;
use crate::proto::sdp::{self, SdpError, VideoCodec};
use crate::transcode::convert::H264Settings;
use crate::transcode::pool::Pool;
use media::{MediaRouter, MediaSettings};
use session::Session;
pub use session::SessionId;
use udp::Command;

#[derive(Debug, thiserror::Error)]
pub enum WhipError {
    #[error("missing or wrong stream key (send it as Authorization: Bearer)")]
    Unauthorized,
    #[error("no such channel")]
    NoChannel,
    #[error("no such WHIP session")]
    NoSession,
    #[error("{0}")]
    Offer(#[from] SdpError),
    #[error("offer not accepted: {reason}")]
    Rejected { reason: String },
    #[error("{limit} WHIP sessions at once (webrtc.max_sessions) reached")]
    Full { limit: usize },
    #[error("{limit} WHIP sessions from one address (webrtc.max_sessions_per_address) reached")]
    AddressFull { limit: usize },
    #[error("If-Match does not match the session's ETag")]
    PreconditionFailed,
    #[error("ICE restarts are not supported: publish again")]
    IceRestart,
    #[error("the WebRTC service is shutting down")]
    Stopped,
}

#[derive(Debug, thiserror::Error)]
pub enum WhipStartError {
    #[error("cannot listen for WebRTC on UDP {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the crypto provider cannot make a DTLS certificate")]
    Certificate,
}

/// An accepted offer.
#[derive(Debug, Clone)]
pub struct WhipAnswer {
    pub session: SessionId,
    pub sdp: String,
    pub etag: String,
    pub video: VideoCodec,
}

/// How long, and how many, ended sessions are remembered for a late DELETE.
const ENDED_KEPT: std::time::Duration = std::time::Duration::from_secs(60);
const MAX_ENDED_KEPT: usize = 256;

/// What the HTTP side keeps per session (the socket task has the rest).
struct Registered {
    channel: String,
    ip: IpAddr,
    etag: String,
    remote_ufrag: Option<String>,
}

/// The WHIP service, shared by the HTTP handlers and the socket task.
pub struct WhipIngest {
    cfg: WebrtcConfig,
    /// The UDP address bound.
    pub addr: SocketAddr,
    /// Host candidates offered in every answer.
    pub candidates: Vec<SocketAddr>,
    crypto: Arc<CryptoProvider>,
    cert: DtlsCert,
    ingest: Arc<Ingest>,
    bus: Arc<Bus>,
    pool: Arc<Pool>,
    media: MediaSettings,
    handshake_timeout_seconds: u64,
    no_media_timeout_seconds: u64,
    /// Std mutex: short lookups and inserts, never held across an await.
    sessions: Mutex<HashMap<SessionId, Registered>>,
    /// Sessions that ended lately, by channel: a DELETE on one is answered 200 (OBS closes
    /// the peer connection first, which ends the session, then sends its DELETE).
    ended: Mutex<std::collections::VecDeque<(SessionId, String, Instant)>>,
    commands: mpsc::Sender<Command>,
}

/// This machine's addresses for host candidates: every interface's, loopback last (a browser
/// on the same machine needs it), link-local left out.
fn local_addresses() -> Vec<IpAddr> {
    let mut ips: Vec<IpAddr> = if_addrs::get_if_addrs()
        .map(|v| v.into_iter().map(|i| i.ip()).collect())
        .unwrap_or_default();
    ips.retain(|ip| match ip {
        IpAddr::V4(v4) => !v4.is_link_local() && !v4.is_unspecified(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) != 0xfe80 && !v6.is_unspecified(),
    });
    ips.sort_by_key(|ip| (ip.is_loopback(), ip.is_ipv6()));
    ips.dedup();
    ips
}

impl WhipIngest {
    /// Binds `webrtc.listen`, makes the DTLS certificate and starts the socket task.
    pub async fn start(
        cfg: &Config,
        ingest: Arc<Ingest>,
        bus: Arc<Bus>,
        pool: Arc<Pool>,
        tracker: &TaskTracker,
        cancel: CancellationToken,
    ) -> Result<Arc<WhipIngest>, WhipStartError> {
        let w = &cfg.webrtc;
        let socket = UdpSocket::bind(w.listen)
            .await
            .map_err(|source| WhipStartError::Bind {
                addr: w.listen,
                source,
            })?;
        let addr = socket.local_addr().unwrap_or(w.listen);
        let ips = if !w.public_addresses.is_empty() {
            w.public_addresses.clone()
        } else if !addr.ip().is_unspecified() {
            vec![addr.ip()]
        } else {
            local_addresses()
        };
        let candidates: Vec<SocketAddr> = ips
            .into_iter()
            .filter(|ip| addr.is_ipv6() || ip.is_ipv4())
            .map(|ip| SocketAddr::new(ip, addr.port()))
            .collect();
        let crypto = Arc::new(str0m::crypto::from_feature_flags());
        let cert = crypto
            .dtls_provider
            .generate_certificate()
            .ok_or(WhipStartError::Certificate)?;
        let (commands, rx) = mpsc::channel(64);
        let shared = Arc::new(WhipIngest {
            cfg: w.clone(),
            addr,
            candidates,
            crypto,
            cert,
            handshake_timeout_seconds: cfg.rtmp.handshake_timeout_seconds,
            no_media_timeout_seconds: cfg.rtmp.no_media_timeout_seconds,
            ingest,
            bus,
            pool,
            media: MediaSettings {
                segment_seconds: cfg.hls.segment_seconds,
                audio_kbps: w.audio_kbps,
                h264: H264Settings {
                    preset: w.convert_preset.clone(),
                    kbps: w.convert_video_kbps,
                    keyframe_seconds: cfg.hls.segment_seconds,
                    fps: 30.0,
                },
            },
            sessions: Mutex::new(HashMap::new()),
            ended: Mutex::new(std::collections::VecDeque::new()),
            commands,
        });
        info!(udp = %addr, candidates = ?shared.candidates, "WHIP ready");
        tracker.spawn(udp::run(socket, shared.clone(), rx, cancel));
        Ok(shared)
    }

    fn registry(&self) -> MutexGuard<'_, HashMap<SessionId, Registered>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The socket task ended a session.
    fn forget(&self, id: SessionId) {
        let Some(r) = self.registry().remove(&id) else {
            return;
        };
        let mut ended = self.ended.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        while ended
            .front()
            .is_some_and(|(_, _, t)| now.duration_since(*t) > ENDED_KEPT)
            || ended.len() >= MAX_ENDED_KEPT
        {
            ended.pop_front();
        }
        ended.push_back((id, r.channel, now));
    }

    fn ended_lately(&self, channel: &str, id: SessionId) -> bool {
        let ended = self.ended.lock().unwrap_or_else(|e| e.into_inner());
        ended
            .iter()
            .any(|(i, c, t)| *i == id && c == channel && t.elapsed() <= ENDED_KEPT)
    }

    /// Checks that `bearer` is `channel`'s stream key (404 before 401: an unknown channel).
    fn authorize(&self, channel: &str, bearer: Option<&str>) -> Result<(), WhipError> {
        if self.bus.get(channel).is_none() {
            return Err(WhipError::NoChannel);
        }
        match bearer.and_then(|k| self.ingest.lookup(k)) {
            Some(c) if c.as_str() == channel => Ok(()),
            _ => Err(WhipError::Unauthorized),
        }
    }

    /// `POST /whip/{channel}`: screens and answers an offer, and hands the session to the
    /// socket task.
    pub async fn offer(
        &self,
        channel: &str,
        bearer: Option<&str>,
        offer: &str,
        ip: IpAddr,
    ) -> Result<WhipAnswer, WhipError> {
        self.authorize(channel, bearer)?;
        let summary = sdp::screen_offer(offer)?;
        let bus = self.bus.get(channel).ok_or(WhipError::NoChannel)?;
        let id = SessionId::random();
        let etag = format!("\"{:016x}\"", rand::random::<u64>());
        {
            let mut reg = self.registry();
            if reg.len() >= self.cfg.max_sessions {
                return Err(WhipError::Full {
                    limit: self.cfg.max_sessions,
                });
            }
            if reg.values().filter(|r| r.ip == ip).count() >= self.cfg.max_sessions_per_address {
                return Err(WhipError::AddressFull {
                    limit: self.cfg.max_sessions_per_address,
                });
            }
            reg.insert(
                id,
                Registered {
                    channel: channel.to_string(),
                    ip,
                    etag: etag.clone(),
                    remote_ufrag: sdp::ice_ufrag(offer).map(String::from),
                },
            );
        }
        // Checked above; kept until DTLS is up, when the session publishes with it.
        let key = Secret::new(bearer.unwrap_or_default());
        let answer = self.answer(id, &bus, key, offer, &summary, ip);
        if answer.is_err() {
            self.forget(id);
        }
        let (session, sdp) = answer?;
        if self
            .commands
            .send(Command::Add(Box::new(session)))
            .await
            .is_err()
        {
            self.forget(id);
            return Err(WhipError::Stopped);
        }
        info!(
            channel,
            session = %id.short(),
            peer = %ip,
            video = summary.video.name(),
            offered = ?summary.offered.iter().map(|c| c.name()).collect::<Vec<_>>(),
            opus = summary.opus,
            "WHIP offer accepted"
        );
        Ok(WhipAnswer {
            session: id,
            sdp,
            etag,
            video: summary.video,
        })
    }

    fn answer(
        &self,
        id: SessionId,
        bus: &Arc<crate::bus::ChannelBus>,
        key: Secret,
        offer: &str,
        summary: &sdp::OfferSummary,
        ip: IpAddr,
    ) -> Result<(Session, String), WhipError> {
        let rejected = |reason: String| WhipError::Rejected { reason };
        let parsed = str0m::change::SdpOffer::from_sdp_string(offer)
            .map_err(|e| rejected(format!("SDP: {e}")))?;
        let creds = IceCreds::new();
        let ufrag = creds.ufrag.clone();
        let mut config = RtcConfig::new()
            .set_ice_lite(true)
            .set_crypto_provider(self.crypto.clone())
            .set_dtls_cert(self.cert.clone())
            .set_local_ice_credentials(creds)
            .clear_codecs()
            .enable_opus(true, false);
        config = match summary.video {
            VideoCodec::H264 => config.enable_h264(true),
            VideoCodec::Vp8 => config.enable_vp8(true),
            VideoCodec::Vp9 => config.enable_vp9(true),
            VideoCodec::Av1 => config.enable_av1(true),
        };
        let now = Instant::now();
        let mut rtc = config.build(now);
        for c in &self.candidates {
            match Candidate::host(*c, "udp") {
                Ok(c) => {
                    rtc.add_local_candidate(c);
                }
                Err(e) => warn!(candidate = %c, error = %e, "host candidate refused"),
            }
        }
        let answer = rtc
            .sdp_api()
            .accept_offer(parsed)
            .map_err(|e| rejected(e.to_string()))?;
        let media = MediaRouter::new(
            bus.name.as_str(),
            self.media.clone(),
            self.pool.clone(),
            now,
        );
        let session = Session::new(
            id,
            bus.clone(),
            session::Publisher {
                ingest: self.ingest.clone(),
                key,
            },
            ip,
            rtc,
            ufrag,
            self.candidates.clone(),
            media,
            now,
        );
        Ok((session, answer.to_sdp_string()))
    }

    /// Checks a request on an existing session: it exists, belongs to `channel`, and `bearer`
    /// is the channel's key.
    fn session_request(
        &self,
        channel: &str,
        id: SessionId,
        bearer: Option<&str>,
    ) -> Result<(), WhipError> {
        let known = self
            .registry()
            .get(&id)
            .is_some_and(|r| r.channel == channel);
        if !known {
            return Err(WhipError::NoSession);
        }
        self.authorize(channel, bearer)
    }

    /// `PATCH /whip/{channel}/{session}`: trickled candidates (RFC 8840 fragment).
    pub async fn patch(
        &self,
        channel: &str,
        id: SessionId,
        bearer: Option<&str>,
        if_match: Option<&str>,
        body: &str,
    ) -> Result<(), WhipError> {
        self.session_request(channel, id, bearer)?;
        let frag = sdp::parse_ice_fragment(body)?;
        {
            let reg = self.registry();
            let r = reg.get(&id).ok_or(WhipError::NoSession)?;
            if let Some(tag) = if_match.map(str::trim) {
                if tag != "*" && tag != r.etag {
                    return Err(WhipError::PreconditionFailed);
                }
            }
            // New credentials are an ICE restart.
            if frag.ufrag.is_some() && frag.ufrag != r.remote_ufrag {
                return Err(WhipError::IceRestart);
            }
        }
        let candidates: Vec<Candidate> = frag
            .candidates
            .iter()
            .filter_map(|(_, line)| Candidate::from_sdp_string(line).ok())
            .collect();
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Candidates {
                id,
                candidates,
                reply,
            })
            .await
            .map_err(|_| WhipError::Stopped)?;
        match answer.await {
            Ok(true) => Ok(()),
            Ok(false) => Err(WhipError::NoSession),
            Err(_) => Err(WhipError::Stopped),
        }
    }

    /// `DELETE /whip/{channel}/{session}`: the broadcast ends.
    pub async fn delete(
        &self,
        channel: &str,
        id: SessionId,
        bearer: Option<&str>,
    ) -> Result<(), WhipError> {
        if self.ended_lately(channel, id) {
            return self.authorize(channel, bearer);
        }
        self.session_request(channel, id, bearer)?;
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::End { id, reply })
            .await
            .map_err(|_| WhipError::Stopped)?;
        match answer.await {
            // Ended meanwhile by its peer: gone either way.
            Ok(_) => Ok(()),
            Err(_) => Err(WhipError::Stopped),
        }
    }

    /// Sessions at once (connecting or live), for the API and tests.
    pub fn session_count(&self) -> usize {
        self.registry().len()
    }
}
