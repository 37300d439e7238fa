//! RTMP ingest: the listener and one task per connection, driving `rml_rtmp`'s handshake and
//! `ServerSession`. A publish names a stream key; the key maps to a channel (compared in constant
//! time, never logged) and the connection becomes that channel's [`Publication`] on the bus.
//! FLV audio and video tags become [`MediaPacket`]s with repaired 90 kHz timestamps.
//!
//! [`IngestCore`] is the IO-free protocol core (handshake, chunk stream within limits, session);
//! `IngestConnection` drives it over a socket.
//!
//! Limits: connections at once, time to start publishing, silence from a publisher, chunk size,
//! message size and buffered bytes. Every refusal is one log line naming the peer and the limit,
//! never the stream key.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{
    ServerSession, ServerSessionConfig, ServerSessionError, ServerSessionEvent,
    ServerSessionResult, StreamMetadata,
};
use subtle::ConstantTimeEq;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, instrument, warn};

use crate::bus::{Bus, ChannelName, ChannelStats, Publication};
use crate::config::{ChannelConfig, RtmpConfig};
use crate::proto::aac::AacConfig;
use crate::proto::avc::{self, AvcConfig};
use crate::proto::flv::{self, AudioTag, FlvError, VideoTag};
use crate::proto::media::{MediaPacket, StreamInfo, Track};
use crate::proto::rtmp::{
    frame_message, session_preamble, ChunkError, ChunkLimits, ChunkReader, RtmpMessage,
};
use crate::proto::timestamps::{Repair, TimestampRepair};
use crate::tls::CertSlot;

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("handshake failed: {reason}")]
    Handshake { reason: String },
    #[error("did not start publishing within {seconds} s (rtmp.handshake_timeout_seconds)")]
    HandshakeTimeout { seconds: u64 },
    #[error("no media for {seconds} s (rtmp.no_media_timeout_seconds)")]
    Idle { seconds: u64 },
    #[error("peer read nothing for {seconds} s (rtmp.no_media_timeout_seconds)")]
    WriteStalled { seconds: u64 },
    #[error("RTMP protocol error: {0}")]
    Session(#[from] ServerSessionError),
    #[error("refused: {0}")]
    Limit(#[from] ChunkError),
}

impl IngestError {
    /// Whether the peer broke a limit or a rule (logged as a warning), rather than leaving.
    fn is_refusal(&self) -> bool {
        !matches!(self, IngestError::Io(_))
    }
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
    /// `rtmp.max_connections`, shared by the RTMP and RTMPS listeners.
    pub connections: Arc<Semaphore>,
}

impl IngestShared {
    pub fn new(cfg: RtmpConfig, keys: KeyTable, bus: Arc<Bus>) -> Self {
        Self {
            connections: Arc::new(Semaphore::new(cfg.max_connections)),
            cfg,
            keys: RwLock::new(Arc::new(keys)),
            bus,
        }
    }
}

/// A publisher's byte stream: a TCP socket, or TLS over one (RTMPS).
trait ByteStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> ByteStream for T {}

/// What the protocol core reports to the connection that drives it.
#[derive(Debug)]
pub enum CoreEvent {
    /// `connect`: answer with [`IngestCore::accept`] or [`IngestCore::reject`].
    Connect {
        request_id: u32,
        app: String,
    },
    /// `publish` with a stream key: answer with accept or reject.
    Publish {
        request_id: u32,
        key: String,
    },
    PublishFinished,
    /// `play`: onair only serves HLS, so this is rejected.
    Play {
        request_id: u32,
    },
    Metadata(Box<StreamMetadata>),
    Video {
        data: Bytes,
        timestamp: u32,
    },
    Audio {
        data: Bytes,
        timestamp: u32,
    },
}

/// The IO-free protocol core of one RTMP connection: handshake, then the chunk stream read by
/// [`ChunkReader`] within limits and re-framed for `rml_rtmp`'s `ServerSession`. Bytes in,
/// events and bytes to send out; the fuzz target drives it exactly as the connection does.
pub struct IngestCore {
    handshake: Option<Handshake>,
    reader: ChunkReader,
    /// The full limits, in force once a publish is accepted ([`IngestCore::allow_media`]).
    limits: ChunkLimits,
    session: Option<ServerSession>,
    out: Vec<u8>,
    framed: Vec<u8>,
    /// Complete messages not yet given to the session: processing stops after a request
    /// (connect, publish, play) so that it is answered before the next message is read, as a
    /// client that sends its commands back to back expects.
    pending: std::collections::VecDeque<RtmpMessage>,
}

impl IngestCore {
    pub fn new(limits: ChunkLimits) -> Self {
        Self {
            handshake: Some(Handshake::new(PeerType::Server)),
            reader: ChunkReader::new(limits.before_publish()),
            limits,
            session: None,
            out: Vec::new(),
            framed: Vec::new(),
            pending: std::collections::VecDeque::new(),
        }
    }

    /// Messages waiting for [`IngestCore::feed`] to be called again (with no new bytes).
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Limits from the configuration.
    pub fn limits(cfg: &RtmpConfig) -> ChunkLimits {
        ChunkLimits {
            max_chunk_size: cfg.max_chunk_size,
            max_message_bytes: cfg.max_message_bytes,
            // Room for one message being assembled on each of two tracks, plus commands.
            max_buffered_bytes: cfg.max_message_bytes as usize * 2 + (64 << 10),
            max_chunk_streams: 64,
            message_limit_name: "rtmp.max_message_bytes",
        }
    }

    /// A publish was accepted: media may now use the full message and buffer limits.
    pub fn allow_media(&mut self) {
        self.reader.set_limits(self.limits);
    }

    pub fn handshake_done(&self) -> bool {
        self.handshake.is_none()
    }

    /// Bytes held for the peer's unfinished messages.
    pub fn buffered(&self) -> usize {
        self.reader.buffered()
    }

    /// Bytes to send to the peer.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    /// Takes bytes from the peer. Events stop after a request; answer it, then call `feed`
    /// again with no bytes while [`IngestCore::has_pending`]. After an error the connection
    /// must be closed.
    pub fn feed(&mut self, data: &[u8]) -> Result<Vec<CoreEvent>, IngestError> {
        let mut events = Vec::new();
        let mut data = data;
        let remaining;
        if let Some(hs) = self.handshake.as_mut() {
            let result = hs.process_bytes(data).map_err(|e| IngestError::Handshake {
                reason: format!("{e:?}"),
            })?;
            match result {
                HandshakeProcessResult::InProgress { response_bytes } => {
                    self.out.extend_from_slice(&response_bytes);
                    return Ok(events);
                }
                HandshakeProcessResult::Completed {
                    response_bytes,
                    remaining_bytes,
                } => {
                    self.out.extend_from_slice(&response_bytes);
                    self.handshake = None;
                    let (mut session, results) = ServerSession::new(ServerSessionConfig::new())?;
                    self.results(results, &mut events);
                    // Every message reaches the session as one chunk: tell it so first.
                    let results = session.handle_input(&session_preamble())?;
                    self.session = Some(session);
                    self.results(results, &mut events);
                    remaining = remaining_bytes;
                    data = &remaining;
                }
            }
        }
        if !data.is_empty() {
            self.pending.extend(self.reader.feed(data)?);
        }
        while let Some(m) = self.pending.pop_front() {
            let Some(session) = self.session.as_mut() else {
                break;
            };
            self.framed.clear();
            frame_message(&m, &mut self.framed);
            let results = session.handle_input(&self.framed)?;
            let before = events.len();
            self.results(results, &mut events);
            let request = events[before..].iter().any(|e| {
                matches!(
                    e,
                    CoreEvent::Connect { .. } | CoreEvent::Publish { .. } | CoreEvent::Play { .. }
                )
            });
            if request {
                break;
            }
        }
        Ok(events)
    }

    pub fn accept(&mut self, request_id: u32) -> Result<(), IngestError> {
        if let Some(s) = self.session.as_mut() {
            let results = s.accept_request(request_id)?;
            self.results(results, &mut Vec::new());
        }
        Ok(())
    }

    pub fn reject(
        &mut self,
        request_id: u32,
        code: &str,
        description: &str,
    ) -> Result<(), IngestError> {
        if let Some(s) = self.session.as_mut() {
            let results = s.reject_request(request_id, code, description)?;
            self.results(results, &mut Vec::new());
        }
        Ok(())
    }

    fn results(&mut self, results: Vec<ServerSessionResult>, events: &mut Vec<CoreEvent>) {
        for r in results {
            match r {
                ServerSessionResult::OutboundResponse(p) => self.out.extend_from_slice(&p.bytes),
                ServerSessionResult::RaisedEvent(ev) => {
                    let ev = match ev {
                        ServerSessionEvent::ConnectionRequested {
                            request_id,
                            app_name,
                        } => CoreEvent::Connect {
                            request_id,
                            app: app_name,
                        },
                        ServerSessionEvent::PublishStreamRequested {
                            request_id,
                            stream_key,
                            ..
                        } => CoreEvent::Publish {
                            request_id,
                            key: stream_key,
                        },
                        ServerSessionEvent::PublishStreamFinished { .. } => {
                            CoreEvent::PublishFinished
                        }
                        ServerSessionEvent::PlayStreamRequested { request_id, .. } => {
                            CoreEvent::Play { request_id }
                        }
                        ServerSessionEvent::StreamMetadataChanged { metadata, .. } => {
                            CoreEvent::Metadata(Box::new(metadata))
                        }
                        ServerSessionEvent::VideoDataReceived {
                            data, timestamp, ..
                        } => CoreEvent::Video {
                            data,
                            timestamp: timestamp.value,
                        },
                        ServerSessionEvent::AudioDataReceived {
                            data, timestamp, ..
                        } => CoreEvent::Audio {
                            data,
                            timestamp: timestamp.value,
                        },
                        _ => continue,
                    };
                    events.push(ev);
                }
                ServerSessionResult::UnhandleableMessageReceived(_) => {}
            }
        }
    }
}

/// Accepts RTMP connections until `cancel`; with `tls`, RTMPS: the TLS handshake first, then
/// the same RTMP.
pub async fn serve(
    listener: TcpListener,
    tls: Option<CertSlot>,
    shared: Arc<IngestShared>,
    tracker: TaskTracker,
    cancel: CancellationToken,
) {
    let scheme = if tls.is_some() { "rtmps" } else { "rtmp" };
    // Refusals at the connection limit are logged at most once a second (a flood must not
    // become a flood of log lines), with the count of those not logged.
    let mut refused_unlogged = 0u64;
    let mut last_refusal_log: Option<Instant> = None;
    loop {
        let (sock, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    warn!(error = %e, "{scheme} accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = cancel.cancelled() => return,
        };
        let Ok(permit) = shared.connections.clone().try_acquire_owned() else {
            refused_unlogged += 1;
            if last_refusal_log.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                warn!(%peer, limit = shared.cfg.max_connections, also_refused = refused_unlogged - 1, "{scheme} connection refused: rtmp.max_connections reached");
                refused_unlogged = 0;
                last_refusal_log = Some(Instant::now());
            }
            drop(sock);
            continue;
        };
        let _ = sock.set_nodelay(true);
        let shared = shared.clone();
        let cancel = cancel.clone();
        let tls = tls.as_ref().map(CertSlot::acceptor);
        tracker.spawn(async move {
            let hs = Duration::from_secs(shared.cfg.handshake_timeout_seconds);
            let stream: Box<dyn ByteStream> = match tls {
                None => Box::new(sock),
                Some(acceptor) => match tokio::time::timeout(hs, acceptor.accept(sock)).await {
                    Ok(Ok(s)) => Box::new(s),
                    Ok(Err(e)) => {
                        warn!(%peer, error = %e, "rtmps connection refused: TLS handshake failed (plain RTMP sent to the RTMPS port?)");
                        return;
                    }
                    Err(_) => {
                        warn!(%peer, "rtmps connection closed: no TLS handshake within rtmp.handshake_timeout_seconds ({} s)", hs.as_secs());
                        return;
                    }
                },
            };
            let mut conn = IngestConnection::new(stream, peer, shared);
            match conn.run(&cancel).await {
                Ok(how) => debug!(%peer, ?how, "{scheme} connection closed"),
                Err(e) if e.is_refusal() => {
                    warn!(%peer, channel = %conn.channel_name(), error = %e, "{scheme} connection closed")
                }
                Err(e) => info!(%peer, error = %e, "{scheme} connection closed"),
            }
            drop(permit);
        });
    }
}

/// One RTMP connection: owns the socket, the protocol core and the publication.
struct IngestConnection {
    sock: Box<dyn ByteStream>,
    peer: SocketAddr,
    shared: Arc<IngestShared>,
    core: IngestCore,
    publication: Option<Publication>,
    media: MediaState,
    buf: Vec<u8>,
    /// Last audio or video message (the no-media timeout runs from it once publishing).
    last_media: Instant,
    /// A publish was accepted on this connection.
    published: bool,
}

impl IngestConnection {
    fn new(sock: Box<dyn ByteStream>, peer: SocketAddr, shared: Arc<IngestShared>) -> Self {
        let core = IngestCore::new(IngestCore::limits(&shared.cfg));
        Self {
            sock,
            peer,
            shared,
            core,
            publication: None,
            media: MediaState::default(),
            buf: vec![0u8; 64 * 1024],
            last_media: Instant::now(),
            published: false,
        }
    }

    #[instrument(skip_all, fields(peer = %self.peer))]
    async fn run(&mut self, cancel: &CancellationToken) -> Result<Closed, IngestError> {
        let hs_secs = self.shared.cfg.handshake_timeout_seconds;
        let start_by = Instant::now() + Duration::from_secs(hs_secs);
        let idle = Duration::from_secs(self.shared.cfg.no_media_timeout_seconds);
        let replaced = CancellationToken::new();
        loop {
            let kicked = self
                .publication
                .as_ref()
                .map(|p| p.cancelled().clone())
                .unwrap_or_else(|| replaced.clone());
            // Until the first publish, the time to start publishing; from then on (also after
            // the publish finished, while the encoder says goodbye) silence.
            let (deadline, timeout) = if self.published {
                (
                    self.last_media + idle,
                    IngestError::Idle {
                        seconds: idle.as_secs(),
                    },
                )
            } else {
                (start_by, IngestError::HandshakeTimeout { seconds: hs_secs })
            };
            let n = tokio::select! {
                r = self.sock.read(&mut self.buf) => r?,
                _ = tokio::time::sleep_until(deadline) => return Err(timeout),
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
            let mut input = &self.buf[..n];
            loop {
                let events = self.core.feed(input);
                input = &[];
                // Answer what the core produced before reporting an error.
                let mut closed = None;
                if let Ok(events) = &events {
                    for ev in events.iter() {
                        if let Some(c) = self.handle_event(ev)? {
                            closed = Some(c);
                            break;
                        }
                    }
                }
                let out = self.core.take_output();
                if !out.is_empty() {
                    // A peer that sends but never reads must not hold the connection forever.
                    tokio::select! {
                        r = tokio::time::timeout(idle, self.sock.write_all(&out)) => match r {
                            Ok(r) => r?,
                            Err(_) => return Err(IngestError::WriteStalled { seconds: idle.as_secs() }),
                        },
                        _ = cancel.cancelled() => return Ok(Closed::Shutdown),
                    }
                }
                events?;
                if let Some(c) = closed {
                    return Ok(c);
                }
                if !self.core.has_pending() {
                    break;
                }
            }
        }
    }

    fn channel_name(&self) -> String {
        self.publication
            .as_ref()
            .map(|p| p.channel().name.to_string())
            .unwrap_or_default()
    }

    /// Reacts to one core event; returns whether to close.
    fn handle_event(&mut self, ev: &CoreEvent) -> Result<Option<Closed>, IngestError> {
        match ev {
            CoreEvent::Connect { request_id, app } => {
                if *app == self.shared.cfg.app {
                    self.core.accept(*request_id)?;
                    Ok(None)
                } else {
                    warn!(peer = %self.peer, app = %app, expected = %self.shared.cfg.app, "rtmp connect refused: unknown application");
                    self.core.reject(
                        *request_id,
                        "NetConnection.Connect.Rejected",
                        "unknown application",
                    )?;
                    Ok(Some(Closed::Refused))
                }
            }
            CoreEvent::Publish { request_id, key } => {
                let keys = self
                    .shared
                    .keys
                    .read()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone();
                let Some(channel) = keys.lookup(key) else {
                    warn!(peer = %self.peer, "publish refused: unknown stream key");
                    self.core.reject(
                        *request_id,
                        "NetStream.Publish.BadName",
                        "unknown stream key",
                    )?;
                    return Ok(Some(Closed::Refused));
                };
                let Some(bus) = self.shared.bus.get(channel.as_str()) else {
                    warn!(peer = %self.peer, %channel, "publish refused: channel not ready");
                    self.core.reject(
                        *request_id,
                        "NetStream.Publish.BadName",
                        "channel not available",
                    )?;
                    return Ok(Some(Closed::Refused));
                };
                let takeover = bus.publisher().is_some();
                let publication = bus.begin_publish(self.peer);
                info!(peer = %self.peer, %channel, takeover, "publish started");
                self.media = MediaState::default();
                self.publication = Some(publication);
                self.published = true;
                self.last_media = Instant::now();
                self.core.accept(*request_id)?;
                self.core.allow_media();
                Ok(None)
            }
            CoreEvent::PublishFinished => {
                if let Some(p) = self.publication.take() {
                    info!(channel = %p.channel().name, "publish finished");
                }
                Ok(None)
            }
            CoreEvent::Play { request_id } => {
                info!(peer = %self.peer, "rtmp play refused: playback is offered over HLS only");
                self.core.reject(
                    *request_id,
                    "NetStream.Play.Failed",
                    "playback is offered over HLS only",
                )?;
                Ok(Some(Closed::Refused))
            }
            CoreEvent::Metadata(metadata) => {
                debug!(
                    width = ?metadata.video_width,
                    height = ?metadata.video_height,
                    fps = ?metadata.video_frame_rate,
                    encoder = ?metadata.encoder,
                    "stream metadata"
                );
                Ok(None)
            }
            CoreEvent::Video { data, timestamp } => {
                if let Some(p) = &self.publication {
                    self.last_media = Instant::now();
                    self.media.video(p, data, *timestamp);
                }
                Ok(None)
            }
            CoreEvent::Audio { data, timestamp } => {
                if let Some(p) = &self.publication {
                    self.last_media = Instant::now();
                    self.media.audio(p, data, *timestamp);
                }
                Ok(None)
            }
        }
    }
}

/// Where [`MediaState`] delivers: a [`Publication`] on the bus, or a test or fuzz sink.
pub trait MediaSink {
    fn channel_name(&self) -> &str;
    fn stats(&self) -> &ChannelStats;
    fn set_info(&self, info: StreamInfo);
    fn send_packet(&self, pkt: MediaPacket);
}

impl MediaSink for Publication {
    fn channel_name(&self) -> &str {
        self.channel().name.as_str()
    }
    fn stats(&self) -> &ChannelStats {
        &self.channel().stats
    }
    fn set_info(&self, info: StreamInfo) {
        Publication::set_info(self, info)
    }
    fn send_packet(&self, pkt: MediaPacket) {
        Publication::send_packet(self, pkt)
    }
}

/// Per-publication media state: FLV tags to packets, codec configuration, timestamp repair.
#[derive(Default)]
pub struct MediaState {
    info: StreamInfo,
    timestamps: TimestampRepair,
    warned_video: bool,
    warned_audio: bool,
    warned_early: bool,
    /// The encoder sends Annex B frames (no configuration record): convert each one.
    annex_b: bool,
}

impl MediaState {
    pub fn video(&mut self, p: &impl MediaSink, data: &Bytes, ts: u32) {
        let stats = p.stats();
        stats
            .bytes_in
            .fetch_add(data.len() as u64, std::sync::atomic::Ordering::Relaxed);
        match flv::parse_video(data) {
            Ok(VideoTag::AvcSequenceHeader(record)) => match AvcConfig::parse(record) {
                Ok(cfg) => {
                    if self.info.video.as_deref() != Some(&cfg) {
                        info!(
                            channel = %p.channel_name(),
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
                    warn!(channel = %p.channel_name(), error = %e, "bad H.264 configuration ignored")
                }
            },
            Ok(VideoTag::AvcFrame {
                keyframe,
                composition_ms,
                data,
            }) => {
                if self.info.video.is_none() {
                    match AvcConfig::from_access_unit(&data).filter(|_| keyframe) {
                        Some((cfg, annex_b)) => {
                            self.annex_b = annex_b;
                            info!(
                                channel = %p.channel_name(),
                                width = cfg.width,
                                height = cfg.height,
                                codec = %cfg.codec_string(),
                                "video configuration taken from the keyframe's SPS/PPS (the encoder sent no sequence header)"
                            );
                            self.info.video = Some(Arc::new(cfg));
                            p.set_info(self.info.clone());
                        }
                        None => {
                            self.warn_early(p);
                            return;
                        }
                    }
                }
                // The bus carries length-prefixed units; an encoder that sent Annex B is converted.
                let data = if self.annex_b {
                    Bytes::from(avc::annex_b_to_avcc(&data).data)
                } else {
                    data
                };
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

    pub fn audio(&mut self, p: &impl MediaSink, data: &Bytes, ts: u32) {
        let stats = p.stats();
        stats
            .bytes_in
            .fetch_add(data.len() as u64, std::sync::atomic::Ordering::Relaxed);
        match flv::parse_audio(data) {
            Ok(AudioTag::AacSequenceHeader(asc)) => match AacConfig::parse(asc) {
                Ok(cfg) => {
                    if self.info.audio.as_deref() != Some(&cfg) {
                        info!(
                            channel = %p.channel_name(),
                            sample_rate = cfg.sample_rate,
                            channels = cfg.channels,
                            "audio configuration"
                        );
                        self.info.audio = Some(Arc::new(cfg));
                        p.set_info(self.info.clone());
                    }
                }
                Err(e) => {
                    warn!(channel = %p.channel_name(), error = %e, "bad AAC configuration ignored")
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

    fn warn_early(&mut self, p: &impl MediaSink) {
        if !self.warned_early {
            self.warned_early = true;
            warn!(channel = %p.channel_name(), "media before its sequence header dropped");
        }
    }

    fn warn_codec(&mut self, p: &impl MediaSink, track: Track, e: FlvError) {
        let warned = match track {
            Track::Video => &mut self.warned_video,
            Track::Audio => &mut self.warned_audio,
        };
        if !*warned {
            *warned = true;
            warn!(channel = %p.channel_name(), error = %e, "track ignored: onair takes H.264 video and AAC audio");
        }
    }

    fn log_repair(&self, p: &impl MediaSink, repair: Repair) {
        match repair {
            Repair::None => {}
            Repair::Clamped => {
                debug!(channel = %p.channel_name(), "non-monotonic timestamp clamped")
            }
            Repair::Rebased { jump_ms } => {
                info!(channel = %p.channel_name(), jump_ms, "timestamp jump repaired; the timeline carries on")
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
                owners: Vec::new(),
            },
            ChannelConfig {
                name: "bob".into(),
                key: Secret::new("bob-secret-22"),
                key_env: None,
                title: None,
                owners: Vec::new(),
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

    fn amf_str(s: &str) -> Vec<u8> {
        let mut v = vec![2];
        v.extend_from_slice(&(s.len() as u16).to_be_bytes());
        v.extend_from_slice(s.as_bytes());
        v
    }

    fn amf_num(n: f64) -> Vec<u8> {
        let mut v = vec![0];
        v.extend_from_slice(&n.to_be_bytes());
        v
    }

    fn amf_app_object() -> Vec<u8> {
        let mut v = vec![3, 0, 3];
        v.extend_from_slice(b"app");
        v.extend(amf_str("live"));
        v.extend_from_slice(&[0, 0, 9]);
        v
    }

    /// An RTMP message: type id, message stream id, payload.
    type Msg = (u8, u32, Vec<u8>);

    /// A real client handshake (from the ffmpeg capture), then `messages` as single chunks.
    fn session(messages: &[Msg]) -> Vec<u8> {
        let cap = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/rtmp-publish-ffmpeg.bin"
        ))
        .expect("capture");
        let mut out = cap[..3073].to_vec();
        let chunk_size = (1, 0, (1u32 << 20).to_be_bytes().to_vec());
        for (type_id, stream_id, payload) in std::iter::once(&chunk_size).chain(messages) {
            frame_message(
                &RtmpMessage {
                    timestamp: 0,
                    type_id: *type_id,
                    stream_id: *stream_id,
                    payload: Bytes::from(payload.clone()),
                },
                &mut out,
            );
        }
        out
    }

    /// Feeds a session, accepting every request; returns the error that closed it, if any.
    fn run(bytes: &[u8]) -> Option<IngestError> {
        let mut core = IngestCore::new(IngestCore::limits(&RtmpConfig::default()));
        let mut input = bytes;
        loop {
            match core.feed(input) {
                Ok(events) => {
                    for ev in events {
                        match ev {
                            CoreEvent::Connect { request_id, .. } => {
                                core.accept(request_id).ok()?
                            }
                            CoreEvent::Publish { request_id, .. } => {
                                core.allow_media();
                                core.accept(request_id).ok()?
                            }
                            _ => {}
                        }
                    }
                }
                Err(e) => return Some(e),
            }
            if !core.has_pending() {
                return None;
            }
            input = &[];
        }
    }

    fn connect() -> Msg {
        let mut v = amf_str("connect");
        v.extend(amf_num(1.0));
        v.extend(amf_app_object());
        (20, 0, v)
    }

    #[test]
    fn messages_that_would_panic_rml_rtmp_are_screened() {
        let with = |name: &str, extra: &[Vec<u8>]| {
            let mut v = amf_str(name);
            v.extend(amf_num(2.0));
            v.push(5); // null command object
            for e in extra {
                v.extend_from_slice(e);
            }
            v
        };
        let mut publish = amf_str("publish");
        publish.extend(amf_num(3.0));
        publish.push(5);
        publish.extend(amf_str("key"));
        publish.extend(amf_str("live"));
        let mut create = amf_str("createStream");
        create.extend(amf_num(2.0));
        create.push(5);
        let publishing = |msg: Msg| {
            vec![
                connect(),
                (20, 0, create.clone()),
                (20, 1, publish.clone()),
                msg,
            ]
        };
        // Broken: dropped, the connection goes on.
        let mut set_data_frame = amf_str("@setDataFrame");
        set_data_frame.extend(amf_str("onMetaData"));
        let broken: Vec<(&str, Msg)> = vec![
            (
                "a command of two values",
                (20, 0, {
                    let mut v = amf_str("createStream");
                    v.extend(amf_num(2.0));
                    v
                }),
            ),
            ("@setDataFrame alone", (18, 1, amf_str("@setDataFrame"))),
            // Found by libFuzzer (fuzz/regressions/rtmp_ingest/set-data-frame-without-metadata).
            (
                "@setDataFrame onMetaData without metadata",
                (18, 1, set_data_frame),
            ),
        ];
        for (what, msg) in broken {
            let err = run(&session(&publishing(msg)));
            assert!(err.is_none(), "{what}: {err:?}");
        }
        // Hostile: refused.
        let deep = (18, 1, {
            let mut v = amf_str("onMetaData");
            for _ in 0..5000 {
                v.extend_from_slice(&[3, 0, 1, b'a']);
            }
            v
        });
        let err = run(&session(&publishing(deep)));
        assert!(
            matches!(err, Some(IngestError::Limit(ChunkError::Amf0 { .. }))),
            "{err:?}"
        );
        // Missing publish and play arguments are answered by rml_rtmp itself.
        for msg in [
            with("publish", &[]),
            with("publish", &[amf_str("key")]),
            with("play", &[]),
        ] {
            let err = run(&session(&[connect(), (20, 1, msg)]));
            assert!(err.is_none(), "{err:?}");
        }
        // A complete publish goes through.
        let err = run(&session(&[connect(), (20, 0, create), (20, 1, publish)]));
        assert!(err.is_none(), "{err:?}");
    }
}
