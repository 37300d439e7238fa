//! Fuzz harness bodies, shared by the cargo-fuzz targets in `fuzz/` and by the regression and
//! random-input tests (`tests/fuzz_regressions.rs`), so a crashing input found by libFuzzer
//! replays under plain `cargo test`. Each takes arbitrary bytes and panics only on a bug.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::Method;

use crate::bus::{Bus, ChannelStats};
use crate::config::{Container, RtmpConfig};
use crate::hls::segmenter::Segmenter;
use crate::hls::{HlsStore, StoreConfig};
use crate::http::HttpState;
use crate::ingest::media::{Clock, MediaFeed, MediaSink};
use crate::ingest::rtmp::{feed_audio_tag, feed_video_tag, CoreEvent, FlvTracks, IngestCore};
use crate::ingest::srt::{feed_events, DropLog, StartGate};
use crate::proto::avc;
use crate::proto::media::{MediaPacket, StreamInfo, Track};
use crate::proto::ts_demux::TsDemuxer;

/// Collects what a [`MediaFeed`] delivers and runs it through a segmenter.
struct SegmentingSink {
    stats: ChannelStats,
    segmenter: Mutex<Segmenter>,
}

impl SegmentingSink {
    fn new(container: Container) -> Self {
        Self {
            stats: ChannelStats::default(),
            segmenter: Mutex::new(Segmenter::new(container, 2.0, 0.333)),
        }
    }
}

impl MediaSink for SegmentingSink {
    fn channel_name(&self) -> &str {
        "fuzz"
    }
    fn stats(&self) -> &ChannelStats {
        &self.stats
    }
    fn set_info(&self, info: StreamInfo) {
        let mut s = self.segmenter.lock().unwrap_or_else(|e| e.into_inner());
        let _ = s.set_info(info);
    }
    fn send_packet(&self, pkt: MediaPacket) {
        let mut s = self.segmenter.lock().unwrap_or_else(|e| e.into_inner());
        if pkt.track == Track::Video {
            if let Some(cfg) = s.info().video.as_ref().and_then(|v| v.as_avc()) {
                let mut out = Vec::new();
                let _ = avc::to_annex_b(&pkt.data, cfg, pkt.keyframe, &mut out);
            }
        }
        let _ = s.push(&pkt);
    }
}

/// MPEG-TS bytes, as an SRT caller sends them, through the [`TsDemuxer`] and a [`MediaFeed`]
/// into a segmenter (both containers), through the SRT ingest's [`StartGate`]. The input is
/// demuxed whole and in pieces of 1 to 200 bytes (sizes taken from the input): the events must
/// be the same.
pub fn ts_demux(data: &[u8]) {
    let (whole, declared) = {
        let mut d = TsDemuxer::new();
        let mut out = Vec::new();
        d.feed(data, &mut out);
        d.flush(&mut out);
        (out, d.declared())
    };
    let pieces = {
        let mut d = TsDemuxer::new();
        let mut out = Vec::new();
        let mut pos = 0;
        while pos < data.len() {
            let n = (1 + data[pos] as usize % 200).min(data.len() - pos);
            d.feed(&data[pos..pos + n], &mut out);
            pos += n;
        }
        d.flush(&mut out);
        out
    };
    assert_eq!(
        whole, pieces,
        "the split of the input changed what was demuxed"
    );
    for container in [Container::Ts, Container::Fmp4] {
        let mut feed = MediaFeed::new(SegmentingSink::new(container), Clock::MPEG_TS);
        let mut events = whole.clone();
        StartGate::default().pass(&mut events, declared);
        feed_events(&mut feed, &mut events, &mut DropLog::default());
    }
}

