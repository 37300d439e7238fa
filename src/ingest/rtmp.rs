//! RTMP and RTMPS ingest: the listener and one task per connection, driving `rml_rtmp`'s
//! handshake and `ServerSession`. A `publish` names a stream key and ends in
//! [`super::Ingest::publish`] (key check, takeover); the connection then owns the publication's
//! [`MediaFeed`], and FLV audio and video tags go into it ([`feed_video_tag`],
//! [`feed_audio_tag`]): legacy H.264/AAC, and Enhanced RTMP HEVC, AV1 and H.264 video with AAC
//! (`mp4a`, the same path as legacy AAC) or Opus audio (one track of each kind from a
//! multitrack stream: [`FlvTracks`]). Opus is converted to AAC on the transcode pool
//! ([`opus`]).
//!
//! [`IngestCore`] is the IO-free protocol core (handshake, chunk stream within limits, session);
//! `RtmpConnection` drives it over a socket; the fuzz targets (`crate::fuzzing`) drive it with
//! arbitrary bytes. `lib.rs` starts [`serve`] once for RTMP and once more for RTMPS.
//!
//! Limits: connections at once, time to start publishing, silence from a publisher, chunk size,
//! message size and buffered bytes. Every refusal is one log line naming the peer and the limit,
//! never the stream key.

mod core;
pub mod opus;

pub use self::core::{CoreEvent, IngestCore};
pub use self::opus::{OpusAudio, OpusSettings, RtmpSink};

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, instrument, warn};

use super::media::{MediaFeed, MediaSink, Track, VideoConfig, VideoFrame};
use super::{ConnectionLimit, Ingest, IngestError, Protocol};
use crate::config::RtmpConfig;
use crate::proto::aac::AacConfig;
use crate::proto::flv::{self, AudioCodec, AudioTag, Tagged, VideoTag};
use crate::proto::opus::{packet_samples, OpusHead, OpusTimeline};
use crate::proto::timestamps::Clock;
use crate::tls::CertSlot;
use crate::transcode::convert::OpusToAac;

/// How a connection ended, when it ended without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closed {
    ByPeer,
    Refused,
    Replaced,
    Shutdown,
}

/// What the RTMP and RTMPS listeners share.
pub struct RtmpShared {
    pub cfg: RtmpConfig,
    pub ingest: Arc<Ingest>,
    /// `rtmp.max_connections`, shared by the RTMP and RTMPS listeners.
    pub connections: ConnectionLimit,
    /// Where Enhanced RTMP Opus audio is converted to AAC (`None`: no worker threads, Opus
    /// tracks are ignored with a log line).
    pub opus: Option<OpusSettings>,
}

impl RtmpShared {
    pub fn new(cfg: RtmpConfig, ingest: Arc<Ingest>) -> Self {
        Self {
            connections: ConnectionLimit::new(cfg.max_connections, "rtmp.max_connections"),
            cfg,
            ingest,
            opus: None,
        }
    }

    /// Opus audio is converted on `pool` at `kbps`.
    pub fn with_opus(mut self, opus: Option<OpusSettings>) -> Self {
        self.opus = opus;
        self
    }
}

/// A publisher's byte stream: a TCP socket, or TLS over one (RTMPS).
trait ByteStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> ByteStream for T {}

