//! RTMP ingest: the listener and one task per connection, driving `rml_rtmp`'s handshake and
//! `ServerSession`. A publish names a stream key; the key maps to a channel (compared in constant
//! time, never logged) and the connection becomes that channel's [`Publication`] on the bus.
//! FLV audio and video tags become [`MediaPacket`]s with repaired 90 kHz timestamps.
//!
//! Limits: connections at once, handshake time, and silence from a client. Every refusal is one
//! log line naming the peer and the reason.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{
    ServerSession, ServerSessionConfig, ServerSessionError, ServerSessionEvent, ServerSessionResult,
};
use subtle::ConstantTimeEq;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, instrument, warn};

use crate::bus::{Bus, ChannelName, Publication};
use crate::config::{ChannelConfig, RtmpConfig};
use crate::proto::aac::AacConfig;
use crate::proto::avc::AvcConfig;
use crate::proto::flv::{self, AudioTag, FlvError, VideoTag};
use crate::proto::media::{MediaPacket, StreamInfo, Track};
use crate::proto::timestamps::{Repair, TimestampRepair};

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("handshake failed: {reason}")]
    Handshake { reason: String },
    #[error("handshake not finished within {seconds} s")]
    HandshakeTimeout { seconds: u64 },
    #[error("no data for {seconds} s")]
    Idle { seconds: u64 },
    #[error("RTMP protocol error: {0}")]
    Session(#[from] ServerSessionError),
    #[error("chunk size {size} is larger than rtmp.max_chunk_size {max}")]
    ChunkSize { size: u32, max: u32 },
}

/// How a connection ended, when it ended without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closed {
    ByPeer,
    Refused,
    Replaced,
    Shutdown,
}

/// Stream keys and the channels they publish to. Swapped whole on reload.
#[derive(Default)]
pub struct KeyTable {
    entries: Vec<(Vec<u8>, ChannelName)>,
}

impl KeyTable {
    pub fn new(channels: &[ChannelConfig]) -> Self {
        Self {
            entries: channels
                .iter()
                .map(|c| {
                    (
                        c.key.expose().as_bytes().to_vec(),
                        ChannelName::new(&c.name),
                    )
                })
                .collect(),
        }
    }

    /// The channel a key publishes to. Every entry is compared, in constant time, so the answer
    /// takes as long for a near miss as for a far one.
    pub fn lookup(&self, key: &str) -> Option<ChannelName> {
        let mut found = None;
        for (k, name) in &self.entries {
            if bool::from(k.as_slice().ct_eq(key.as_bytes())) {
                found = Some(name.clone());
            }
        }
        found
    }
}

/// What every connection task shares.
pub struct IngestShared {
    pub cfg: RtmpConfig,
    /// Replaced on reload; read once per publish.
    pub keys: RwLock<Arc<KeyTable>>,
    pub bus: Arc<Bus>,
}