/// Runs one RTMP connection's bytes through [`IngestCore`], accepting every connect and
/// publish, with media through a [`MediaFeed`] into a segmenter. The input is fed whole and, in
/// a second core, in pieces of 1 to 64 bytes; both must agree when neither errs.
pub fn rtmp_ingest(data: &[u8]) {
    let cfg = RtmpConfig::default();
    let limits = IngestCore::limits(&cfg);
    let bound = limits.max_buffered_bytes + limits.max_chunk_size as usize + 64;
    let run = |pieces: &mut dyn Iterator<Item = &[u8]>| -> (usize, bool) {
        let mut core = IngestCore::new(limits);
        let mut media = MediaFeed::new(SegmentingSink::new(Container::Fmp4), Clock::RTMP);
        let mut tracks = FlvTracks::default();
        let mut events = 0usize;
        let mut input = pieces.next();
        while let Some(piece) = input {
            let evs = match core.feed(piece) {
                Ok(evs) => evs,
                Err(_) => return (events, false),
            };
            input = if core.has_pending() {
                Some(&[][..])
            } else {
                pieces.next()
            };
            assert!(
                core.buffered() <= bound,
                "{} bytes buffered, bound {bound}",
                core.buffered()
            );
            for ev in evs {
                events += 1;
                let r = match ev {
                    CoreEvent::Connect { request_id, .. } => core.accept(request_id),
                    CoreEvent::Publish { request_id, .. } => {
                        core.allow_media();
                        core.accept(request_id)
                    }
                    CoreEvent::Play { request_id } => core.reject(request_id, "x", "y"),
                    CoreEvent::Video { data, timestamp } => {
                        feed_video_tag(&mut media, &mut tracks, &data, timestamp);
                        Ok(())
                    }
                    CoreEvent::Audio { data, timestamp } => {
                        feed_audio_tag(&mut media, &mut tracks, &data, timestamp);
                        Ok(())
                    }
                    CoreEvent::PublishFinished | CoreEvent::Metadata(_) => Ok(()),
                };
                if r.is_err() {
                    return (events, false);
                }
            }
            let _ = core.take_output();
        }
        (events, true)
    };
    let whole = run(&mut std::iter::once(data));
    // Piece sizes come from the data itself so that the fuzzer can steer them.
    let mut pos = 0usize;
    let mut sizes = data.iter().cycle();
    let mut pieces = std::iter::from_fn(|| {
        if pos >= data.len() {
            return None;
        }
        let n = 1 + (*sizes.next()? as usize % 64);
        let end = (pos + n).min(data.len());
        let p = &data[pos..end];
        pos = end;
        Some(p)
    });
    let split = run(&mut pieces);
    if whole.1 && split.1 {
        assert_eq!(whole.0, split.0, "events differ when the input is split");
    }
}

/// Command handling in depth: the input is a list of messages `[type, stream id, len(2),
/// payload(len)]`, framed as chunks after a real client handshake, a large chunk size and a
/// valid `connect`, so that mutations reach the session's command handlers instead of being
/// stopped by chunk framing.
pub fn rtmp_messages(data: &[u8]) {
    use crate::proto::rtmp::{frame_message, RtmpMessage};
    static CAPTURE: &[u8] = include_bytes!("../fixtures/rtmp-publish-ffmpeg.bin");
    let mut wire = CAPTURE[..3073].to_vec();
    let mut push = |type_id: u8, stream_id: u32, payload: &[u8]| {
        frame_message(
            &RtmpMessage {
                timestamp: 0,
                type_id,
                stream_id,
                payload: Bytes::copy_from_slice(payload),
            },
            &mut wire,
        )
    };
    push(1, 0, &(1u32 << 20).to_be_bytes());
    // connect("live"), transaction 1
    push(
        20,
        0,
        b"\x02\x00\x07connect\x00\x3f\xf0\x00\x00\x00\x00\x00\x00\x03\x00\x03app\x02\x00\x04live\x00\x00\x09",
    );
    let mut pos = 0usize;
    while let Some(h) = data.get(pos..pos + 4) {
        let len = u16::from_be_bytes([h[2], h[3]]) as usize;
        let end = (pos + 4 + len).min(data.len());
        push(h[0], h[1] as u32, &data[pos + 4..end]);
        pos = end;
    }
    rtmp_ingest(&wire);
}

/// Reads records `[kind, ts(4), len(2), body(len)]`: kind bit 0 selects audio or video, and
/// runs each body as an FLV tag through a [`MediaFeed`] into a segmenter (FLV, AVC, AAC, timestamps, TS).
pub fn flv_media(data: &[u8]) {
    for container in [Container::Ts, Container::Fmp4] {
        flv_media_into(data, container);
    }
}

fn flv_media_into(data: &[u8], container: Container) {
    let mut media = MediaFeed::new(SegmentingSink::new(container), Clock::RTMP);
    let mut tracks = FlvTracks::default();
    let mut pos = 0usize;
    let bytes = Bytes::copy_from_slice(data);
    while let Some(h) = data.get(pos..pos + 7) {
        let ts = u32::from_be_bytes([h[1], h[2], h[3], h[4]]);
        let len = u16::from_be_bytes([h[5], h[6]]) as usize;
        let start = pos + 7;
        let end = (start + len).min(data.len());
        let body = bytes.slice(start..end);
        if h[0] & 1 == 0 {
            feed_video_tag(&mut media, &mut tracks, &body, ts);
        } else {
            feed_audio_tag(&mut media, &mut tracks, &body, ts);
        }
        pos = end;
    }
    let mut s = media
        .sink()
        .segmenter
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let _ = s.flush();
}

