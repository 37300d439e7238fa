//! SRT ingest: `srt://HOST:8890?streamid=…` with an MPEG-TS payload (H.264 or HEVC + AAC), as OBS,
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

use super::media::{MediaFeed, MediaSink, Track, VideoFrame};
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
    let mut gate = StartGate::default();
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
        gate.pass(&mut events, demux.declared());
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

/// Holds the start of a stream until every elementary stream the PMT names has its
/// configuration, then lets the configurations through first. In MPEG-TS the first video PES
/// often comes before the first audio one: passed straight on, the stream would start with a
/// video-only configuration and change to video + audio a moment later, so the HLS output would
/// open with a video-only segment and a discontinuity, and a player that reads the first init
/// segment finds no audio. Bounded: after [`StartGate::MAX_SPAN`] of media,
/// [`StartGate::MAX_HELD`] events or [`StartGate::MAX_BYTES`] of frames (a caller that sends
/// huge PES with a constant DTS) the stream starts with what it has.
#[derive(Debug, Default)]
pub struct StartGate {
    open: bool,
    held: Vec<TsEvent>,
    video_config: bool,
    audio_config: bool,
    first_dts: Option<i64>,
    bytes: usize,
}

impl StartGate {
    /// Media time held at most, in 90 kHz ticks (1 s).
    pub const MAX_SPAN: i64 = 90_000;
    pub const MAX_HELD: usize = 512;
    /// Frame bytes held at most (one PES at the demuxer's limit).
    pub const MAX_BYTES: usize = crate::proto::ts_demux::MAX_PES_BYTES;

    /// Takes the demuxer's new events; leaves in `events` what may go on now, in order.
    pub fn pass(&mut self, events: &mut Vec<TsEvent>, (want_video, want_audio): (bool, bool)) {
        if self.open {
            return;
        }
        let mut last_dts = None;
        for ev in events.iter() {
            match ev {
                TsEvent::VideoConfig(_) => self.video_config = true,
                TsEvent::AudioConfig(_) => self.audio_config = true,
                TsEvent::Video(_, f) | TsEvent::Audio(f) => {
                    self.bytes += f.data.len();
                    self.first_dts.get_or_insert(f.dts);
                    last_dts = Some(f.dts);
                }
                TsEvent::Dropped(_) => {}
            }
        }
        self.held.append(events);
        let declared = want_video || want_audio;
        let complete =
            declared && (!want_video || self.video_config) && (!want_audio || self.audio_config);
        let span = match (self.first_dts, last_dts) {
            (Some(a), Some(b)) => b - a,
            _ => 0,
        };
        if complete
            || span.abs() > Self::MAX_SPAN
            || self.held.len() > Self::MAX_HELD
            || self.bytes > Self::MAX_BYTES
        {
            self.open = true;
            // The first configuration of each track moves to the front; a later change stays
            // where it was, between the frames it separates.
            let mut held = std::mem::take(&mut self.held);
            for video in [true, false] {
                let first = held.iter().position(|e| match e {
                    TsEvent::VideoConfig(_) => video,
                    TsEvent::AudioConfig(_) => !video,
                    _ => false,
                });
                if let Some(i) = first {
                    events.push(held.remove(i));
                }
            }
            events.append(&mut held);
        }
    }
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
            TsEvent::Video(codec, f) => {
                frames += 1;
                feed.video(VideoFrame {
                    codec,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> Vec<u8> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/testsrc-320x180.ts");
        std::fs::read(path).expect("fixture")
    }

    /// ffmpeg's TS starts with video PES before the first audio one: through the gate, both
    /// configurations come before any frame, so the stream starts with video and audio.
    #[test]
    fn the_stream_starts_with_both_configurations() {
        let data = fixture();
        let (mut demux, mut gate) = (TsDemuxer::new(), StartGate::default());
        let mut out = Vec::new();
        for piece in data.chunks(1316) {
            let mut events = Vec::new();
            demux.feed(piece, &mut events);
            gate.pass(&mut events, demux.declared());
            out.extend(events);
        }
        let first_frame = out
            .iter()
            .position(|e| matches!(e, TsEvent::Video(..) | TsEvent::Audio(_)))
            .expect("frames");
        let configs = &out[..first_frame];
        assert!(configs.iter().any(|e| matches!(e, TsEvent::VideoConfig(_))));
        assert!(configs.iter().any(|e| matches!(e, TsEvent::AudioConfig(_))));
        // Nothing lost: as many frames as without the gate.
        let mut plain = Vec::new();
        TsDemuxer::new().feed(&data, &mut plain);
        let count = |v: &[TsEvent]| {
            v.iter()
                .filter(|e| matches!(e, TsEvent::Video(..) | TsEvent::Audio(_)))
                .count()
        };
        assert_eq!(count(&out), count(&plain));
    }

    /// A stream whose PMT names audio that never comes starts anyway after a second.
    #[test]
    fn a_missing_track_delays_the_start_by_a_second_at_most() {
        let mut gate = StartGate::default();
        let frame = |dts| {
            TsEvent::Video(
                crate::proto::media::VideoCodec::Avc,
                crate::proto::ts_demux::EsFrame {
                    pts: dts,
                    dts,
                    keyframe: false,
                    data: bytes::Bytes::new(),
                },
            )
        };
        let mut events = vec![frame(0)];
        gate.pass(&mut events, (true, true));
        assert!(events.is_empty(), "held");
        let mut events = vec![frame(StartGate::MAX_SPAN + 1)];
        gate.pass(&mut events, (true, true));
        assert_eq!(events.len(), 2, "released after a second of media");
    }
}