/// Accepts RTMP connections until `cancel`.
pub async fn serve(
    listener: TcpListener,
    shared: Arc<IngestShared>,
    tracker: TaskTracker,
    cancel: CancellationToken,
) {
    let limit = Arc::new(Semaphore::new(shared.cfg.max_connections));
    loop {
        let (sock, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    warn!(error = %e, "rtmp accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = cancel.cancelled() => return,
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            warn!(%peer, limit = shared.cfg.max_connections, "rtmp connection refused: rtmp.max_connections reached");
            continue;
        };
        let _ = sock.set_nodelay(true);
        let shared = shared.clone();
        let cancel = cancel.clone();
        tracker.spawn(async move {
            let mut conn = IngestConnection::new(sock, peer, shared);
            match conn.run(&cancel).await {
                Ok(how) => debug!(%peer, ?how, "rtmp connection closed"),
                Err(e) => info!(%peer, error = %e, "rtmp connection closed"),
            }
            drop(permit);
        });
    }
}

/// One RTMP connection: owns the socket, the session and the publication.
struct IngestConnection {
    sock: TcpStream,
    peer: SocketAddr,
    shared: Arc<IngestShared>,
    session: Option<ServerSession>,
    publication: Option<Publication>,
    media: MediaState,
    buf: Vec<u8>,
}

impl IngestConnection {
    fn new(sock: TcpStream, peer: SocketAddr, shared: Arc<IngestShared>) -> Self {
        Self {
            sock,
            peer,
            shared,
            session: None,
            publication: None,
            media: MediaState::default(),
            buf: vec![0u8; 64 * 1024],
        }
    }

    #[instrument(skip_all, fields(peer = %self.peer))]
    async fn run(&mut self, cancel: &CancellationToken) -> Result<Closed, IngestError> {
        let hs_secs = self.shared.cfg.handshake_timeout_seconds;
        let remaining = tokio::select! {
            r = tokio::time::timeout(Duration::from_secs(hs_secs), self.handshake()) => match r {
                Ok(r) => r?,
                Err(_) => return Err(IngestError::HandshakeTimeout { seconds: hs_secs }),
            },
            _ = cancel.cancelled() => return Ok(Closed::Shutdown),
        };
        let Some(remaining) = remaining else {
            return Ok(Closed::ByPeer);
        };
        let (session, results) = ServerSession::new(ServerSessionConfig::new())?;
        self.session = Some(session);
        if let Some(closed) = self.handle_results(results).await? {
            return Ok(closed);
        }
        if !remaining.is_empty() {
            if let Some(closed) = self.input(&remaining).await? {
                return Ok(closed);
            }
        }
        let idle = Duration::from_secs(self.shared.cfg.no_media_timeout_seconds);
        let replaced = CancellationToken::new();
        loop {
            let kicked = self
                .publication
                .as_ref()
                .map(|p| p.cancelled().clone())
                .unwrap_or_else(|| replaced.clone());
            let n = tokio::select! {
                r = tokio::time::timeout(idle, self.sock.read(&mut self.buf)) => match r {
                    Ok(r) => r?,
                    Err(_) => return Err(IngestError::Idle { seconds: idle.as_secs() }),
                },
                _ = kicked.cancelled() => {
                    info!(channel = %self.channel_name(), "publisher disconnected: replaced by a new publish or kicked");
                    return Ok(Closed::Replaced);
                }
                _ = cancel.cancelled() => return Ok(Closed::Shutdown),
            };
            if n == 0 {
                if let Some(p) = &self.publication {
                    info!(channel = %p.channel().name, "publisher closed the connection");
                }
                return Ok(Closed::ByPeer);
            }
            let data = self.buf[..n].to_vec();
            if let Some(closed) = self.input(&data).await? {
                return Ok(closed);
            }
        }
    }

    fn channel_name(&self) -> String {
        self.publication
            .as_ref()
            .map(|p| p.channel().name.to_string())
            .unwrap_or_default()
    }

    /// Runs the handshake; returns the bytes that followed it, or None if the peer left.
    async fn handshake(&mut self) -> Result<Option<Vec<u8>>, IngestError> {
        let mut hs = Handshake::new(PeerType::Server);
        loop {
            let n = self.sock.read(&mut self.buf).await?;
            if n == 0 {
                return Ok(None);
            }
            let result = hs
                .process_bytes(&self.buf[..n])
                .map_err(|e| IngestError::Handshake {
                    reason: format!("{e:?}"),
                })?;
            match result {
                HandshakeProcessResult::InProgress { response_bytes } => {
                    self.sock.write_all(&response_bytes).await?;
                }
                HandshakeProcessResult::Completed {
                    response_bytes,
                    remaining_bytes,
                } => {
                    self.sock.write_all(&response_bytes).await?;
                    return Ok(Some(remaining_bytes));
                }
            }
        }
    }

    async fn input(&mut self, data: &[u8]) -> Result<Option<Closed>, IngestError> {
        let Some(session) = self.session.as_mut() else {
            return Ok(None);
        };
        let results = session.handle_input(data)?;
        self.handle_results(results).await
    }

    async fn handle_results(
        &mut self,
        results: Vec<ServerSessionResult>,
    ) -> Result<Option<Closed>, IngestError> {
        let mut out = Vec::new();
        let mut closed = None;
        for r in results {
            match r {
                ServerSessionResult::OutboundResponse(p) => out.extend_from_slice(&p.bytes),
                ServerSessionResult::RaisedEvent(ev) => {
                    let (more, c) = self.handle_event(ev)?;
                    for p in more {
                        if let ServerSessionResult::OutboundResponse(p) = p {
                            out.extend_from_slice(&p.bytes);
                        }
                    }
                    if c.is_some() {
                        closed = c;
                        break;
                    }
                }
                ServerSessionResult::UnhandleableMessageReceived(_) => {}
            }
        }
        if !out.is_empty() {
            self.sock.write_all(&out).await?;
        }
        Ok(closed)
    }

    /// Reacts to one session event; returns packets to send and whether to close.
    fn handle_event(
        &mut self,
        ev: ServerSessionEvent,
    ) -> Result<(Vec<ServerSessionResult>, Option<Closed>), IngestError> {
        let Some(session) = self.session.as_mut() else {
            return Ok((Vec::new(), None));
        };
        match ev {
            ServerSessionEvent::ConnectionRequested {
                request_id,
                app_name,
            } => {
                if app_name == self.shared.cfg.app {
                    Ok((session.accept_request(request_id)?, None))
                } else {
                    warn!(peer = %self.peer, app = %app_name, expected = %self.shared.cfg.app, "rtmp connect refused: unknown application");
                    let r = session.reject_request(
                        request_id,
                        "NetConnection.Connect.Rejected",
                        "unknown application",
                    )?;
                    Ok((r, Some(Closed::Refused)))
                }
            }
            ServerSessionEvent::PublishStreamRequested {
                request_id,
                stream_key,
                ..
            } => {
                let keys = self
                    .shared
                    .keys
                    .read()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone();
                let Some(channel) = keys.lookup(&stream_key) else {
                    warn!(peer = %self.peer, "publish refused: unknown stream key");
                    let r = session.reject_request(
                        request_id,
                        "NetStream.Publish.BadName",
                        "unknown stream key",
                    )?;
                    return Ok((r, Some(Closed::Refused)));
                };
                let Some(bus) = self.shared.bus.get(channel.as_str()) else {
                    warn!(peer = %self.peer, %channel, "publish refused: channel not ready");
                    let r = session.reject_request(
                        request_id,
                        "NetStream.Publish.BadName",
                        "channel not available",
                    )?;
                    return Ok((r, Some(Closed::Refused)));
                };
                let takeover = bus.publisher().is_some();
                let publication = bus.begin_publish(self.peer);
                info!(peer = %self.peer, %channel, takeover, "publish started");
                self.media = MediaState::default();
                self.publication = Some(publication);
                Ok((session.accept_request(request_id)?, None))
            }
            ServerSessionEvent::PublishStreamFinished { .. } => {
                if let Some(p) = self.publication.take() {
                    info!(channel = %p.channel().name, "publish finished");
                }
                Ok((Vec::new(), None))
            }
            ServerSessionEvent::PlayStreamRequested { request_id, .. } => {
                info!(peer = %self.peer, "rtmp play refused: playback is offered over HLS only");
                let r = session.reject_request(
                    request_id,
                    "NetStream.Play.Failed",
                    "playback is offered over HLS only",
                )?;
                Ok((r, Some(Closed::Refused)))
            }
            ServerSessionEvent::ClientChunkSizeChanged { new_chunk_size } => {
                let max = self.shared.cfg.max_chunk_size;
                if new_chunk_size > max {
                    return Err(IngestError::ChunkSize {
                        size: new_chunk_size,
                        max,
                    });
                }
                Ok((Vec::new(), None))
            }
            ServerSessionEvent::StreamMetadataChanged { metadata, .. } => {
                debug!(
                    width = ?metadata.video_width,
                    height = ?metadata.video_height,
                    fps = ?metadata.video_frame_rate,
                    encoder = ?metadata.encoder,
                    "stream metadata"
                );
                Ok((Vec::new(), None))
            }
            ServerSessionEvent::VideoDataReceived {
                data, timestamp, ..
            } => {
                if let Some(p) = &self.publication {
                    self.media.video(p, &data, timestamp.value);
                }
                Ok((Vec::new(), None))
            }
            ServerSessionEvent::AudioDataReceived {
                data, timestamp, ..
            } => {
                if let Some(p) = &self.publication {
                    self.media.audio(p, &data, timestamp.value);
                }
                Ok((Vec::new(), None))
            }
            _ => Ok((Vec::new(), None)),
        }
    }
}

/// Per-publication media state: codec configuration and timestamp repair.
#[derive(Default)]
struct MediaState {
    info: StreamInfo,
    timestamps: TimestampRepair,
    warned_video: bool,
    warned_audio: bool,
    warned_early: bool,
}

impl MediaState {
    fn video(&mut self, p: &Publication, data: &Bytes, ts: u32) {
        let stats = &p.channel().stats;
        stats
            .bytes_in
            .fetch_add(data.len() as u64, std::sync::atomic::Ordering::Relaxed);
        match flv::parse_video(data) {
            Ok(VideoTag::AvcSequenceHeader(record)) => match AvcConfig::parse(record) {
                Ok(cfg) => {
                    if self.info.video.as_deref() != Some(&cfg) {
                        info!(
                            channel = %p.channel().name,
                            width = cfg.width,
                            height = cfg.height,
                            codec = %cfg.codec_string(),
                            "video configuration"
                        );
                        self.info.video = Some(Arc::new(cfg));
                        p.set_info(self.info.clone());
                    }
                }
                Err(e) => {
                    warn!(channel = %p.channel().name, error = %e, "bad H.264 configuration ignored")
                }
            },
            Ok(VideoTag::AvcFrame {
                keyframe,
                composition_ms,
                data,
            }) => {
                if self.info.video.is_none() {
                    self.warn_early(p);
                    return;
                }
                let (dts, pts, repair) = self.timestamps.map(Track::Video, ts, composition_ms);
                self.log_repair(p, repair);
                stats
                    .video_frames
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                p.send_packet(MediaPacket {
                    track: Track::Video,
                    dts,
                    pts,
                    keyframe,
                    data,
                });
            }
            Ok(VideoTag::Ignore) => {}
            Err(e) => self.warn_codec(p, Track::Video, e),
        }
    }

    fn audio(&mut self, p: &Publication, data: &Bytes, ts: u32) {
        let stats = &p.channel().stats;
        stats
            .bytes_in
            .fetch_add(data.len() as u64, std::sync::atomic::Ordering::Relaxed);
        match flv::parse_audio(data) {
            Ok(AudioTag::AacSequenceHeader(asc)) => match AacConfig::parse(asc) {
                Ok(cfg) => {
                    if self.info.audio.as_deref() != Some(&cfg) {
                        info!(
                            channel = %p.channel().name,
                            sample_rate = cfg.sample_rate,
                            channels = cfg.channels,
                            "audio configuration"
                        );
                        self.info.audio = Some(Arc::new(cfg));
                        p.set_info(self.info.clone());
                    }
                }
                Err(e) => {
                    warn!(channel = %p.channel().name, error = %e, "bad AAC configuration ignored")
                }
            },
            Ok(AudioTag::AacFrame(frame)) => {
                if self.info.audio.is_none() {
                    self.warn_early(p);
                    return;
                }
                let (dts, pts, repair) = self.timestamps.map(Track::Audio, ts, 0);
                self.log_repair(p, repair);
                stats
                    .audio_frames
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                p.send_packet(MediaPacket {
                    track: Track::Audio,
                    dts,
                    pts,
                    keyframe: true,
                    data: frame,
                });
            }
            Err(e) => self.warn_codec(p, Track::Audio, e),
        }
    }

    fn warn_early(&mut self, p: &Publication) {
        if !self.warned_early {
            self.warned_early = true;
            warn!(channel = %p.channel().name, "media before its sequence header dropped");
        }
    }

    fn warn_codec(&mut self, p: &Publication, track: Track, e: FlvError) {
        let warned = match track {
            Track::Video => &mut self.warned_video,
            Track::Audio => &mut self.warned_audio,
        };
        if !*warned {
            *warned = true;
            warn!(channel = %p.channel().name, error = %e, "track ignored: onair takes H.264 video and AAC audio");
        }
    }

    fn log_repair(&self, p: &Publication, repair: Repair) {
        match repair {
            Repair::None => {}
            Repair::Clamped => {
                debug!(channel = %p.channel().name, "non-monotonic timestamp clamped")
            }
            Repair::Rebased { jump_ms } => {
                info!(channel = %p.channel().name, jump_ms, "timestamp jump repaired; the timeline carries on")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    #[test]
    fn key_lookup() {
        let table = KeyTable::new(&[
            ChannelConfig {
                name: "alice".into(),
                key: Secret::new("alice-secret-1"),
                key_env: None,
                title: None,
            },
            ChannelConfig {
                name: "bob".into(),
                key: Secret::new("bob-secret-22"),
                key_env: None,
                title: None,
            },
        ]);
        let cases = [
            ("alice-secret-1", Some("alice")),
            ("bob-secret-22", Some("bob")),
            ("alice-secret-", None),
            ("alice", None),
            ("", None),
        ];
        for (key, want) in cases {
            assert_eq!(
                table.lookup(key).map(|c| c.to_string()),
                want.map(String::from),
                "{key}"
            );
        }
    }
}