/// Accepts RTMP connections until `cancel`; with `tls`, RTMPS: the TLS handshake first, then
/// the same RTMP.
pub async fn serve(
    listener: TcpListener,
    tls: Option<CertSlot>,
    shared: Arc<RtmpShared>,
    tracker: TaskTracker,
    cancel: CancellationToken,
) {
    let protocol = if tls.is_some() {
        Protocol::Rtmps
    } else {
        Protocol::Rtmp
    };
    let scheme = protocol.as_str();
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
        let Some(permit) = shared.connections.try_admit(scheme, peer) else {
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
            let mut conn = RtmpConnection::new(stream, peer, protocol, shared);
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

/// One RTMP connection: owns the socket, the protocol core and the publication's feed.
struct RtmpConnection {
    sock: Box<dyn ByteStream>,
    peer: SocketAddr,
    protocol: Protocol,
    shared: Arc<RtmpShared>,
    core: IngestCore,
    /// The publication and its media, while publishing.
    feed: Option<MediaFeed<RtmpSink>>,
    /// The publication's Opus conversion, once Opus audio arrived.
    opus: Option<opus::OpusPath>,
    /// Which track of a multitrack stream is read.
    tracks: FlvTracks,
    buf: Vec<u8>,
    /// Once a publish was accepted: when media last arrived on this connection (the no-media
    /// timeout runs from it, also after the publish finished while the encoder says goodbye).
    last_media: Option<Instant>,
}

impl RtmpConnection {
    fn new(
        sock: Box<dyn ByteStream>,
        peer: SocketAddr,
        protocol: Protocol,
        shared: Arc<RtmpShared>,
    ) -> Self {
        let core = IngestCore::new(IngestCore::limits(&shared.cfg));
        Self {
            sock,
            peer,
            protocol,
            shared,
            core,
            feed: None,
            opus: None,
            tracks: FlvTracks::default(),
            buf: vec![0u8; 64 * 1024],
            last_media: None,
        }
    }

    #[instrument(skip_all, fields(peer = %self.peer))]
    async fn run(&mut self, cancel: &CancellationToken) -> Result<Closed, IngestError> {
        let hs_secs = self.shared.cfg.handshake_timeout_seconds;
        let start_by = Instant::now() + Duration::from_secs(hs_secs);
        let idle = Duration::from_secs(self.shared.cfg.no_media_timeout_seconds);
        let idle_key = "rtmp.no_media_timeout_seconds";
        let replaced = CancellationToken::new();
        loop {
            let kicked = self
                .feed
                .as_ref()
                .map(|f| f.sink().publication().cancelled().clone())
                .unwrap_or_else(|| replaced.clone());
            // Until the first publish, the time to start publishing; from then on silence.
            let last_media = self
                .feed
                .as_ref()
                .map(MediaFeed::last_media)
                .or(self.last_media);
            let (deadline, timeout) = match last_media {
                Some(t) => (
                    t + idle,
                    IngestError::Idle {
                        seconds: idle.as_secs(),
                        key: idle_key,
                    },
                ),
                None => (
                    start_by,
                    IngestError::HandshakeTimeout {
                        seconds: hs_secs,
                        key: "rtmp.handshake_timeout_seconds",
                    },
                ),
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
                if let Some(f) = &self.feed {
                    info!(channel = %f.sink().channel_name(), "publisher closed the connection");
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
                            Err(_) => return Err(IngestError::WriteStalled { seconds: idle.as_secs(), key: idle_key }),
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
        self.feed
            .as_ref()
            .map(|f| f.sink().channel_name().to_string())
            .unwrap_or_default()
    }

    /// Reacts to one core event; returns whether to close.
    fn handle_event(&mut self, ev: &CoreEvent) -> Result<Option<Closed>, IngestError> {
        match ev {
            CoreEvent::Connect {
                request_id,
                app,
                caps,
            } => {
                if caps.enhanced() {
                    info!(peer = %self.peer, fourccs = ?caps.fourccs, caps_ex = ?caps.caps_ex, "Enhanced RTMP client");
                }
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
                match self.shared.ingest.publish(key, self.protocol, self.peer) {
                    Ok(publication) => {
                        // Replacing the feed drops a previous publication of this connection.
                        self.opus = None;
                        self.feed = Some(MediaFeed::new(RtmpSink::new(publication), Clock::RTMP));
                        self.tracks = FlvTracks::default();
                        self.core.accept(*request_id)?;
                        self.core.allow_media();
                        Ok(None)
                    }
                    Err(refused) => {
                        // Logged by `publish`; the encoder is told why.
                        self.core.reject(
                            *request_id,
                            "NetStream.Publish.BadName",
                            &refused.to_string(),
                        )?;
                        Ok(Some(Closed::Refused))
                    }
                }
            }
            CoreEvent::PublishFinished => {
                self.opus = None;
                if let Some(f) = self.feed.take() {
                    self.last_media = Some(f.last_media());
                    info!(channel = %f.sink().channel_name(), "publish finished");
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
                if let Some(f) = &mut self.feed {
                    feed_video_tag(f, &mut self.tracks, data, *timestamp);
                }
                Ok(None)
            }
            CoreEvent::Audio { data, timestamp } => {
                if let Some(f) = &mut self.feed {
                    if let Some(audio) = feed_audio_tag(f, &mut self.tracks, data, *timestamp) {
                        if self.opus.is_none() {
                            match &self.shared.opus {
                                Some(settings) => {
                                    self.opus = Some(opus::OpusPath::start(settings, f.sink()))
                                }
                                None => f.unsupported(
                                    Track::Audio,
                                    &"Opus audio: no worker threads to convert it to AAC",
                                ),
                            }
                        }
                        if let Some(o) = &self.opus {
                            o.send(audio);
                        }
                    }
                }
                Ok(None)
            }
        }
    }
}

/// The tracks read from an Enhanced RTMP multitrack stream: the first video and the first
/// audio track seen; messages of other tracks are skipped, logged once per publication.
#[derive(Debug, Default)]
pub struct FlvTracks {
    video: Option<u8>,
    audio: Option<u8>,
    logged_others: bool,
    /// Opus packets placed by sample count.
    opus: OpusTimeline,
}

impl FlvTracks {
    /// Remembers the track a tag came from (when it carried something: `used`); says once
    /// that others are ignored, also when they come in messages of their own (FFmpeg sends
    /// each track of a multitrack stream in its own message).
    fn note<T, S: MediaSink>(
        &mut self,
        feed: &MediaFeed<S>,
        track: Track,
        t: &Tagged<T>,
        used: bool,
    ) {
        let chosen = match track {
            Track::Video => &mut self.video,
            Track::Audio => &mut self.audio,
        };
        if used {
            chosen.get_or_insert(t.track);
        }
        if t.other_tracks && !self.logged_others {
            self.logged_others = true;
            info!(
                channel = %feed.sink().channel_name(),
                video_track = ?self.video,
                audio_track = ?self.audio,
                "multitrack stream: onair reads one video and one audio track and ignores the others"
            );
        }
    }
}

/// An FLV video tag body (an RTMP video message) into the feed.
pub fn feed_video_tag<S: MediaSink>(
    feed: &mut MediaFeed<S>,
    tracks: &mut FlvTracks,
    data: &Bytes,
    ts: u32,
) {
    feed.received(data.len());
    let tagged = match flv::parse_video(data, tracks.video) {
        Ok(t) => t,
        Err(e) => return feed.unsupported(Track::Video, &e),
    };
    tracks.note(feed, Track::Video, &tagged, tagged.tag != VideoTag::Ignore);
    match tagged.tag {
        VideoTag::SequenceHeader { codec, record } => match VideoConfig::from_record(codec, record)
        {
            Ok(cfg) => feed.set_video_config(cfg),
            Err(e) => {
                warn!(channel = %feed.sink().channel_name(), error = %e, "bad video configuration ignored")
            }
        },
        VideoTag::Frame {
            codec,
            keyframe,
            composition_ms,
            data,
        } => feed.video(VideoFrame {
            codec,
            data,
            keyframe,
            dts: ts as u64,
            composition: composition_ms as i64,
        }),
        VideoTag::Ignore => {}
    }
}

/// An FLV audio tag body (an RTMP audio message) into the feed. AAC (legacy or `mp4a`) goes
/// to the feed; Opus comes back as [`OpusAudio`] for the conversion job, with the feed's audio
/// configuration set to what the converter produces.
pub fn feed_audio_tag<S: MediaSink>(
    feed: &mut MediaFeed<S>,
    tracks: &mut FlvTracks,
    data: &Bytes,
    ts: u32,
) -> Option<OpusAudio> {
    feed.received(data.len());
    let tagged = match flv::parse_audio(data, tracks.audio) {
        Ok(t) => t,
        Err(e) => {
            feed.unsupported(Track::Audio, &e);
            return None;
        }
    };
    tracks.note(feed, Track::Audio, &tagged, tagged.tag != AudioTag::Ignore);
    match tagged.tag {
        AudioTag::SequenceHeader {
            codec: AudioCodec::Aac,
            config,
        } => match AacConfig::parse(config) {
            Ok(cfg) => feed.set_audio_config(cfg),
            Err(e) => {
                warn!(channel = %feed.sink().channel_name(), error = %e, "bad AAC configuration ignored")
            }
        },
        AudioTag::Frame {
            codec: AudioCodec::Aac,
            data,
        } => feed.audio(data, ts as u64),
        AudioTag::SequenceHeader {
            codec: AudioCodec::Opus,
            config,
        } => match OpusHead::parse(&config) {
            Ok(head) => {
                info!(
                    channel = %feed.sink().channel_name(),
                    channels = head.channels,
                    pre_skip = head.pre_skip,
                    input_sample_rate = head.input_sample_rate,
                    "Opus audio configuration"
                );
                opus_output(feed);
                tracks.opus.reset();
                return Some(OpusAudio::Head(head));
            }
            Err(e) => {
                warn!(channel = %feed.sink().channel_name(), error = %e, "bad Opus header ignored")
            }
        },
        AudioTag::Frame {
            codec: AudioCodec::Opus,
            data,
        } => {
            let Some(samples) = packet_samples(&data) else {
                debug!(channel = %feed.sink().channel_name(), len = data.len(), "malformed Opus packet dropped");
                return None;
            };
            // A stream without a SequenceStart: stereo without pre-skip, as WebRTC sends it.
            opus_output(feed);
            let ticks = feed.audio_time(ts as u64)?;
            let pts = tracks.opus.place(ticks, samples);
            return Some(OpusAudio::Packet { data, pts });
        }
        AudioTag::Ignore => {}
    }
    None
}

/// The feed's audio configuration becomes the Opus converter's AAC output.
fn opus_output<S: MediaSink>(feed: &mut MediaFeed<S>) {
    if let Ok(cfg) = OpusToAac::output_config() {
        feed.set_audio_config(cfg);
    }
}
