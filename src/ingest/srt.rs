//! SRT ingest: `srt://HOST:8890?streamid=…` with an MPEG-TS payload (H.264 + AAC), as OBS,
//! vMix, Larix, ffmpeg and hardware encoders send it.
//!
//! The transport is libsrt, driven from its own thread ([`crate::srt`]). This module gives it
//! the [`Gate`] that libsrt asks during each caller's handshake: the stream id is read
//! ([`crate::proto::streamid`]) and its key looked up in the shared key table before libsrt
//! completes the connection, so a wrong key is rejected at handshake (SRT code 1401) with one
//! log line that names the peer, never the key, and no media of it is ever read. Each accepted
//! caller then becomes a session task that ends in the shared [`Ingest::publish`] (takeover of
//! whatever is live on the channel, RTMP or SRT), demuxes the TS ([`TsDemuxer`]) and hands
//! configurations and frames to the publication's [`MediaFeed`].
//!
//! Limits, as for RTMP: `srt.max_connections` (refused at handshake, code 1402),
//! `srt.handshake_timeout_seconds` (time from connection to the first frame),
//! `srt.no_media_timeout_seconds` (silence after that). A caller that vanishes without a word
//! is noticed by libsrt's peer idle timeout (5 s) or by the no-media timeout, whichever comes
//! first. `srt.passphrase` turns on AES; libsrt refuses callers whose passphrase differs.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, instrument, warn};

use super::media::{MediaFeed, MediaSink, Track, VideoCodec, VideoFrame};
use super::{Ingest, IngestError, Protocol};
use crate::config::SrtConfig;
use crate::proto::streamid::{self, StreamIdError};
use crate::proto::timestamps::Clock;
use crate::proto::ts_demux::{TsDemuxer, TsDrop, TsEvent};
use crate::srt::{Gate, Refusal, SrtConnection, SrtError, SrtListener, SrtOptions};

/// The SRT listener: libsrt's thread plus the task that starts a session per caller. Dropping
/// it stops the listener and closes every SRT connection.
pub struct SrtIngest {
    listener: SrtListener,
}

impl SrtIngest {
    /// Binds `srt.listen` and starts accepting callers until `cancel`.
    pub fn start(
        cfg: &SrtConfig,
        addr: SocketAddr,
        app: &str,
        ingest: Arc<Ingest>,
        tracker: &TaskTracker,
        cancel: CancellationToken,
    ) -> Result<SrtIngest, SrtError> {
        let gate = Arc::new(KeyGate {
            ingest: ingest.clone(),
            app: app.to_string(),
        });
        let passphrase = Some(cfg.passphrase.expose().to_string()).filter(|p| !p.is_empty());
        let opts = SrtOptions {
            latency_ms: cfg.latency_ms,
            passphrase,
            max_connections: cfg.max_connections,
        };
        let (listener, accepted) = SrtListener::bind(addr, opts, gate)?;
        let shared = Arc::new(Shared {
            cfg: cfg.clone(),
            app: app.to_string(),
            ingest,
        });
        tracker.spawn(serve(accepted, shared, tracker.clone(), cancel));
        Ok(SrtIngest { listener })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr()
    }
}

/// Checks a caller's stream id and key during libsrt's handshake.
struct KeyGate {
    ingest: Arc<Ingest>,
    app: String,
}

impl Gate for KeyGate {
    fn admit(&self, peer: SocketAddr, streamid: &str) -> Result<(), Refusal> {
        match streamid::publish_key(streamid, &self.app) {
            Ok(key) if self.ingest.lookup(key).is_some() => Ok(()),
            Ok(_) => {
                warn!(%peer, "srt connection refused at handshake: unknown stream key");
                Err(Refusal::Unauthorized)
            }
            Err(e) => {
                warn!(%peer, reason = %e, "srt connection refused at handshake");
                Err(match e {
                    StreamIdError::Play | StreamIdError::Mode => Refusal::BadMode,
                    StreamIdError::WrongApp => Refusal::Forbidden,
                    StreamIdError::Empty | StreamIdError::NoKey => Refusal::BadRequest,
                })
            }
        }
    }
}

struct Shared {
    cfg: SrtConfig,
    app: String,
    ingest: Arc<Ingest>,
}

async fn serve(
    mut accepted: mpsc::Receiver<SrtConnection>,
    shared: Arc<Shared>,
    tracker: TaskTracker,
    cancel: CancellationToken,
) {
    loop {
        let conn = tokio::select! {
            c = accepted.recv() => match c {
                Some(c) => c,
                None => return,
            },
            _ = cancel.cancelled() => return,
        };
        let shared = shared.clone();
        let cancel = cancel.clone();
        tracker.spawn(async move {
            let peer = conn.peer;
            match session(conn, &shared, &cancel).await {
                Ok(()) => {}
                Err(e) if e.is_refusal() => warn!(%peer, error = %e, "srt connection closed"),
                Err(e) => info!(%peer, error = %e, "srt connection closed"),
            }
        });
    }
}