/// Byte 0 picks the method; the rest up to a newline is the path and query, the remainder a
/// Range header. The path goes through [`crate::http::route`] as is, and through the whole
/// handler when it makes a valid URI (hyper refuses the others before they reach it).
pub fn http_route(data: &[u8]) {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    static STATE: std::sync::OnceLock<Arc<HttpState>> = std::sync::OnceLock::new();
    let rt = RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime")
    });
    let state = STATE.get_or_init(|| {
        let _guard = rt.enter();
        let bus = Bus::new();
        bus.ensure(&crate::bus::ChannelName::new("alice"));
        let store = Arc::new(HlsStore::new(StoreConfig {
            window: 6,
            segment_seconds: 2.0,
            container: Container::Ts,
            part_seconds: 0.333,
        }));
        let seg = crate::hls::segmenter::Segment {
            start: 0,
            duration: 180_000,
            data: Bytes::from(vec![0x47u8; 1880]),
            discontinuity: false,
            video_frames: 1,
            info: StreamInfo::default(),
            init_id: 0,
        };
        store.push_segment("alice", "source", 0, &seg, chrono::Utc::now());
        let tracker = tokio_util::task::TaskTracker::new();
        // An in-memory database: fuzzed admin bans must not reach a file.
        let (chat, auth, debate, recorder) = rt
            .block_on(async {
                let db = crate::db::Db::open_in_memory().await?;
                let chat = crate::chat::Chat::start(
                    crate::config::ChatConfig::default(),
                    bus.clone(),
                    db.clone(),
                    &tracker,
                    tokio_util::sync::CancellationToken::new(),
                )
                .await?;
                // A key from the secret, not a file: nothing of the fuzzer reaches the disk.
                let mut cfg = crate::config::Config::default();
                cfg.auth.secret = crate::config::Secret::new("fuzz-auth-secret-0123456789");
                let auth = crate::identity::Auth::spawn(
                    &cfg,
                    db.clone(),
                    &tracker,
                    tokio_util::sync::CancellationToken::new(),
                )
                .map_err(|e| crate::db::DbError::BadRow {
                    table: "auth",
                    reason: e.to_string(),
                })?;
                let debate = crate::chat::questions::Debate::start(
                    crate::config::DebateConfig::default(),
                    false,
                    std::time::Duration::from_secs(300),
                    chat.clone(),
                    crate::db::Db::open_in_memory().await?,
                    &tracker,
                    tokio_util::sync::CancellationToken::new(),
                )
                .await?;
                // Recordings off, under a directory that does not exist: nothing on disk.
                cfg.record.enabled = false;
                cfg.storage.data_dir = "/nonexistent/onair-fuzz".into();
                let recorder = crate::record::Recorder::start(
                    &cfg,
                    db,
                    &tracker,
                    tokio_util::sync::CancellationToken::new(),
                )
                .await;
                Ok::<_, crate::db::DbError>((chat, auth, debate, recorder))
            })
            .expect("chat and sign-in with an in-memory database");
        let ingest = Arc::new(crate::ingest::Ingest::new(
            crate::ingest::KeyTable::default(),
            bus.clone(),
        ));
        Arc::new(HttpState {
            cluster: None,
            auth,
            public_url: "http://localhost:8080".into(),
            store,
            bus,
            announce: Arc::new(crate::announce::AnnounceStats::default()),
            chat,
            debate,
            admin_token: crate::config::Secret::new("fuzz-admin-token"),
            ingest,
            trusted_proxies: Vec::new(),
            transcoder: None,
            recorder,
            whip: None,
            thumbnails: crate::transcode::thumbnails::Thumbnails::new(Default::default(), None),
            cards: Arc::default(),
            replay_pages: Default::default(),
        })
    });
    let Some((&m, rest)) = data.split_first() else {
        return;
    };
    let method = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::OPTIONS,
        Method::DELETE,
        Method::PUT,
    ][m as usize % 6]
        .clone();
    let text = String::from_utf8_lossy(rest);
    let (target, range) = match text.split_once('\n') {
        Some((p, r)) => (p, Some(r)),
        None => (&text[..], None),
    };
    let path = target.split_once('?').map_or(target, |(p, _)| p);
    let _ = crate::http::route(&method, path);
    // Blocking playlist reloads (`_HLS_msn`) wait for parts that never come: bounded by the
    // store's own timeout, too slow for a fuzzer. Event streams never end: not polled.
    if target.contains("_HLS_msn") {
        return;
    }
    let mut req = http::Request::builder().method(method).uri(target);
    if let Some(r) = range {
        req = req.header(http::header::RANGE, r);
    }
    let Ok(req) = req.body(http_body_util::Empty::<Bytes>::new()) else {
        return;
    };
    let peer: std::net::SocketAddr = ([127, 0, 0, 1], 9).into();
    let resp = rt.block_on(state.handle(req, peer));
    let _ = resp.status();
}