/// Drops seen on one connection: the first of each kind is logged, the rest counted.
#[derive(Default)]
pub struct DropLog {
    seen: Vec<std::mem::Discriminant<TsDrop>>,
    count: u64,
}

impl DropLog {
    fn note(&mut self, channel: &str, d: TsDrop) {
        self.count += 1;
        let kind = std::mem::discriminant(&d);
        if self.seen.contains(&kind) {
            debug!(channel, drop = ?d, "srt input dropped");
        } else {
            self.seen.push(kind);
            warn!(channel, drop = ?d, "srt input dropped (first of its kind on this connection; the stream goes on)");
        }
    }
}

#[instrument(skip_all, fields(peer = %conn.peer))]
async fn session(
    mut conn: SrtConnection,
    shared: &Shared,
    cancel: &CancellationToken,
) -> Result<(), IngestError> {
    let peer = conn.peer;
    // The gate checked this stream id at handshake; a reload since may have removed the key,
    // and then publish refuses (and logs) it.
    let publication = match streamid::publish_key(&conn.streamid, &shared.app) {
        Ok(key) => shared.ingest.publish(key, Protocol::Srt, peer),
        Err(_) => return Ok(()),
    };
    conn.streamid.clear();
    let Ok(publication) = publication else {
        return Ok(());
    };
    let channel = publication.channel().name.to_string();
    let kicked = publication.cancelled().clone();
    let mut feed = MediaFeed::new(publication, Clock::MPEG_TS);
    let mut demux = TsDemuxer::new();
    let mut events = Vec::new();
    let mut drops = DropLog::default();
    let first_by = Instant::now() + Duration::from_secs(shared.cfg.handshake_timeout_seconds);
    let idle = Duration::from_secs(shared.cfg.no_media_timeout_seconds);
    let mut last_frame: Option<Instant> = None;
    let result = loop {
        let (deadline, timeout) = match last_frame {
            Some(t) => (
                t + idle,
                IngestError::Idle {
                    seconds: idle.as_secs(),
                    key: "srt.no_media_timeout_seconds",
                },
            ),
            None => (
                first_by,
                IngestError::HandshakeTimeout {
                    seconds: shared.cfg.handshake_timeout_seconds,
                    key: "srt.handshake_timeout_seconds",
                },
            ),
        };
        let data = tokio::select! {
            d = conn.data.recv() => d,
            _ = tokio::time::sleep_until(deadline) => break Err(timeout),
            _ = kicked.cancelled() => {
                info!(%channel, "publisher disconnected: replaced by a new publish or kicked");
                break Ok(());
            }
            _ = cancel.cancelled() => break Ok(()),
        };
        let Some(data) = data else {
            info!(%channel, "srt caller left (connection closed or broken)");
            break Ok(());
        };
        feed.received(data.len());
        demux.feed(&data, &mut events);
        let frames = feed_events(&mut feed, &mut events, &mut drops);
        if frames > 0 {
            last_frame = Some(Instant::now());
        }
    };
    let late = conn.dropped.load(Ordering::Relaxed);
    if drops.count > 0 || late > 0 {
        info!(%channel, dropped_events = drops.count, dropped_bytes_unread = late, "srt publish ended with input dropped");
    }
    result
}

/// Hands what the demuxer produced to the publication's feed; returns the frames among it.
/// Shared with the fuzz harness (`crate::fuzzing::ts_demux`).
pub fn feed_events<S: MediaSink>(
    feed: &mut MediaFeed<S>,
    events: &mut Vec<TsEvent>,
    drops: &mut DropLog,
) -> usize {
    let mut frames = 0;
    for ev in events.drain(..) {
        match ev {
            TsEvent::VideoConfig(cfg) => feed.set_video_config(cfg),
            TsEvent::AudioConfig(cfg) => feed.set_audio_config(cfg),
            TsEvent::Video(f) => {
                frames += 1;
                feed.video(VideoFrame {
                    // The demuxer takes H.264 only (stream type 0x1b) for now.
                    codec: VideoCodec::Avc,
                    data: f.data,
                    keyframe: f.keyframe,
                    dts: f.dts as u64,
                    composition: f.pts - f.dts,
                });
            }
            TsEvent::Audio(f) => {
                frames += 1;
                feed.audio(f.data, f.dts as u64);
            }
            TsEvent::Dropped(TsDrop::UnsupportedStream { stream_type }) => {
                let track = if is_video_stream_type(stream_type) {
                    Track::Video
                } else {
                    Track::Audio
                };
                feed.unsupported(
                    track,
                    &format_args!("MPEG-TS stream type {stream_type:#04x}"),
                );
            }
            TsEvent::Dropped(d) => drops.note(feed.sink().channel_name(), d),
        }
    }
    frames
}

/// MPEG-TS stream types of video codecs (ISO 13818-1 table 2-34 and registrations).
fn is_video_stream_type(t: u8) -> bool {
    matches!(t, 0x01 | 0x02 | 0x10 | 0x1b | 0x20 | 0x24 | 0x33 | 0xea)
}