/// Reads records `[flags, track, len(2), body(len)]` and runs each body through the Enhanced
/// RTMP tag parser (flags bit 0: audio; bit 1: read `track` from multitrack messages), the
/// configuration record parsers (HEVC, AV1, H.264, AAC, OpusHead; Opus packet durations), and for coded frames the conversions
/// a segment needs (Annex B for MPEG-TS, OBU filtering) and the fMP4 writer. A record with
/// flags bit 2 is also read as a `connect` command and an rml_rtmp `_result` packet to amend.
pub fn ertmp_tags(data: &[u8]) {
    use crate::proto::media::{AudioCodec, VideoCodec, VideoConfig};
    use crate::proto::{aac, av1, ertmp, flv, fmp4, hevc, opus, ts};
    let bytes = Bytes::copy_from_slice(data);
    let mut info = StreamInfo::default();
    let mut samples = Vec::new();
    let mut pos = 0usize;
    while let Some(h) = data.get(pos..pos + 4) {
        let (flags, track) = (h[0], h[1]);
        let len = u16::from_be_bytes([h[2], h[3]]) as usize;
        let end = (pos + 4 + len).min(data.len());
        let body = bytes.slice(pos + 4..end);
        pos = end;
        let want = (flags & 2 != 0).then_some(track);
        if flags & 4 != 0 {
            let _ = ertmp::connect::ClientCaps::from_connect_message(&body);
            let _ = ertmp::connect::amend_connect_result(
                &body,
                1 + track as usize,
                ertmp::connect::server_caps(),
            );
        }
        if flags & 1 != 0 {
            if let Ok(t) = flv::parse_audio(&body, want) {
                match t.tag {
                    flv::AudioTag::SequenceHeader {
                        codec: AudioCodec::Aac,
                        config,
                    } => {
                        if let Ok(c) = aac::AacConfig::parse(config) {
                            info.audio = Some(Arc::new(c));
                        }
                    }
                    flv::AudioTag::SequenceHeader {
                        codec: AudioCodec::Opus,
                        config,
                    } => {
                        let _ = opus::OpusHead::parse(&config);
                    }
                    flv::AudioTag::Frame {
                        codec: AudioCodec::Opus,
                        data,
                    } => {
                        let mut timeline = opus::OpusTimeline::default();
                        if let Some(n) = opus::packet_samples(&data) {
                            let _ = timeline.place(pos as i64 * 1800, n);
                        }
                    }
                    flv::AudioTag::Frame { data, .. } => samples.push(MediaPacket {
                        track: Track::Audio,
                        dts: samples.len() as i64 * 1000,
                        pts: samples.len() as i64 * 1000,
                        keyframe: true,
                        data,
                    }),
                    _ => {}
                }
            }
            continue;
        }
        match flv::parse_video(&body, want).map(|t| t.tag) {
            Ok(flv::VideoTag::SequenceHeader { codec, record }) => {
                let config = match codec {
                    VideoCodec::Avc => avc::AvcConfig::parse(record).ok().map(VideoConfig::from),
                    VideoCodec::Hevc => hevc::HevcConfig::parse(record).ok().map(VideoConfig::from),
                    VideoCodec::Av1 => av1::Av1Config::parse(record).ok().map(VideoConfig::from),
                };
                if let Some(c) = config {
                    info.video = Some(Arc::new(c));
                }
            }
            Ok(flv::VideoTag::Frame {
                codec,
                keyframe,
                data,
                composition_ms,
            }) => {
                let data = match codec {
                    VideoCodec::Av1 => {
                        let _ =
                            av1::sequence_header(&data).map(av1::Av1Config::from_sequence_header);
                        av1::strip_delimiters(&data).unwrap_or(data)
                    }
                    _ => data,
                };
                if let Some(v) = info.video.clone() {
                    let mut m = ts::TsMuxer::new(Some(v.codec()), info.audio.is_some());
                    let mut out = Vec::new();
                    m.write_tables(&mut out);
                    let _ = m.write_video(&mut out, &v, 0, composition_ms as i64, keyframe, &data);
                    if let VideoConfig::Hevc(c) = &*v {
                        let _ = hevc::has_irap(&data, c.nal_length_size);
                    }
                }
                let t = samples.len() as i64 * 3000;
                samples.push(MediaPacket {
                    track: Track::Video,
                    dts: t,
                    pts: t + composition_ms as i64 * 90,
                    keyframe,
                    data,
                });
            }
            _ => {}
        }
    }
    if info.video.is_some() || info.audio.is_some() {
        let _ = fmp4::init_segment(&info);
        let samples: Vec<fmp4::Sample> = samples
            .into_iter()
            .map(|p| fmp4::Sample {
                track: p.track,
                dts: p.dts,
                pts: p.pts,
                keyframe: p.keyframe,
                data: p.data,
            })
            .collect();
        let mut out = Vec::new();
        fmp4::fragment(1, &info, &samples, samples.len() as i64 * 3000, &mut out);
    }
}
